# Cohorts built by the workflow: the real datasets (source: dataset), downloaded or read
# from their package, verified and converted into the canonical layout; and the manifest
# (subjects.tsv) of every cohort the workflow builds, demo ones included.

DOWNLOADS = f"{RESULTS}/downloads"
DOWNLOAD_SETTINGS = job_settings(jobs.download)


rule write_cohort_manifest:
    input:
        cohort_subject_dirs,
    output:
        f"{RESULTS}/cohorts/{{cohort}}/{MANIFEST_NAME}",
    log:
        f"{RESULTS}/logs/write_cohort_manifest/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/write_cohort_manifest/{{cohort}}.tsv"
    wildcard_constraints:
        cohort="|".join(BUILT_COHORTS) or "no-built-cohort",
    conda:
        "../envs/demo.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=500,
        runtime=5,
    params:
        iusynth=IUSYNTH,
    shell:
        "{params.iusynth} cohort-manifest --output {output:q} {input:q} > {log:q} 2>&1"


if REMIND:

    rule plan_remind:
        output:
            f"{REMIND.root}/plan.tsv",
        log:
            f"{RESULTS}/logs/plan_remind.log",
        benchmark:
            f"{RESULTS}/benchmarks/plan_remind.tsv"
        conda:
            "../envs/datasets.yaml"
        threads: 1
        resources:
            **CPU_JOB,
            mem_mb=2000,
            runtime=10,
        params:
            iusynth=IUSYNTH,
            subjects=REMIND.subjects,
            order=config["preprocessing"]["reference_order"],
            manifest=remind_manifest_argument(),
            targets=REMIND_TARGETS,
            index=REMIND_INDEX_VERSION,
            raw=REMIND.raw,
        shell:
            "{params.iusynth} remind-plan --subjects {params.subjects}"
            " --reference-order {params.order} {params.manifest} --targets {params.targets}"
            " --index-version {params.index}"
            " --raw {params.raw:q} --output {output:q} > {log:q} 2>&1"

    rule download_remind_series:
        output:
            f"{DOWNLOADS}/remind/{{subject}}/{{series}}.json",
        log:
            f"{RESULTS}/logs/download_remind_series/{{subject}}/{{series}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/download_remind_series/{{subject}}/{{series}}.tsv"
        wildcard_constraints:
            subject=subject_choice(REMIND.name),
            series=r"[0-9]+(\.[0-9]+)*",
        retries: 2
        conda:
            "../envs/datasets.yaml"
        threads: 1
        resources:
            **CPU_JOB,
            mem_mb=1000,
            runtime=120,
        params:
            iusynth=IUSYNTH,
            series=remind_planned_series,
            api=REMIND_API,
            raw=REMIND.raw,
            url=remind_url(),
            download=DOWNLOAD_SETTINGS,
        shell:
            "{params.iusynth} remind-download --series {params.series:q} --api {params.api}"
            " --raw {params.raw:q} --url {params.url:q} --download {params.download:q}"
            " --output {output:q} > {log:q} 2>&1"

    rule convert_remind_subject:
        input:
            remind_series_records,
        output:
            directory(f"{REMIND.root}/{{subject}}"),
        log:
            f"{RESULTS}/logs/convert_remind_subject/{{subject}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/convert_remind_subject/{{subject}}.tsv"
        wildcard_constraints:
            subject=subject_choice(REMIND.name),
        conda:
            "../envs/datasets.yaml"
        threads: 2
        resources:
            **CPU_JOB,
            mem_mb=8000,
            runtime=30,
        params:
            iusynth=IUSYNTH,
            settings=job_settings(jobs.registration),
        shell:
            "{params.iusynth} remind-convert --records {input:q} --settings {params.settings:q}"
            " --threads {threads} --output {output:q} > {log:q} 2>&1"


