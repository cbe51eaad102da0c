"""How each package declares its command-line stages (``python -m iusynth <stage>``).

A stage is a name, a help line, the function that runs it and its arguments: names of
the shared arguments below, or ``(flags, options)`` pairs of its own. Each package's
``cli`` module lists its stages in ``STAGES``; :mod:`iusynth.cli` collects them. Stage
functions import what they need when they run, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One sub-command: its name, help line, function and arguments."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], None]
    arguments: list[Any]

    def add_to(self, commands: Any) -> None:
        """Register this stage on an ``add_subparsers`` object."""
        command = commands.add_parser(self.name, help=self.help, description=self.help)
        for argument in self.arguments:
            spec = SHARED_ARGUMENTS[argument] if isinstance(argument, str) else argument
            for flags, options in spec if isinstance(spec, list) else [spec]:
                command.add_argument(flags, **options)


SHARED_ARGUMENTS: dict[str, Any] = {
    "settings": (
        "--settings",
        {"required": True, "help": "the job's settings as JSON (see iusynth.jobs)"},
    ),
    "subject-dir": [
        ("--subject-dir", {"required": True, "type": Path, "help": "the subject's folder"}),
        (
            "--raw-sha256",
            {
                "default": "",
                "help": "name=sha256 of each raw file, comma-joined: a file that differs is "
                "refused (iusynth.core.raw_digests); empty for folders the workflow writes",
            },
        ),
    ],
    "subject": ("--subject", {"required": True, "help": "subject id"}),
    "preprocessed-dir": (
        "--preprocessed-dir",
        {"required": True, "type": Path, "help": "preprocessed subject"},
    ),
    "alignment": (
        "--alignment",
        {"required": True, "type": Path, "help": "align-mr record (MR -> MR transforms)"},
    ),
    "raw": ("--raw", {"required": True, "type": Path, "help": "the dataset's download folder"}),
    "url": ("--url", {"required": True, "help": "the dataset's server root"}),
    "download": (
        "--download",
        {"required": True, "help": "the 'download' config section as JSON"},
    ),
    "lpips-weights": (
        "--lpips-weights",
        {"type": Path, "default": None, "help": "folder of the LPIPS weights (none: no LPIPS)"},
    ),
    "threads": ("--threads", {"type": int, "default": 1, "help": "CPU threads (OpenMP, torch)"}),
    "png": ("--output", {"required": True, "type": Path, "help": "PNG to write"}),
    "json": ("--output", {"required": True, "type": Path, "help": "JSON to write"}),
    "folder": ("--output", {"required": True, "type": Path, "help": "folder to write"}),
    "splits": ("--splits", {"required": True, "type": Path, "help": "splits.json"}),
    "resume-cache": (
        "--resume-cache",
        {
            "type": Path,
            "default": None,
            "help": "folder keeping finished subjects of a killed job (iusynth.core.resumable)",
        },
    ),
    "cohort-slices": (
        "--slices",
        {"required": True, "type": Path, "help": "the cohort's slice stacks"},
    ),
    "checkpoint": (
        "--checkpoint",
        {"required": True, "type": Path, "help": "checkpoint to resume"},
    ),
    "losses": ("--losses", {"required": True, "type": Path, "help": "loss curves CSV"}),
    "model-output": ("--output", {"required": True, "type": Path, "help": "model.pt to write"}),
    "pretrained-options": [
        (
            "--slice-size",
            {"type": int, "nargs": 2, "default": None, "help": "preprocessing.slice_size"},
        ),
        (
            "--cache",
            {"type": Path, "default": Path("data/pretrained"), "help": "where URLs land"},
        ),
        ("--download", {"default": None, "help": "the 'download' config section as JSON"}),
    ],
}
