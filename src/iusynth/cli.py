"""The command line: ``python -m iusynth <stage>``, one sub-command per workflow stage.

The Snakemake rules call these; each can also be run by hand, e.g.
``python -m iusynth demo-subject --help``. The stages live beside their code, in each
package's ``cli`` module.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from iusynth.core.commands import Stage
from iusynth.core.processes import die_with_parent

log = logging.getLogger("iusynth")

STAGE_MODULES = (
    "iusynth.core.cli",
    "iusynth.cohorts.cli",
    "iusynth.preprocessing.cli",
    "iusynth.training.cli",
    "iusynth.synthesis.cli",
    "iusynth.evaluation.cli",
    "iusynth.experiments.registration_tre.cli",
    "iusynth.experiments.segmentation.cli",
    "iusynth.reporting.cli",
)


def stages() -> dict[str, Stage]:
    """Every stage of every package, by name."""
    found: dict[str, Stage] = {}
    for module in STAGE_MODULES:
        for stage in importlib.import_module(module).STAGES:
            if stage.name in found:
                raise RuntimeError(f"stage {stage.name!r} is declared twice ({module})")
            found[stage.name] = stage
    return found


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per stage."""
    parser = argparse.ArgumentParser(
        prog="python -m iusynth",
        description="MRI <-> intra-operative ultrasound synthesis workflow: stages",
    )
    commands = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage in stages().values():
        stage.add_to(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run one stage from the command line.

    Run as a program (``argv`` None), the stage ends with the job that started it
    (:func:`iusynth.core.processes.die_with_parent`): a killed Snakemake leaves no stage
    running, and a SIGTERM removes the stage's temporary files on the way out.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if argv is None:
        die_with_parent()
    args = build_parser().parse_args(argv)
    try:
        stages()[args.stage].run(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        log.error("%s", error)
        sys.exit(1)
