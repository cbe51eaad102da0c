# Registration experiment (Table 3): direct vs synthesis-assisted iUS -> MR registration
# from simulated rigid displacements, TRE on landmarks, per evaluation subject of the
# primary fold (its models synthesise the MR).


rule synthesise_mr_from_us:
    input:
        model=method_models(config["registration_experiment"]["model"])[0],
        slices=lambda wildcards: slice_dir_of(wildcards.subject),
    output:
        directory(f"{RESULTS}/registration_experiment/synthetic/{{subject}}"),
    log:
        f"{RESULTS}/logs/synthesise_mr_from_us/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthesise_mr_from_us/{{subject}}.tsv"
    wildcard_constraints:
        subject=evaluation_subject_choice(PRIMARY_SUBJECTS),
    conda:
        "../envs/registration_experiment.yaml"
    threads: config["registration_experiment"]["threads"]
    resources:
        **GPU_JOB,
        mem_mb=4000,
        runtime=60,
        gpu=config["registration_experiment"]["gpus"],
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.mr_synthesis),
    shell:
        "{params.iusynth} synthesise-mr --model {input.model:q} --slices {input.slices:q}"
        " --settings {params.settings:q} --threads {threads} --output {output:q} > {log:q} 2>&1"


rule registration_experiment:
    input:
        subject=evaluation_subject_inputs,
        alignment=lambda wildcards: alignment_record_of(wildcards.subject),
        synthetic=rules.synthesise_mr_from_us.output[0],
    output:
        f"{RESULTS}/metrics/registration/{{subject}}.csv",
    log:
        f"{RESULTS}/logs/registration_experiment/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/registration_experiment/{{subject}}.tsv"
    wildcard_constraints:
        subject=evaluation_subject_choice(PRIMARY_SUBJECTS),
    conda:
        "../envs/registration_experiment.yaml"
    threads: config["registration_experiment"]["threads"]
    resources:
        **CPU_JOB,
        mem_mb=4000,
        runtime=4 * 60,
    params:
        iusynth=IUSYNTH,
        subject_dir=lambda wildcards: evaluation_subject_dir(wildcards.subject),
        raw_sha256=lambda wildcards: raw_sha256_of(
            evaluation_set(wildcards.subject), wildcards.subject
        ),
        settings=job_settings(jobs.registration_experiment),
    shell:
        "{params.iusynth} registration-experiment --subject-dir {params.subject_dir:q}"
        " --raw-sha256={params.raw_sha256:q}"
        " --subject {wildcards.subject} --alignment {input.alignment:q}"
        " --synthetic {input.synthetic:q} --settings {params.settings:q}"
        " --threads {threads} --output {output:q} > {log:q} 2>&1"


rule registration_tables:
    input:
        cases=[
            f"{RESULTS}/metrics/registration/{subject}.csv"
            for subject in PRIMARY_SUBJECTS
        ],
        paper=PAPER_RESULTS,
    output:
        per_case=f"{RESULTS}/metrics/registration_cases.csv",
        table=[
            report(
                f"{RESULTS}/tables/table3_registration.csv",
                caption="../report/registration_table.rst",
                category="Registration (Table 3)",
            ),
            f"{RESULTS}/tables/table3_registration.md",
            f"{RESULTS}/tables/table3_registration.tex",
        ],
        figure=report(
            f"{RESULTS}/figures/registration_tre.png",
            caption="../report/registration_table.rst",
            category="Registration (Table 3)",
        ),
    log:
        f"{RESULTS}/logs/registration_tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/registration_tables.tsv"
    conda:
        "../envs/registration_experiment.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=2000,
        runtime=15,
    params:
        iusynth=IUSYNTH,
    shell:
        "{params.iusynth} registration-tables --paper {input.paper:q} --cases {input.cases:q}"
        " --per-case {output.per_case:q} --table {output.table:q}"
        " --figure {output.figure:q} > {log:q} 2>&1"
