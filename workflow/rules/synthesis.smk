# GAN baselines, synthesis of the evaluation subjects, metrics, Tables 1-2 and figures.


rule train_baseline:
    input:
        splits=rules.make_splits.output[0],
        slices=trainval_slice_dirs(),
        weights=baseline_training_files,
    output:
        model=f"{RESULTS}/models/fold-{{fold}}/{{baseline}}/{{network}}/model.pt",
        losses=f"{RESULTS}/models/fold-{{fold}}/{{baseline}}/{{network}}/losses.csv",
    log:
        f"{RESULTS}/logs/train_baseline/fold-{{fold}}/{{baseline}}/{{network}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_baseline/fold-{{fold}}/{{baseline}}/{{network}}.tsv"
    wildcard_constraints:
        fold="|".join(str(fold) for fold in FOLDS),
        baseline="|".join(BASELINE_NETWORKS),
        network="|".join(
            re.escape(network)
            for network in dict.fromkeys(sum(BASELINE_NETWORKS.values(), ()))
        ),
    conda:
        "../envs/training.yaml"
    threads: config["baselines"]["threads"]
    resources:
        **GPU_JOB,
        mem_mb=6000,
        runtime=12 * 60,
        gpu=config["baselines"]["gpus"],
    params:
        iusynth=IUSYNTH,
        settings=lambda wildcards: job_settings(
            jobs.baseline, wildcards.baseline, wildcards.network, int(wildcards.fold)
        ),
        slices=lambda wildcards, input: str(Path(input.slices[0]).parent),
        checkpoint=f"{RESULTS}/models/fold-{{fold}}/{{baseline}}/{{network}}/checkpoint.pt",
        lpips=baseline_lpips_argument,
    shell:
        "{params.iusynth} train-baseline --settings {params.settings:q}"
        " --splits {input.splits:q} --slices {params.slices:q} {params.lpips}"
        " --threads {threads} --checkpoint {params.checkpoint:q}"
        " --losses {output.losses:q} --output {output.model:q} > {log:q} 2>&1"


# Synthesis and its metrics run one job per method, evaluation set and fold (the model,
# or LPIPS, loaded once for all its subjects), with per-subject outputs; a killed job keeps
# its finished subjects in a cache under .resume and reuses them when nothing they depend
# on changed (iusynth.core.resumable). A subject of the train/validation cohort is
# synthesised by the models of the fold whose test list holds it; the test cohort by the
# primary fold's.
for evaluation_set_name, evaluation_folds in EVALUATION_SETS.items():
    for evaluation_fold, evaluation_set_subjects in evaluation_folds.items():

        rule:
            name:
                f"synthesise_{evaluation_set_name}_fold{evaluation_fold}"
            input:
                models=lambda wildcards, fold=evaluation_fold: method_models(
                    wildcards.method, fold
                ),
                slices=[slice_dir_of(s) for s in evaluation_set_subjects],
                splits=rules.make_splits.output[0],
            output:
                [
                    directory(f"{RESULTS}/synthesis/{{method}}/{s}")
                    for s in evaluation_set_subjects
                ],
            log:
                f"{RESULTS}/logs/synthesise/{{method}}/{evaluation_set_name}_fold{evaluation_fold}.log",
            benchmark:
                f"{RESULTS}/benchmarks/synthesise/{{method}}/{evaluation_set_name}_fold{evaluation_fold}.tsv"
            wildcard_constraints:
                method="|".join(fold_methods(evaluation_fold)),
            conda:
                "../envs/training.yaml"
            threads: config["evaluation"]["threads"]
            resources:
                **GPU_JOB,
                mem_mb=4000,
                runtime=4 * 60,
                gpu=config["evaluation"]["gpus"],
            params:
                iusynth=IUSYNTH,
                settings=lambda wildcards: job_settings(jobs.sweep, wildcards.method),
                fold=evaluation_fold,
                cache=f"{RESULTS}/.resume/synthesise/{{method}}/{evaluation_set_name}_fold{evaluation_fold}",
            shell:
                "{params.iusynth} synthesise --method {wildcards.method} --models {input.models:q}"
                " --slices {input.slices:q} --splits {input.splits:q} --fold {params.fold}"
                " --settings {params.settings:q} --threads {threads}"
                " --output {output:q} --resume-cache {params.cache:q} > {log:q} 2>&1"

        rule:
            name:
                f"evaluate_synthesis_{evaluation_set_name}_fold{evaluation_fold}"
            input:
                synthesis=[
                    f"{RESULTS}/synthesis/{{method}}/{s}"
                    for s in evaluation_set_subjects
                ],
                slices=[slice_dir_of(s) for s in evaluation_set_subjects],
                lpips=LPIPS_WEIGHTS,
            output:
                [
                    f"{RESULTS}/metrics/synthesis/{{method}}/{s}.csv"
                    for s in evaluation_set_subjects
                ],
            log:
                f"{RESULTS}/logs/evaluate_synthesis/{{method}}/{evaluation_set_name}_fold{evaluation_fold}.log",
            benchmark:
                f"{RESULTS}/benchmarks/evaluate_synthesis/{{method}}/{evaluation_set_name}_fold{evaluation_fold}.tsv"
            wildcard_constraints:
                method="|".join(fold_methods(evaluation_fold)),
            conda:
                "../envs/evaluation.yaml"
            threads: config["evaluation"]["threads"]
            resources:
                **CPU_JOB,
                mem_mb=4000,
                runtime=2 * 60,
            params:
                iusynth=IUSYNTH,
                settings=job_settings(jobs.metrics),
                lpips=lpips_argument(),
                set=evaluation_set_name,
                cache=f"{RESULTS}/.resume/evaluate_synthesis/{{method}}/{evaluation_set_name}_fold{evaluation_fold}",
            shell:
                "{params.iusynth} evaluate-synthesis --method {wildcards.method}"
                " --set {params.set} --synthesis {input.synthesis:q} --slices {input.slices:q}"
                " --settings {params.settings:q} {params.lpips} --threads {threads}"
                " --output {output:q} --resume-cache {params.cache:q} > {log:q} 2>&1"


