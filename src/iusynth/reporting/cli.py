"""Command-line stages of reporting: timing, provenance, subject pages, index, methods."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from iusynth.core.commands import Stage
from iusynth.core.settings import from_json

log = logging.getLogger("iusynth")


def _benchmark_summary(args: argparse.Namespace) -> None:
    """Summarise Snakemake's benchmark files per rule."""
    from iusynth.core.fileio import atomic_path
    from iusynth.reporting.benchmarking import summarise_benchmarks

    table = summarise_benchmarks(args.folder, exclude=tuple(args.exclude))
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    log.info("summarised %d rules", len(table))


def _provenance(args: argparse.Namespace) -> None:
    """Write results/provenance.json: code, config, versions, data, models, machine, times."""
    from iusynth.reporting.provenance import CohortData, build_provenance, write_provenance

    cohorts = [
        CohortData.from_json(name, entry) for name, entry in json.loads(args.cohorts).items()
    ]
    record = build_provenance(
        repository=args.repository,
        config=json.loads(args.config),
        config_files=args.config_files,
        cohorts=cohorts,
        models=args.models,
        benchmark_summary=args.benchmarks,
        environment_files=args.env_files,
        snakemake_version=args.snakemake_version,
    )
    now = record["code"]["describe"]
    if now is not None and args.describe != now:
        log.warning(
            "the checkout changed while the workflow ran: %s when it started, %s now",
            args.describe,
            now,
        )
    record["code"]["describe_at_start"] = args.describe
    write_provenance(args.output, record)
    log.info("wrote %s (code %s)", args.output, record["code"]["describe"])


def _report_subject(args: argparse.Namespace) -> None:
    """Write one subject's self-contained HTML page and its summary for the index."""
    from iusynth.reporting.settings import PageSettings
    from iusynth.reporting.subject_page.files import SubjectFiles
    from iusynth.reporting.subject_page.page import write_subject_page

    summary = write_subject_page(
        SubjectFiles.from_json(args.files),
        from_json(PageSettings, args.settings),
        args.subject,
        args.output,
        args.summary,
    )
    log.info(
        "wrote %s (%.2f MB; %d logged warnings, %d findings of its checks)",
        args.output,
        summary["page_mb"],
        summary["warnings"],
        summary["checks"],
    )


def _report_index(args: argparse.Namespace) -> None:
    """Write the index page: a row per subject, the tables beside the paper's."""
    from iusynth.experiments.segmentation.settings import SegmentationTableSettings
    from iusynth.reporting.index_page import write_index

    settings = from_json(SegmentationTableSettings, args.settings)
    rows = write_index(
        args.summaries, args.tables, args.provenance, args.methods, settings.methods, args.output
    )
    log.info("wrote %s (%d subjects)", args.output, rows)


def _report_methods(args: argparse.Namespace) -> None:
    """Write the methods text (Markdown, LaTeX) and its BibTeX from the settings and versions."""
    from iusynth.reporting.methods import write_methods
    from iusynth.reporting.settings import MethodsSettings

    settings = from_json(MethodsSettings, args.settings, threads=1)  # no job is run
    write_methods(settings, json.loads(args.cohorts), args.provenance, args.output)
    log.info("wrote %s", ", ".join(str(path) for path in args.output))


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
    Stage(
        "provenance",
        "write the run's provenance: commit, config digests, versions, data, models, machine",
        _provenance,
        [
            ("--repository", {"required": True, "type": Path, "help": "the workflow's checkout"}),
            ("--config", {"required": True, "help": "the effective config as JSON"}),
            (
                "--config-files",
                {"nargs": "*", "type": Path, "default": [], "help": "config files of the run"},
            ),
            ("--cohorts", {"required": True, "help": "source, root, subjects per cohort (JSON)"}),
            ("--models", {"nargs": "*", "type": Path, "default": [], "help": "model files"}),
            ("--benchmarks", {"required": True, "type": Path, "help": "benchmarks summary.tsv"}),
            ("--env-files", {"nargs": "*", "type": Path, "default": [], "help": "conda envs"}),
            ("--snakemake-version", {"required": True, "help": "version running the workflow"}),
            ("--describe", {"required": True, "help": "git describe when the workflow started"}),
            "json",
        ],
    ),
    Stage(
        "report-subject",
        "write one subject's self-contained HTML report page",
        _report_subject,
        [
            "subject",
            ("--files", {"required": True, "help": "every file the page reads, by role (JSON)"}),
            "settings",
            ("--output", {"required": True, "type": Path, "help": "HTML page to write"}),
            ("--summary", {"required": True, "type": Path, "help": "summary JSON to write"}),
        ],
    ),
    Stage(
        "report-index",
        "write the reports' index page (a row per subject, the tables beside the paper's)",
        _report_index,
        [
            ("--summaries", {"required": True, "nargs": "+", "type": Path, "help": "page JSONs"}),
            ("--tables", {"required": True, "nargs": "+", "type": Path, "help": "tables (.md)"}),
            ("--provenance", {"required": True, "type": Path, "help": "provenance.json"}),
            ("--methods", {"required": True, "nargs": 3, "type": Path, "help": "md, tex, bib"}),
            "settings",
            ("--output", {"required": True, "type": Path, "help": "HTML page to write"}),
        ],
    ),
    Stage(
        "report-methods",
        "write the methods text (Markdown, LaTeX) and citations.bib from the settings",
        _report_methods,
        [
            "settings",
            ("--cohorts", {"required": True, "help": "source, root, subjects per cohort (JSON)"}),
            ("--provenance", {"required": True, "type": Path, "help": "provenance.json"}),
            ("--output", {"required": True, "nargs": 3, "type": Path, "help": "md, tex, bib"}),
        ],
    ),
)
