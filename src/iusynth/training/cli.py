"""Command-line stages of training: MMHVAE variants, pretrained weights, GAN baselines."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from iusynth.core.commands import Stage
from iusynth.core.settings import build, from_json

log = logging.getLogger("iusynth")


def _install_pretrained(args: argparse.Namespace, source: Any, key: str) -> None:
    """Convert and verify the authors' checkpoint ``source`` into ``args.output``."""
    from iusynth.cohorts.datasets.download import RetryPolicy
    from iusynth.model.network import parameter_counts
    from iusynth.training.pretrained import install_pretrained

    if args.download is None:
        raise ValueError(f"{key}: --download (the download settings) is needed")
    policy = from_json(RetryPolicy, args.download)
    model = install_pretrained(source, key, args.cache, policy, args.output, args.losses)
    log.info(
        "%s: %s parameters, modalities %s, %d x %d slices",
        key,
        f"{parameter_counts(model)['total']:,}",
        "/".join(model.config.modalities),
        model.config.image_size,
        model.config.image_size,
    )


def _train(args: argparse.Namespace) -> None:
    """Train one model variant on a fold of the paired cohort (or convert its checkpoint).

    ``--settings``: :class:`VariantSettings`, or :class:`PretrainedSettings` under the key
    ``pretrained`` for a variant that uses the authors' weights.
    """
    import torch

    from iusynth.model.network import parameter_counts
    from iusynth.training.mmhvae import fold_stacks, train
    from iusynth.training.settings import PretrainedSettings, VariantSettings

    torch.set_num_threads(args.threads)
    given = json.loads(args.settings)
    if "pretrained" in given:
        source = build(PretrainedSettings, given["pretrained"], "--settings")
        _install_pretrained(args, source, f"models.variants.{args.variant}.pretrained")
        return
    if args.splits is None or args.slices is None or args.checkpoint is None:
        raise ValueError(
            f"variant {args.variant} trains: --splits, --slices and --checkpoint are needed"
        )
    settings = from_json(VariantSettings, args.settings)
    model_config, training = settings.model, settings.training
    splits = json.loads(args.splits.read_text())
    train_stacks, val_stacks = fold_stacks(
        splits,
        settings.fold,
        args.slices,
        model_config.modalities,
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
    from iusynth.training.settings import PretrainedSettings

    url = "://" in args.checkpoint
    if url and args.sha256 is None:
        raise ValueError(f"{args.checkpoint}: a URL needs --sha256 (the file's SHA-256)")
    source = PretrainedSettings(
        path=None if url else args.checkpoint,
        url=args.checkpoint if url else None,
        sha256=args.sha256,
        slice_size=None if args.slice_size is None else tuple(args.slice_size),
        fold=args.fold,
        score_training_subjects=False,
    )
    _install_pretrained(args, source, "--checkpoint")


def _train_baseline(args: argparse.Namespace) -> None:
    """Train one GAN baseline network (Pix2Pix for a direction, or MM-GAN)."""
    import torch

    from iusynth.core.modalities import MODALITIES
    from iusynth.training.baselines import train_translator
    from iusynth.training.mmhvae import fold_stacks
    from iusynth.training.settings import BaselineSettings

    torch.set_num_threads(args.threads)
    settings = from_json(BaselineSettings, args.settings)
    config = settings.translator
    splits = json.loads(args.splits.read_text())
    train_stacks, val_stacks = fold_stacks(
        splits, settings.fold, args.slices, MODALITIES, complete_only=False
    )
    trainer = train_translator(
        config,
        settings.training,
        train_stacks,
        val_stacks,
        args.output,
        args.checkpoint,
        args.losses,
        lpips_weights=args.lpips_weights,
    )
    log.info(
        "trained %s %s -> %s for %d epochs",
        config.kind,
        "+".join(config.inputs),
        "+".join(config.targets),
        trainer.epoch,
    )


STAGES = (
    Stage(
        "train",
        "train one MMHVAE variant (or VAE baseline) on a fold of the paired cohort; a variant "
        "with 'pretrained' converts the authors' checkpoint instead",
        _train,
        [
            ("--variant", {"required": True, "help": "name under models.variants"}),
            "settings",
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
            (
                "--fold",
                {
                    "type": int,
                    "default": 0,
                    "help": "the authors' fold the weights were trained on (published: 0)",
                },
            ),
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
            "settings",
            "splits",
            "cohort-slices",
            "lpips-weights",
            "threads",
            "checkpoint",
            "losses",
            "model-output",
        ],
    ),
)
