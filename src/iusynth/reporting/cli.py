"""Command-line stage of reporting: the run's per-rule timing."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from iusynth.core.commands import Stage

log = logging.getLogger("iusynth")


def _benchmark_summary(args: argparse.Namespace) -> None:
    """Summarise Snakemake's benchmark files per rule."""
    from iusynth.core.fileio import atomic_path
    from iusynth.reporting.benchmarking import summarise_benchmarks

    table = summarise_benchmarks(args.folder, exclude=tuple(args.exclude))
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    log.info("summarised %d rules", len(table))


STAGES = (
    Stage(
        "benchmark-summary",
        "summarise Snakemake's per-job benchmark files per rule",
        _benchmark_summary,
        [
            ("--folder", {"required": True, "type": Path, "help": "Snakemake benchmark folder"}),
            ("--exclude", {"nargs": "*", "default": [], "help": "rules to leave out"}),
            ("--output", {"required": True, "type": Path, "help": "TSV to write"}),
        ],
    ),
)
