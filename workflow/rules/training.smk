# The synthesis models: MMHVAE, its ablations and the VAE baselines, one job per variant.


rule train_model:
    input:
        splits=rules.make_splits.output[0],
        slices=trainval_slice_dirs(),
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
        "../../envs/training.yaml"
    threads: config["models"]["threads"]
    resources:
        **GPU_JOB,
        mem_mb=8000,
        runtime=24 * 60,
        gpu=config["models"]["gpus"],
    params:
        iusynth=IUSYNTH,
        settings=lambda wildcards: variant_settings(wildcards.variant),
        slices=lambda wildcards, input: str(Path(input.slices[0]).parent),
        checkpoint=f"{RESULTS}/models/{{variant}}/checkpoint.pt",
    shell:
        "{params.iusynth} train --variant {wildcards.variant} --settings {params.settings:q}"
        " --splits {input.splits:q} --slices {params.slices:q} --threads {threads}"
        " --checkpoint {params.checkpoint:q} --losses {output.losses:q}"
        " --output {output.model:q} > {log} 2>&1"
