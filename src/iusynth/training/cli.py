"""Command-line stages of training: MMHVAE variants, pretrained weights, GAN baselines."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from iusynth.core.commands import Stage

log = logging.getLogger("iusynth")


def _install_pretrained(args: argparse.Namespace, value: Any, key: str) -> None:
    """Convert and verify the authors' checkpoint named by ``value`` into ``args.output``."""
    from iusynth.cohorts.datasets.download import RetryPolicy
    from iusynth.model.network import parameter_counts
    from iusynth.training.pretrained import install_pretrained

    model = install_pretrained(
        value,
        key,
        None if args.slice_size is None else tuple(args.slice_size),
        args.cache,
        RetryPolicy.from_config(json.loads(args.download)) if args.download else RetryPolicy(),
        args.output,
        args.losses,
    )
    log.info(
        "%s: %s parameters, modalities %s, %d x %d slices",
        key,
        f"{parameter_counts(model)['total']:,}",
        "/".join(model.config.modalities),
        model.config.image_size,
        model.config.image_size,
    )


def _train(args: argparse.Namespace) -> None:
    """Train one model variant on a fold of the paired cohort (or convert its checkpoint)."""
    import torch

    from iusynth.model.network import parameter_counts
    from iusynth.training.mmhvae import fold_stacks, train, variant_configs

    torch.set_num_threads(args.threads)
    section = json.loads(args.settings)
    pretrained = (section["variants"][args.variant] or {}).get("pretrained")
    if pretrained is not None:
        _install_pretrained(args, pretrained, f"models.variants.{args.variant}.pretrained")
        return
    if args.splits is None or args.slices is None:
        raise ValueError(f"variant {args.variant} trains: --splits and --slices are needed")
    model_config, training = variant_configs(section, args.variant)
    splits = json.loads(args.splits.read_text())
    train_stacks, val_stacks = fold_stacks(
        splits,
        section["fold"],
        args.slices,
        model_config,
        complete_only=training.complete_pairs or training.subsets == "all",
    )
    log.info(
        "variant %s: %d training and %d validation volumes",
        args.variant,
        len(train_stacks),
        len(val_stacks),
    )
    trainer = train(
        model_config, training, train_stacks, val_stacks, args.output, args.checkpoint, args.losses
    )
    log.info(
        "trained %d epochs (generator %s parameters); last loss %.4f",
        trainer.epoch,
        f"{parameter_counts(trainer.model)['total']:,}",
        trainer.history[-1]["loss"],
    )


def _convert_pretrained(args: argparse.Namespace) -> None:
    """Convert the authors' checkpoint (file or URL) into a workflow model.pt."""
    value: Any = args.checkpoint
    if args.sha256 is not None:
        value = {("url" if "://" in args.checkpoint else "path"): args.checkpoint}
        value["sha256"] = args.sha256
    elif "://" in args.checkpoint:
        raise ValueError(f"{args.checkpoint}: a URL needs --sha256 (the file's SHA-256)")
    _install_pretrained(args, value, "--checkpoint")


def _train_baseline(args: argparse.Namespace) -> None:
    """Train one GAN baseline network (Pix2Pix for a direction, or MM-GAN)."""
    import torch

    from iusynth.core.modalities import MODALITIES
    from iusynth.model.network import ModelConfig
    from iusynth.model.translator import TranslatorConfig
    from iusynth.synthesis.synthesizers import canonical_subset
    from iusynth.training.baselines import TranslatorTraining, train_translator
    from iusynth.training.mmhvae import fold_stacks

    torch.set_num_threads(args.threads)
    section = json.loads(args.settings)
    if args.kind == "pix2pix":
        inputs_name, _, target = args.direction.partition("-to-")
        inputs, targets = canonical_subset(inputs_name.split("+")), (target,)
    else:
        inputs, targets = MODALITIES, MODALITIES
    config = TranslatorConfig.from_config(
        section["architecture"],
        kind=args.kind,
        inputs=inputs,
        targets=targets,
        image_size=section["image_size"],
    )
    training = TranslatorTraining.from_config(section["training"])
    splits = json.loads(args.splits.read_text())
    everything = ModelConfig(modalities=MODALITIES)
    train_stacks, val_stacks = fold_stacks(
        splits, args.fold, args.slices, everything, complete_only=False
    )
    trainer = train_translator(
        config, training, train_stacks, val_stacks, args.output, args.checkpoint, args.losses
    )
    log.info("trained %s %s for %d epochs", args.kind, args.direction, trainer.epoch)


STAGES = (
    Stage(
        "train",
        "train one MMHVAE variant (or VAE baseline) on a fold of the paired cohort; a variant "
        "with 'pretrained' converts the authors' checkpoint instead",
        _train,
        [
            ("--variant", {"required": True, "help": "name under models.variants"}),
            ("--settings", {"required": True, "help": "the 'models' config section as JSON"}),
            ("--splits", {"type": Path, "default": None, "help": "splits.json (training)"}),
            ("--slices", {"type": Path, "default": None, "help": "slice stacks (training)"}),
            ("--checkpoint", {"type": Path, "default": None, "help": "checkpoint to resume"}),
            "pretrained-options",
            "threads",
            "losses",
            "model-output",
        ],
    ),
    Stage(
        "convert-pretrained",
        "convert the authors' MMHVAE checkpoint (CP_main_1000.pth) into a workflow model.pt",
        _convert_pretrained,
        [
            ("--checkpoint", {"required": True, "help": "the authors' .pth file, or its URL"}),
            ("--sha256", {"default": None, "help": "its SHA-256 (required for a URL)"}),
            "pretrained-options",
            ("--losses", {"type": Path, "default": None, "help": "empty loss curves CSV"}),
            "model-output",
        ],
    ),
    Stage(
        "train-baseline",
        "train one GAN baseline network (Pix2Pix for one direction, or MM-GAN)",
        _train_baseline,
        [
            ("--kind", {"required": True, "choices": ["pix2pix", "mmgan"]}),
            ("--direction", {"required": True, "help": "e.g. T2-to-US (MM-GAN: any)"}),
            ("--settings", {"required": True, "help": "the 'baselines' config section as JSON"}),
            ("--fold", {"type": int, "default": 0, "help": "fold of splits.json"}),
            "splits",
            "cohort-slices",
            "threads",
            "checkpoint",
            "losses",
            "model-output",
        ],
    ),
)