if LPIPS_WEIGHTS:

    rule lpips_weights:
        output:
            LPIPS_WEIGHTS,
        log:
            f"{RESULTS}/logs/lpips_weights.log",
        benchmark:
            f"{RESULTS}/benchmarks/lpips_weights.tsv"
        conda:
            "../envs/evaluation.yaml"
        threads: 1
        resources:
            **CPU_JOB,
            mem_mb=2000,
            runtime=30,
        params:
            iusynth=IUSYNTH,
            folder=lambda wildcards, output: str(Path(output[0]).parent),
            source=config["evaluation"]["lpips_source"],
            download=(
                f"--download {shlex.quote(job_settings(jobs.download))}"
                if config["evaluation"]["lpips_source"] == "torchvision"
                else ""
            ),
        shell:
            "{params.iusynth} lpips-weights --folder {params.folder:q}"
            " --source {params.source} {params.download} > {log:q} 2>&1"


rule synthesis_tables:
    input:
        metrics=[
            f"{RESULTS}/metrics/synthesis/{method}/{subject}.csv"
            for method in EVALUATED_METHODS
            for subject in evaluated_subjects(method)
        ],
        paper=PAPER_RESULTS,
        lpips=LPIPS_WEIGHTS,
    output:
        subjects=f"{RESULTS}/metrics/synthesis_subjects.csv",
        summary=f"{RESULTS}/metrics/synthesis_summary.csv",
        table1=[
            report(
                f"{RESULTS}/tables/table1_synthesis.csv",
                caption="../report/synthesis_table.rst",
                category="Synthesis (Tables 1-2)",
            ),
            f"{RESULTS}/tables/table1_synthesis.md",
            f"{RESULTS}/tables/table1_synthesis.tex",
        ],
        table2=[
            report(
                f"{RESULTS}/tables/table2_ablations.csv",
                caption="../report/synthesis_table.rst",
                category="Synthesis (Tables 1-2)",
            ),
            f"{RESULTS}/tables/table2_ablations.md",
            f"{RESULTS}/tables/table2_ablations.tex",
        ],
        skill=[
            report(
                f"{RESULTS}/tables/skill_synthesis.csv",
                caption="../report/skill_table.rst",
                category="Synthesis (Tables 1-2)",
            ),
            f"{RESULTS}/tables/skill_synthesis.md",
        ],
    log:
        f"{RESULTS}/logs/synthesis_tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthesis_tables.tsv"
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=4000,
        runtime=30,
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.tables),
        lpips=lpips_argument(),
    shell:
        "{params.iusynth} synthesis-tables --settings {params.settings:q} {params.lpips}"
        " --paper {input.paper:q} --metrics {input.metrics:q}"
        " --subjects {output.subjects:q} --summary {output.summary:q}"
        " --table1 {output.table1:q} --table2 {output.table2:q} --skill {output.skill:q}"
        " > {log:q} 2>&1"


rule synthesis_figures:
    input:
        synthesis=[
            f"{RESULTS}/synthesis/{method}/{subject}"
            for method in FIGURE_METHODS
            for subject in evaluated_subjects(method)
        ],
        slices=[slice_dir_of(subject) for subject in EVALUATION_SUBJECTS],
    output:
        examples=report(
            f"{RESULTS}/figures/synthesis_examples.png",
            caption="../report/synthesis_figures.rst",
            category="Synthesis (Tables 1-2)",
        ),
        sweep=report(
            f"{RESULTS}/figures/temperature_sweep.png",
            caption="../report/synthesis_figures.rst",
            category="Synthesis (Tables 1-2)",
        ),
    log:
        f"{RESULTS}/logs/synthesis_figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthesis_figures.tsv"
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        **CPU_JOB,
        mem_mb=2000,
        runtime=15,
    params:
        iusynth=IUSYNTH,
        settings=job_settings(jobs.figures),
        root=lambda wildcards, input: str(Path(input.synthesis[0]).parent.parent),
    shell:
        "{params.iusynth} synthesis-figures --settings {params.settings:q}"
        " --synthesis-root {params.root:q} --slices {input.slices:q}"
        " --examples {output.examples:q} --sweep {output.sweep:q} > {log:q} 2>&1"
