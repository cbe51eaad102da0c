# The synthesis models: MMHVAE, its ablations and the VAE baselines, one job per variant.
# A variant with `pretrained` converts and verifies the authors' checkpoint instead.


rule train_model:
    input:
        unpack(train_model_inputs),
    output:
        model=f"{RESULTS}/models/{{variant}}/model.pt",
        losses=f"{RESULTS}/models/{{variant}}/losses.csv",
    log:
        f"{RESULTS}/logs/train_model/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model/{{variant}}.tsv"
    wildcard_constraints:
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
        settings=lambda wildcards: variant_settings(wildcards.variant),
        data=train_model_arguments,
    shell:
        "{params.iusynth} train --variant {wildcards.variant} --settings {params.settings:q}"
        " {params.data} --threads {threads} --losses {output.losses:q}"
        " --output {output.model:q} > {log} 2>&1"
