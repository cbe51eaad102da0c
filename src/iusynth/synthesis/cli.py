"""Command-line stage of synthesis: one method on the subjects of an evaluation set."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from iusynth.core.commands import Stage
from iusynth.core.settings import from_json

log = logging.getLogger("iusynth")


def _synthesise(args: argparse.Namespace) -> None:
    """Synthesise subjects with one method over the temperature sweep, the model loaded once.

    ``--slices`` and ``--output`` pair up in order; with ``--resume-cache`` a killed job's
    finished subjects are kept and reused when nothing they depend on changed.
    """
    import torch

    from iusynth.cohorts.datasets.authors import check_fair_scoring
    from iusynth.core.resumable import content_digest, make_resumably
    from iusynth.synthesis.settings import SweepSettings
    from iusynth.synthesis.synthesizers import load_synthesizer, synthesise_subject

    torch.set_num_threads(args.threads)
    if len(args.slices) != len(args.output):
        raise ValueError(
            f"{len(args.slices)} --slices for {len(args.output)} --output folders: give one "
            "output folder per slice stack, in the same order"
        )
    training_subjects = json.loads(args.splits.read_text())["folds"][args.fold]["train"]
    stacks = {stack.name: stack for stack in args.slices}
    for subject in stacks:
        if subject in training_subjects:
            raise ValueError(
                f"{subject} trains the models of fold {args.fold} in {args.splits}, so it "
                "cannot be evaluated; splits.json is out of date: re-run the make_splits rule"
            )
    settings = from_json(SweepSettings, args.settings)
    synthesizer = load_synthesizer(args.models, settings.device)
    pretrained = getattr(synthesizer, "pretrained", None)
    if pretrained is not None:
        fold = pretrained.get("fold", 0)  # files converted before it was recorded: fold 0's
        unfair = check_fair_scoring(
            list(stacks),
            fold,
            pretrained.get("score_training_subjects", False),
            f"models.variants.{args.method}.pretrained",
            str(args.models[0]),
        )
        if unfair:
            log.warning("%s: scoring subjects its weights trained on: %s", args.method, unfair)
    models = content_digest(args.models, args.method, args.settings)
    keys = {subject: content_digest([stack], models) for subject, stack in stacks.items()}

    def make(subject: str, folder: Path) -> None:
        records = synthesise_subject(synthesizer, stacks[subject], settings, folder)
        log.info("%s %s: %d synthesised volumes", args.method, subject, len(records))

    outputs = dict(zip(stacks, args.output, strict=True))
    make_resumably(outputs, keys, args.resume_cache, make)


STAGES = (
    Stage(
        "synthesise",
        "synthesise subjects with one method (every subset, target and temperature)",
        _synthesise,
        [
            ("--method", {"required": True, "help": "method name (a variant or a GAN baseline)"}),
            ("--models", {"required": True, "nargs": "+", "type": Path, "help": "model.pt files"}),
            ("--slices", {"required": True, "nargs": "+", "type": Path, "help": "slice stacks"}),
            "splits",
            ("--fold", {"required": True, "type": int, "help": "fold the models trained on"}),
            "settings",
            "threads",
            ("--output", {"required": True, "nargs": "+", "type": Path, "help": "folders"}),
            "resume-cache",
        ],
    ),
)
