"""Command-line entry points, one sub-command per workflow stage.

The Snakemake rules call these; each can also be run by hand, e.g.
``python -m iusynth demo-subject --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("iusynth")


def _demo_subject(args: argparse.Namespace) -> None:
    """Generate one demo subject into its folder."""
    from iusynth.demo.generate import DemoSettings, generate_subject
    from iusynth.demo.plan import plan_cohort

    demo = json.loads(args.settings)
    plans = {plan.subject: plan for plan in plan_cohort(args.cohort, demo)}
    if args.subject not in plans:
        raise SystemExit(f"subject {args.subject!r} is not planned for demo cohort {args.cohort!r}")
    start = time.perf_counter()
    subject = generate_subject(plans[args.subject], DemoSettings.from_config(demo), args.output)
    log.info(
        "generated %s (%s, %s) in %.1f s",
        args.subject,
        subject.plan.grade,
        "+".join(subject.plan.modalities),
        time.perf_counter() - start,
    )
    if "initial_landmark_error_mm" in subject.truth:
        log.info("median landmark misalignment %.2f mm", subject.truth["initial_landmark_error_mm"])


def _cohort_manifest(args: argparse.Namespace) -> None:
    """Write a cohort's subjects.tsv from its subject folders."""
    from iusynth import layout

    entries = [layout.scan_subject(Path(folder), Path(folder).name) for folder in args.subject_dirs]
    layout.write_manifest(args.output, entries)
    log.info("wrote %s with %d subjects", args.output, len(entries))


def _qc_subject(args: argparse.Namespace) -> None:
    """Plot the QC figure of one subject."""
    from iusynth.qc import plot_subject

    plot_subject(args.subject_dir, args.subject, args.output)
    log.info("wrote %s", args.output)


STAGES: dict[str, tuple[str, Callable[[argparse.Namespace], None]]] = {
    "demo-subject": ("generate one subject of the offline demo cohort", _demo_subject),
    "cohort-manifest": ("write a cohort's subjects.tsv from its subject folders", _cohort_manifest),
    "qc-subject": (
        "plot a subject's QC figure (slices of every modality, label contours)",
        _qc_subject,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per stage."""
    parser = argparse.ArgumentParser(
        prog="python -m iusynth",
        description="MRI <-> intra-operative ultrasound synthesis workflow: stages",
    )
    commands = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (help_text, _) in STAGES.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        if name == "demo-subject":
            command.add_argument(
                "--cohort", required=True, help="demo cohort (remind, upenn, resect)"
            )
            command.add_argument("--subject", required=True, help="subject id from the cohort plan")
            command.add_argument(
                "--settings", required=True, help="the 'demo' config section as JSON"
            )
            command.add_argument(
                "--output", required=True, type=Path, help="subject folder to write"
            )
        elif name == "cohort-manifest":
            command.add_argument("--output", required=True, type=Path, help="subjects.tsv to write")
            command.add_argument(
                "subject_dirs", nargs="+", help="subject folders (named by subject id)"
            )
        elif name == "qc-subject":
            command.add_argument(
                "--subject-dir", required=True, type=Path, help="the subject's folder"
            )
            command.add_argument("--subject", required=True, help="subject id")
            command.add_argument("--output", required=True, type=Path, help="PNG to write")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run one stage from the command line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        STAGES[args.stage][1](args)
    except (FileNotFoundError, ValueError) as error:
        log.error("%s", error)
        sys.exit(1)


if __name__ == "__main__":
    main()
