# The offline demo cohort: simulated subjects on MNI152 anatomy, in the canonical layout.


rule prepare_demo_template:
    output:
        f"{RESULTS}/cohorts/template_anatomy.npz",
    log:
        f"{RESULTS}/logs/prepare_demo_template.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_demo_template.tsv"
    conda:
        "../envs/demo.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=4000,
        runtime=15,
    params:
        iusynth=IUSYNTH,
        spacing_mm=config["demo"]["mr_spacing_mm"],
    shell:
        "{params.iusynth} demo-template --spacing-mm {params.spacing_mm}"
        " --output {output:q} > {log:q} 2>&1"


rule generate_demo_subject:
    input:
        template=rules.prepare_demo_template.output[0],
    output:
        directory(f"{RESULTS}/cohorts/{{cohort}}/{{subject}}"),
    log:
        f"{RESULTS}/logs/generate_demo_subject/{{cohort}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate_demo_subject/{{cohort}}/{{subject}}.tsv"
    wildcard_constraints:
        cohort="|".join(DEMO_COHORTS) or "no-demo-cohort",
    conda:
        "../envs/demo.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=4000,
        runtime=15,
    params:
        iusynth=IUSYNTH,
        dataset=lambda wildcards: COHORTS[wildcards.cohort].dataset,
        settings=job_settings(jobs.demo),
        cohort_settings=lambda wildcards: job_settings(
            jobs.demo_cohort, wildcards.cohort
        ),
    shell:
        "{params.iusynth} demo-subject --cohort {wildcards.cohort} --dataset {params.dataset}"
        " --subject {wildcards.subject} --settings {params.settings:q}"
        " --cohort-settings {params.cohort_settings:q} --template {input.template:q}"
        " --output {output:q} > {log:q} 2>&1"
