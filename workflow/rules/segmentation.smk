# Downstream segmentation (Table 4): virtual sweeps of the MR-only cohort, synthetic iUS on
# their planes, one k-fold nnU-Net per method (splits written once, before the folds),
# ensemble prediction on real iUS, Dice and ASSD per subject.


rule virtual_sweep:
    input:
        lambda wildcards: str(COHORTS[SEGMENTATION["cohort"]].root / wildcards.subject),
    output:
        directory(f"{RESULTS}/segmentation/sweeps/{{subject}}"),
    log:
        f"{RESULTS}/logs/virtual_sweep/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/virtual_sweep/{{subject}}.tsv"
    wildcard_constraints:
        subject=subject_choice(SEGMENTATION["cohort"]),
    conda:
        "../envs/segmentation.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=4000,
        runtime=15,
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.virtual_sweep),
    shell:
        "{params.iusynth} virtual-sweep --subject-dir {input:q} --subject {wildcards.subject}"
        " --settings {params.settings:q} --output {output:q} > {log} 2>&1"


rule synthetic_ius:
    input:
        models=lambda wildcards: method_models(wildcards.method),
        sweep=rules.virtual_sweep.output[0],
    output:
        directory(f"{RESULTS}/segmentation/synthetic_ius/{{method}}/{{subject}}"),
    log:
        f"{RESULTS}/logs/synthetic_ius/{{method}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthetic_ius/{{method}}/{{subject}}.tsv"
    wildcard_constraints:
        method="|".join(SYNTHETIC_IUS_METHODS) or "^$",
        subject=subject_choice(SEGMENTATION["cohort"]),
    conda:
        "../envs/segmentation.yaml"
    threads: SEGMENTATION["threads"]
    resources:
        **GPU_JOB,
        mem_mb=4000,
        runtime=30,
        gpu=SEGMENTATION["gpus"],
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.synthetic_ius),
    shell:
        "{params.iusynth} synthetic-ius --method {wildcards.method} --models {input.models:q}"
        " --sweep {input.sweep:q} --settings {params.settings:q} --threads {threads}"
        " --output {output:q} > {log} 2>&1"


rule nnunet_prepare:
    input:
        unpack(nnunet_training_inputs),
    output:
        directory(f"{RESULTS}/segmentation/{{method}}/nnunet_data"),
    log:
        f"{RESULTS}/logs/nnunet_prepare/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/nnunet_prepare/{{method}}.tsv"
    wildcard_constraints:
        method="|".join(SEGMENTATION["methods"]),
    conda:
        "../envs/segmentation.yaml"
    threads: SEGMENTATION["threads"]
    resources:
        **CPU_JOB,
        mem_mb=8000,
        runtime=60,
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.nnunet),
        sources=nnunet_sources_arguments,
        models=lambda wildcards, output: nnunet_models_dir(output[0]),
    shell:
        "{params.iusynth} nnunet-prepare --method {wildcards.method} {params.sources}"
        " --settings {params.settings:q} --threads {threads} --data {output:q}"
        " --models {params.models:q} > {log} 2>&1"


rule nnunet_splits:
    input:
        rules.nnunet_prepare.output[0],
    output:
        f"{RESULTS}/segmentation/{{method}}/splits.json",
    log:
        f"{RESULTS}/logs/nnunet_splits/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/nnunet_splits/{{method}}.tsv"
    wildcard_constraints:
        method="|".join(SEGMENTATION["methods"]),
    conda:
        "../envs/segmentation.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=2000,
        runtime=10,
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.nnunet),
        models=lambda wildcards, input: nnunet_models_dir(input[0]),
    shell:
        "{params.iusynth} nnunet-splits --settings {params.settings:q} --threads {threads}"
        " --data {input:q} --models {params.models:q} --output {output:q} > {log} 2>&1"


