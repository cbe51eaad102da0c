# Reports a reviewer can open: the run's provenance, one self-contained HTML page per
# subject, the methods text with its citations, and an index linking them all. The
# functions these rules use are in reports_common.smk.


rule write_provenance:
    input:
        config_files=RUN_CONFIG_FILES,
        envs=ENV_FILES,
        manifests=[cohort_manifest(name) for name in COHORTS],
        models=provenance_models(),
        benchmarks=rules.summarise_benchmarks.output[0],
    output:
        PROVENANCE,
    log:
        f"{RESULTS}/logs/write_provenance.log",
    benchmark:
        f"{RESULTS}/benchmarks/write_provenance.tsv"
    conda:
        "../envs/reports.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=1000,
        runtime=15,
    params:
        iusynth=IUSYNTH,
        # the checkout whose commit is recorded: the one holding workflow/envs/
        repository=lambda wildcards, input: str(Path(input.envs[0]).parents[2]),
        config=EFFECTIVE_CONFIG,
        cohorts=provenance_cohorts(),
        snakemake=SNAKEMAKE_VERSION,
        describe=config["provenance"]["commit"],
    shell:
        "{params.iusynth} provenance --repository {params.repository:q}"
        " --config {params.config:q} --config-files {input.config_files:q}"
        " --cohorts {params.cohorts:q} --models {input.models:q}"
        " --benchmarks {input.benchmarks:q} --env-files {input.envs:q}"
        " --snakemake-version {params.snakemake} --describe {params.describe:q}"
        " --output {output:q} > {log:q} 2>&1"


rule report_subject:
    input:
        unpack(subject_report_inputs),
    output:
        page=f"{REPORTS}/{{cohort}}/{{subject}}.html",
        summary=f"{REPORTS}/{{cohort}}/{{subject}}.json",
    log:
        f"{RESULTS}/logs/report_subject/{{cohort}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report_subject/{{cohort}}/{{subject}}.tsv"
    conda:
        "../envs/reports.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=3000,
        runtime=15,
    params:
        iusynth=IUSYNTH,
        files=lambda wildcards: json.dumps(subject_report_files(wildcards)),
        settings=lambda wildcards: job_settings(jobs.subject_page, wildcards.cohort),
    shell:
        "{params.iusynth} report-subject --subject {wildcards.subject}"
        " --files {params.files:q} --settings {params.settings:q}"
        " --output {output.page:q} --summary {output.summary:q} > {log:q} 2>&1"


rule report_methods:
    input:
        provenance=PROVENANCE,
    output:
        markdown=f"{REPORTS}/methods.md",
        latex=f"{REPORTS}/methods.tex",
        bibtex=f"{REPORTS}/citations.bib",
    log:
        f"{RESULTS}/logs/report_methods.log",
    benchmark:
        f"{RESULTS}/benchmarks/report_methods.tsv"
    conda:
        "../envs/reports.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=1000,
        runtime=5,
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.methods),
        cohorts=provenance_cohorts(),
    shell:
        "{params.iusynth} report-methods --settings {params.settings:q}"
        " --cohorts {params.cohorts:q} --provenance {input.provenance:q}"
        " --output {output:q} > {log:q} 2>&1"


rule report_index:
    input:
        summaries=subject_pages("json"),
        pages=subject_pages("html"),
        tables=RESULT_TABLES,
        provenance=PROVENANCE,
        methods=rules.report_methods.output,
    output:
        f"{REPORTS}/index.html",
    log:
        f"{RESULTS}/logs/report_index.log",
    benchmark:
        f"{RESULTS}/benchmarks/report_index.tsv"
    conda:
        "../envs/reports.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=1000,
        runtime=5,
    params:
        iusynth=IUSYNTH,
        markdown=[path for path in RESULT_TABLES if path.endswith(".md")],
        settings=job_settings(jobs.segmentation_tables),
    shell:
        "{params.iusynth} report-index --summaries {input.summaries:q}"
        " --tables {params.markdown:q} --provenance {input.provenance:q}"
        " --methods {input.methods:q} --settings {params.settings:q}"
        " --output {output:q} > {log:q} 2>&1"
