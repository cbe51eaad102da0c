# Quality control figures of the input data.


rule plot_subject_qc:
    input:
        subject=subject_inputs,
    output:
        f"{RESULTS}/qc/cohorts/{{cohort}}/{{subject}}.png",
    log:
        f"{RESULTS}/logs/plot_subject_qc/{{cohort}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/plot_subject_qc/{{cohort}}/{{subject}}.tsv"
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
        "{params.iusynth} qc-subject --subject-dir {params.subject_dir:q} --raw-sha256={params.raw_sha256:q} --subject {wildcards.subject}"
        " --output {output:q} > {log:q} 2>&1"