if UPENN:

    rule extract_upenn_package:
        output:
            f"{DOWNLOADS}/upenn/extracted.json",
        log:
            f"{RESULTS}/logs/extract_upenn_package.log",
        benchmark:
            f"{RESULTS}/benchmarks/extract_upenn_package.tsv"
        conda:
            "../envs/datasets.yaml"
        threads: 1
        resources:
            **CPU_JOB,
            mem_mb=2000,
            runtime=600,
        params:
            iusynth=IUSYNTH,
            archive=row(UPENN)["package"],
            target=upenn_package_root(),
        shell:
            "{params.iusynth} upenn-extract --archive {params.archive:q}"
            " --target {params.target:q} --output {output:q} > {log:q} 2>&1"

    rule verify_upenn_package:
        input:
            upenn_extraction(),
        output:
            f"{DOWNLOADS}/upenn/verified.json",
        log:
            f"{RESULTS}/logs/verify_upenn_package.log",
        benchmark:
            f"{RESULTS}/benchmarks/verify_upenn_package.tsv"
        conda:
            "../envs/datasets.yaml"
        threads: 1
        resources:
            **CPU_JOB,
            mem_mb=2000,
            runtime=600,
        params:
            iusynth=IUSYNTH,
            package=upenn_package_root(),
            checksums=upenn_checksums_argument(),
            raw=UPENN.raw,
            cases=UPENN.subjects,
        shell:
            "{params.iusynth} upenn-verify --package {params.package:q} {params.checksums}"
            " --raw {params.raw:q} --output {output:q} --cases {params.cases} > {log:q} 2>&1"

    rule convert_upenn_subject:
        input:
            rules.verify_upenn_package.output[0],
        output:
            directory(f"{UPENN.root}/{{subject}}"),
        log:
            f"{RESULTS}/logs/convert_upenn_subject/{{subject}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/convert_upenn_subject/{{subject}}.tsv"
        wildcard_constraints:
            subject=subject_choice(UPENN.name),
        conda:
            "../envs/datasets.yaml"
        threads: 1
        resources:
            **CPU_JOB,
            mem_mb=2000,
            runtime=10,
        params:
            iusynth=IUSYNTH,
            package=upenn_package_root(),
        shell:
            "{params.iusynth} upenn-convert --package {params.package:q}"
            " --subject {wildcards.subject} --output {output:q} > {log:q} 2>&1"


if RESECT:

    rule download_resect_subject:
        output:
            f"{DOWNLOADS}/resect/{{subject}}.json",
        log:
            f"{RESULTS}/logs/download_resect_subject/{{subject}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/download_resect_subject/{{subject}}.tsv"
        wildcard_constraints:
            subject=subject_choice(RESECT.name),
        retries: 2
        conda:
            "../envs/datasets.yaml"
        threads: 1
        resources:
            **CPU_JOB,
            mem_mb=1000,
            runtime=60,
        params:
            iusynth=IUSYNTH,
            raw=RESECT.raw,
            urls=resect_url_arguments(),
            download=DOWNLOAD_SETTINGS,
        shell:
            "{params.iusynth} resect-download --subject {wildcards.subject}"
            " --raw {params.raw:q} {params.urls} --download {params.download:q}"
            " --output {output:q} > {log:q} 2>&1"

    rule download_resect_segmentations:
        output:
            f"{DOWNLOADS}/resect-segmentations.json",
        log:
            f"{RESULTS}/logs/download_resect_segmentations.log",
        benchmark:
            f"{RESULTS}/benchmarks/download_resect_segmentations.tsv"
        retries: 2
        conda:
            "../envs/datasets.yaml"
        threads: 1
        resources:
            **CPU_JOB,
            mem_mb=1000,
            runtime=60,
        params:
            iusynth=IUSYNTH,
            raw=RESECT.raw,
            url=resect_segmentation_url(),
            download=DOWNLOAD_SETTINGS,
        shell:
            "{params.iusynth} resect-segmentations --raw {params.raw:q} --url {params.url:q}"
            " --download {params.download:q} --output {output:q} > {log:q} 2>&1"

    rule convert_resect_subject:
        input:
            record=rules.download_resect_subject.output[0],
            segmentations=rules.download_resect_segmentations.output[0],
        output:
            directory(f"{RESECT.root}/{{subject}}"),
        log:
            f"{RESULTS}/logs/convert_resect_subject/{{subject}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/convert_resect_subject/{{subject}}.tsv"
        wildcard_constraints:
            subject=subject_choice(RESECT.name),
        conda:
            "../envs/datasets.yaml"
        threads: 1
        resources:
            **CPU_JOB,
            mem_mb=2000,
            runtime=10,
        params:
            iusynth=IUSYNTH,
        shell:
            "{params.iusynth} resect-convert --record {input.record:q}"
            " --segmentations {input.segmentations:q} --output {output:q} > {log:q} 2>&1"
