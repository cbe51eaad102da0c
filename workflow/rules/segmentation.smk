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
        raw_sha256=lambda wildcards: raw_sha256_of(
            SEGMENTATION["cohort"], wildcards.subject
        ),
        settings=job_settings(jobs.virtual_sweep),
    shell:
        "{params.iusynth} virtual-sweep --subject-dir {input:q} --raw-sha256={params.raw_sha256:q}"
        " --subject {wildcards.subject}"
        " --settings {params.settings:q} --output {output:q} > {log:q} 2>&1"


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
        " --output {output:q} > {log:q} 2>&1"


rule segmenter_prepare:
    input:
        unpack(segmenter_training_inputs),
    output:
        directory(f"{RESULTS}/segmentation/{{method}}/segmenter/{SEGMENTER_DATA}"),
    log:
        f"{RESULTS}/logs/segmenter_prepare/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segmenter_prepare/{{method}}.tsv"
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
        settings=job_settings(jobs.segmenter),
        network=SEGMENTATION["network"],
        sources=segmenter_sources_arguments,
        folder=lambda wildcards, output: str(Path(output[0]).parent),
    shell:
        "{params.iusynth} segmenter-prepare --method {wildcards.method} {params.sources}"
        " --network {params.network} --folder {params.folder:q}"
        " --settings {params.settings:q} --threads {threads} > {log:q} 2>&1"


rule segmenter_splits:
    input:
        rules.segmenter_prepare.output[0],
    output:
        f"{RESULTS}/segmentation/{{method}}/splits.json",
    log:
        f"{RESULTS}/logs/segmenter_splits/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segmenter_splits/{{method}}.tsv"
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
        settings=job_settings(jobs.segmenter),
        network=SEGMENTATION["network"],
        folder=lambda wildcards, input: str(Path(input[0]).parent),
    shell:
        "{params.iusynth} segmenter-splits --network {params.network} --folder {params.folder:q}"
        " --settings {params.settings:q} --threads {threads} --output {output:q} > {log:q} 2>&1"


rule segmenter_train:
    input:
        data=rules.segmenter_prepare.output[0],
        splits=rules.segmenter_splits.output[0],
    output:
        SEGMENTER_FOLD,
    log:
        f"{RESULTS}/logs/segmenter_train/{{method}}/fold_{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segmenter_train/{{method}}/fold_{{fold}}.tsv"
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
        settings=job_settings(jobs.segmenter),
        network=SEGMENTATION["network"],
        folder=lambda wildcards, input: str(Path(input.data).parent),
    shell:
        "{params.iusynth} segmenter-train --fold {wildcards.fold} --splits {input.splits:q}"
        " --network {params.network} --folder {params.folder:q}"
        " --settings {params.settings:q} --threads {threads} --output {output:q} > {log:q} 2>&1"


rule segment_real_ius:
    input:
        data=rules.segmenter_prepare.output[0],
        folds=expand(SEGMENTER_FOLD, fold=SEGMENTER_FOLDS, allow_missing=True),
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
        subject=evaluation_subject_choice(SEGMENTATION_TEST_SUBJECTS),
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
        settings=job_settings(jobs.segmenter),
        network=SEGMENTATION["network"],
        folder=lambda wildcards, input: str(Path(input.data).parent),
        folds=" ".join(str(fold) for fold in SEGMENTER_FOLDS),
        set=lambda wildcards: evaluation_set(wildcards.subject),
    shell:
        "{params.iusynth} segment-real-ius --method {wildcards.method} --set {params.set}"
        " --slices {input.slices:q} --folds {params.folds} --network {params.network}"
        " --folder {params.folder:q} --settings {params.settings:q} --threads {threads}"
        " --mask {output.mask:q} --output {output.metrics:q} > {log:q} 2>&1"


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
        " --table {output.table:q} --figure {output.figure:q} > {log:q} 2>&1"
