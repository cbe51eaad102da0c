# Paired subjects (iUS + MR) to model-ready form: registration (NiftyReg, or given ITK
# transforms), resampling into the iUS grid, normalisation, 2D slice stacks; landmark
# errors, splits and QC.


rule align_mr_sequences:
    input:
        subject=subject_inputs,
    output:
        f"{RESULTS}/registration/{{cohort}}/{{subject}}/mr_alignment.json",
    log:
        f"{RESULTS}/logs/align_mr_sequences/{{cohort}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/align_mr_sequences/{{cohort}}/{{subject}}.tsv"
    wildcard_constraints:
        cohort="|".join(NIFTYREG_COHORTS) or "no-cohort",
    conda:
        "../envs/registration.yaml"
    threads: 2
    resources:
        **CPU_JOB,
        mem_mb=3000,
        runtime=30,
    params:
        iusynth=IUSYNTH,
        subject_dir=subject_dir,
        raw_sha256=raw_sha256,
        settings=job_settings(jobs.registration),
    shell:
        "{params.iusynth} align-mr --subject-dir {params.subject_dir:q} --raw-sha256={params.raw_sha256:q} --subject {wildcards.subject}"
        " --settings {params.settings:q} --threads {threads} --output {output:q} > {log:q} 2>&1"


rule register_us_to_mr:
    input:
        subject=subject_inputs,
        alignment=rules.align_mr_sequences.output[0],
    output:
        f"{RESULTS}/registration/{{cohort}}/{{subject}}/us_to_mr.json",
    log:
        f"{RESULTS}/logs/register_us_to_mr/{{cohort}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/register_us_to_mr/{{cohort}}/{{subject}}.tsv"
    wildcard_constraints:
        cohort="|".join(NIFTYREG_COHORTS) or "no-cohort",
    conda:
        "../envs/registration.yaml"
    threads: 2
    resources:
        **CPU_JOB,
        mem_mb=3000,
        runtime=30,
    params:
        iusynth=IUSYNTH,
        subject_dir=subject_dir,
        raw_sha256=raw_sha256,
        settings=job_settings(jobs.registration),
    shell:
        "{params.iusynth} register-us --subject-dir {params.subject_dir:q} --raw-sha256={params.raw_sha256:q} --subject {wildcards.subject}"
        " --alignment {input.alignment:q} --settings {params.settings:q} --threads {threads} --output {output:q} > {log:q} 2>&1"


rule import_given_transforms:
    input:
        subject=subject_inputs,
        transforms=given_transform_files,
    output:
        registration=f"{RESULTS}/registration/{{cohort}}/{{subject}}/us_to_mr.json",
        alignment=f"{RESULTS}/registration/{{cohort}}/{{subject}}/mr_alignment.json",
    log:
        f"{RESULTS}/logs/import_given_transforms/{{cohort}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/import_given_transforms/{{cohort}}/{{subject}}.tsv"
    wildcard_constraints:
        cohort="|".join(GIVEN_TRANSFORM_COHORTS) or "no-cohort",
    conda:
        "../envs/registration.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=3000,
        runtime=10,
    params:
        iusynth=IUSYNTH,
        subject_dir=subject_dir,
        raw_sha256=raw_sha256,
        transforms=lambda wildcards: COHORTS[wildcards.cohort].transforms,
        settings=job_settings(jobs.registration),
    shell:
        "{params.iusynth} import-transforms --subject-dir {params.subject_dir:q} --raw-sha256={params.raw_sha256:q}"
        " --subject {wildcards.subject} --transforms {params.transforms:q}"
        " --settings {params.settings:q} --registration {output.registration:q}"
        " --alignment {output.alignment:q} > {log:q} 2>&1"


rule resample_and_normalise:
    input:
        subject=subject_inputs,
        registration=rules.register_us_to_mr.output[0],
        alignment=rules.align_mr_sequences.output[0],
    output:
        directory(f"{RESULTS}/preprocessed/{{cohort}}/{{subject}}"),
    log:
        f"{RESULTS}/logs/resample_and_normalise/{{cohort}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/resample_and_normalise/{{cohort}}/{{subject}}.tsv"
    conda:
        "../envs/preprocessing.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=4000,
        runtime=20,
    params:
        iusynth=IUSYNTH,
        subject_dir=subject_dir,
        raw_sha256=raw_sha256,
        settings=job_settings(jobs.preprocessing),
    shell:
        "{params.iusynth} preprocess --subject-dir {params.subject_dir:q} --raw-sha256={params.raw_sha256:q} --subject {wildcards.subject}"
        " --registration {input.registration:q} --alignment {input.alignment:q}"
        " --settings {params.settings:q} --output {output:q} > {log:q} 2>&1"


rule export_slices:
    input:
        rules.resample_and_normalise.output[0],
    output:
        directory(f"{RESULTS}/slices/{{cohort}}/{{subject}}"),
    log:
        f"{RESULTS}/logs/export_slices/{{cohort}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/export_slices/{{cohort}}/{{subject}}.tsv"
    conda:
        "../envs/preprocessing.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=2000,
        runtime=10,
    params:
        iusynth=IUSYNTH,
    shell:
        "{params.iusynth} export-slices --preprocessed-dir {input:q} --subject {wildcards.subject}"
        " --output {output:q} > {log:q} 2>&1"


rule landmark_error_table:
    input:
        registration_records,
    output:
        report(
            f"{RESULTS}/registration/{{cohort}}_landmark_errors.csv",
            caption="../report/registration_qc.rst",
            category="Preprocessing",
        ),
    log:
        f"{RESULTS}/logs/landmark_error_table/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/landmark_error_table/{{cohort}}.tsv"
    conda:
        "../envs/registration.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=1000,
        runtime=5,
    params:
        iusynth=IUSYNTH,
    shell:
        "{params.iusynth} registration-table --output {output:q} {input:q} > {log:q} 2>&1"


rule make_splits:
    input:
        trainval=cohort_manifest(config["preprocessing"]["trainval_cohort"]),
        test=cohort_manifest(config["preprocessing"]["test_cohort"]),
    output:
        f"{RESULTS}/splits/splits.json",
    log:
        f"{RESULTS}/logs/make_splits.log",
    benchmark:
        f"{RESULTS}/benchmarks/make_splits.tsv"
    conda:
        "../envs/preprocessing.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=500,
        runtime=5,
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.splits),
        trainval=config["preprocessing"]["trainval_cohort"],
        test=config["preprocessing"]["test_cohort"],
    shell:
        "{params.iusynth} splits --settings {params.settings:q}"
        " --trainval-cohort {params.trainval} --trainval-manifest {input.trainval:q}"
        " --test-cohort {params.test} --test-manifest {input.test:q}"
        " --output {output:q} > {log:q} 2>&1"


rule plot_registration_qc:
    input:
        subject=subject_inputs,
        preprocessed=rules.resample_and_normalise.output[0],
    output:
        f"{RESULTS}/qc/registration/{{cohort}}/{{subject}}.png",
    log:
        f"{RESULTS}/logs/plot_registration_qc/{{cohort}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/plot_registration_qc/{{cohort}}/{{subject}}.tsv"
    conda:
        "../envs/qc.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=2000,
        runtime=5,
    params:
        iusynth=IUSYNTH,
        subject_dir=subject_dir,
        raw_sha256=raw_sha256,
    shell:
        "{params.iusynth} qc-registration --subject-dir {params.subject_dir:q} --raw-sha256={params.raw_sha256:q}"
        " --subject {wildcards.subject} --preprocessed-dir {input.preprocessed:q}"
        " --output {output:q} > {log:q} 2>&1"
