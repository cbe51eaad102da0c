"""Command-line stage of synthesis: every method on one evaluation subject."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from iusynth.core.commands import Stage
from iusynth.core.settings import from_json

log = logging.getLogger("iusynth")


def _synthesise(args: argparse.Namespace) -> None:
    """Synthesise one subject with one method over the temperature sweep."""
    import torch

    from iusynth.synthesis.settings import SweepSettings
    from iusynth.synthesis.synthesizers import load_synthesizer, synthesise_subject

    torch.set_num_threads(args.threads)
    subject = args.slices.name
    training_subjects = json.loads(args.splits.read_text())["folds"][args.fold]["train"]
    if subject in training_subjects:
        raise ValueError(
            f"{subject} trains the models of fold {args.fold} in {args.splits}, so it cannot be "
            "evaluated; splits.json is out of date: re-run the make_splits rule"
        )
    settings = from_json(SweepSettings, args.settings)
    synthesizer = load_synthesizer(args.models, settings.device)
    records = synthesise_subject(synthesizer, args.slices, settings, args.output)
    log.info("%s: %d synthesised volumes", args.method, len(records))


STAGES = (
    Stage(
        "synthesise",
        "synthesise one subject with one method (every subset, target and temperature)",
        _synthesise,
        [
            ("--method", {"required": True, "help": "method name (a variant, pix2pix, mmgan)"}),
            ("--models", {"required": True, "nargs": "+", "type": Path, "help": "model.pt files"}),
            ("--slices", {"required": True, "type": Path, "help": "the subject's slice stack"}),
            "splits",
            ("--fold", {"type": int, "default": 0, "help": "fold the models trained on"}),
            "settings",
            "threads",
            "folder",
        ],
    ),
)
