"""Command-line stages of the registration experiment (Table 3)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from iusynth.core.commands import Stage
from iusynth.core.settings import from_json

log = logging.getLogger("iusynth")


def _synthesise_mr(args: argparse.Namespace) -> None:
    """Synthesise each MR sequence of the registration experiment from a subject's iUS."""
    import torch

    from iusynth.core.fileio import atomic_directory
    from iusynth.experiments.registration_tre.experiment import synthesise_volumes
    from iusynth.experiments.registration_tre.settings import MrSynthesisSettings

    torch.set_num_threads(args.threads)
    settings = from_json(MrSynthesisSettings, args.settings)
    subject = args.slices.name
    with atomic_directory(args.output) as folder:
        synthesise_volumes(
            args.model,
            args.slices,
            {sequence: folder / f"{subject}_{sequence}.nii.gz" for sequence in settings.sequences},
            settings.temperature,
            device=settings.device,
        )
    log.info("%s: synthesised %s from iUS", subject, list(settings.sequences))


def _registration_experiment(args: argparse.Namespace) -> None:
    """Direct vs synthesis-assisted iUS -> MR registration of one subject, from displacements."""
    import pandas as pd

    from iusynth.core.subject import SubjectRecord
    from iusynth.evaluation.evaluate import write_csv
    from iusynth.experiments.registration_tre.experiment import CASE_COLUMNS, run_subject
    from iusynth.experiments.registration_tre.settings import ExperimentSettings

    settings = from_json(ExperimentSettings, args.settings, threads=args.threads)
    record = SubjectRecord.read(args.subject_dir, args.subject, args.raw_sha256)
    if not record.has("landmarks"):
        log.warning("%s has no landmarks: no TRE to measure, no rows", args.subject)
        write_csv(pd.DataFrame(columns=list(CASE_COLUMNS)), args.output)
        return
    synthetic = {
        sequence: args.synthetic / f"{args.subject}_{sequence}.nii.gz"
        for sequence in settings.sequences
    }
    frame = run_subject(record, args.alignment, synthetic, settings)
    write_csv(frame, args.output)
    log.info("%s: %d registrations", args.subject, len(frame))


def _registration_tables(args: argparse.Namespace) -> None:
    """Table 3 (TRE per bin, sequence and method) beside the paper's, and its figure."""
    from iusynth.evaluation.evaluate import read_metric_files, write_csv
    from iusynth.experiments.registration_tre.experiment import CASE_COLUMNS, plot_tre
    from iusynth.reporting.tables import (
        read_paper_results,
        registration_latex,
        registration_markdown,
        registration_table,
        write_table,
    )

    per_case = read_metric_files(args.cases, CASE_COLUMNS)
    write_csv(per_case, args.per_case)
    table = registration_table(per_case, read_paper_results(args.paper))
    write_table(table, args.table, registration_markdown(table), registration_latex(table))
    plot_tre(per_case, args.figure)
    log.info("Table 3 from %d registrations of %d files", len(per_case), len(args.cases))


STAGES = (
    Stage(
        "synthesise-mr",
        "synthesise the MR sequences of the registration experiment from a subject's iUS",
        _synthesise_mr,
        [
            ("--model", {"required": True, "type": Path, "help": "MMHVAE model.pt"}),
            ("--slices", {"required": True, "type": Path, "help": "the subject's slice stack"}),
            "settings",
            "threads",
            "folder",
        ],
    ),
    Stage(
        "registration-experiment",
        "direct vs synthesis-assisted iUS-MR registration of one subject (TRE per displacement)",
        _registration_experiment,
        [
            "subject-dir",
            "subject",
            "alignment",
            ("--synthetic", {"required": True, "type": Path, "help": "synthesise-mr folder"}),
            "settings",
            "threads",
            ("--output", {"required": True, "type": Path, "help": "CSV to write"}),
        ],
    ),
    Stage(
        "registration-tables",
        "aggregate the registration experiment: Table 3 and the TRE figure",
        _registration_tables,
        [
            ("--paper", {"required": True, "type": Path, "help": "paper_results.csv"}),
            ("--cases", {"required": True, "nargs": "+", "type": Path, "help": "per-subject CSVs"}),
            ("--per-case", {"required": True, "type": Path, "help": "all rows, CSV to write"}),
            ("--table", {"required": True, "nargs": 3, "type": Path, "help": "CSV, MD, LaTeX"}),
            ("--figure", {"required": True, "type": Path, "help": "PNG to write"}),
        ],
    ),
)
