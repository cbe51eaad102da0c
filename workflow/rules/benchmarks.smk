# Per-rule timing of the whole run, from the files of Snakemake's benchmark directive.


rule summarise_benchmarks:
    input:
        final_targets(),
    output:
        report(
            f"{RESULTS}/benchmarks/summary.tsv",
            caption="../report/benchmarks.rst",
            category="Run",
        ),
    log:
        f"{RESULTS}/logs/summarise_benchmarks.log",
    benchmark:
        f"{RESULTS}/benchmarks/summarise_benchmarks.tsv"
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=1000,
        runtime=5,
    params:
        iusynth=IUSYNTH,
        folder=lambda wildcards, output: Path(output[0]).parent,
    shell:
        "{params.iusynth} benchmark-summary --folder {params.folder:q}"
        " --exclude summary summarise_benchmarks --output {output:q} > {log:q} 2>&1"