rule nnunet_train:
    input:
        data=rules.nnunet_prepare.output[0],
        splits=rules.nnunet_splits.output[0],
    output:
        NNUNET_CHECKPOINT,
    log:
        f"{RESULTS}/logs/nnunet_train/{{method}}/fold_{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/nnunet_train/{{method}}/fold_{{fold}}.tsv"
    wildcard_constraints:
        method="|".join(SEGMENTATION["methods"]),
        fold=r"\d+",
    conda:
        "../envs/segmentation.yaml"
    threads: SEGMENTATION["threads"]
    resources:
        **GPU_JOB,
        mem_mb=12000,
        runtime=24 * 60,
        gpu=SEGMENTATION["gpus"],
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.nnunet),
        models=lambda wildcards, input: nnunet_models_dir(input[0]),
    shell:
        "{params.iusynth} nnunet-train --fold {wildcards.fold} --splits {input.splits:q}"
        " --settings {params.settings:q} --threads {threads} --data {input.data:q}"
        " --models {params.models:q} > {log} 2>&1"


rule segment_real_ius:
    input:
        data=rules.nnunet_prepare.output[0],
        checkpoints=expand(NNUNET_CHECKPOINT, fold=NNUNET_FOLDS, allow_missing=True),
        slices=lambda wildcards: slice_dir_of(wildcards.subject),
    output:
        mask=f"{RESULTS}/segmentation/{{method}}/predictions/{{subject}}.nii.gz",
        metrics=f"{RESULTS}/metrics/segmentation/{{method}}/{{subject}}.csv",
    log:
        f"{RESULTS}/logs/segment_real_ius/{{method}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segment_real_ius/{{method}}/{{subject}}.tsv"
    wildcard_constraints:
        method="|".join(SEGMENTATION["methods"]),
        subject=evaluation_subject_choice(),
    conda:
        "../envs/segmentation.yaml"
    threads: SEGMENTATION["threads"]
    resources:
        **GPU_JOB,
        mem_mb=8000,
        runtime=60,
        gpu=SEGMENTATION["gpus"],
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.nnunet),
        models=lambda wildcards, input: nnunet_models_dir(input[0]),
        folds=" ".join(str(fold) for fold in NNUNET_FOLDS),
        set=lambda wildcards: evaluation_set(wildcards.subject),
    shell:
        "{params.iusynth} segment-real-ius --method {wildcards.method} --set {params.set}"
        " --slices {input.slices:q} --folds {params.folds} --settings {params.settings:q}"
        " --threads {threads} --data {input.data:q} --models {params.models:q}"
        " --mask {output.mask:q} --output {output.metrics:q} > {log} 2>&1"


rule segmentation_tables:
    input:
        cases=[
            f"{RESULTS}/metrics/segmentation/{method}/{subject}.csv"
            for method in SEGMENTATION["methods"]
            for subject in segmentation_test_subjects(method)
        ],
        paper=PAPER_RESULTS,
    output:
        per_case=f"{RESULTS}/metrics/segmentation_cases.csv",
        table=[
            report(
                f"{RESULTS}/tables/table4_segmentation.csv",
                caption="../report/segmentation_table.rst",
                category="Segmentation (Table 4)",
            ),
            f"{RESULTS}/tables/table4_segmentation.md",
            f"{RESULTS}/tables/table4_segmentation.tex",
        ],
        figure=report(
            f"{RESULTS}/figures/segmentation_dice.png",
            caption="../report/segmentation_table.rst",
            category="Segmentation (Table 4)",
        ),
    log:
        f"{RESULTS}/logs/segmentation_tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/segmentation_tables.tsv"
    conda:
        "../envs/segmentation.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=2000,
        runtime=15,
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.segmentation_tables),
    shell:
        "{params.iusynth} segmentation-tables --settings {params.settings:q}"
        " --paper {input.paper:q} --cases {input.cases:q} --per-case {output.per_case:q}"
        " --table {output.table:q} --figure {output.figure:q} > {log} 2>&1"
