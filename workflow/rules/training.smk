# The synthesis models: MMHVAE, its ablations and the VAE baselines, one job per variant
# and trained fold. A variant with `pretrained` converts and verifies the authors'
# checkpoint instead (in the primary fold's folder: it is evaluated with that fold).


rule train_model:
    input:
        unpack(train_model_inputs),
    output:
        model=f"{RESULTS}/models/fold-{{fold}}/{{variant}}/model.pt",
        losses=f"{RESULTS}/models/fold-{{fold}}/{{variant}}/losses.csv",
    log:
        f"{RESULTS}/logs/train_model/fold-{{fold}}/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model/fold-{{fold}}/{{variant}}.tsv"
    wildcard_constraints:
        fold="|".join(str(fold) for fold in FOLDS),
        variant="|".join(config["models"]["variants"]),
    conda:
        "../envs/training.yaml"
    threads: config["models"]["threads"]
    resources:
        **GPU_JOB,
        mem_mb=8000,
        runtime=24 * 60,
        gpu=config["models"]["gpus"],
    params:
        iusynth=IUSYNTH,
        settings=lambda wildcards: variant_settings(
            wildcards.variant, int(wildcards.fold)
        ),
        data=train_model_arguments,
    shell:
        "{params.iusynth} train --variant {wildcards.variant} --settings {params.settings:q}"
        " {params.data} --threads {threads} --losses {output.losses:q}"
        " --output {output.model:q} > {log:q} 2>&1"
