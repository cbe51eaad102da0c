"""Section 3 of a subject page (evaluation subjects): what each method synthesised.

The subject's PSNR / SSIM / LPIPS / L1 for every method and direction at the tables'
temperature; per direction the acquired slices beside each Table 1 method's synthesis and
the temperature sweep, drawn by the workflow's own figure code
(:mod:`iusynth.reporting.figures`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from iusynth.core.directions import Direction
from iusynth.reporting.render import InlineImage, inline_plot
from iusynth.reporting.run_warnings import Check
from iusynth.reporting.settings import PageSettings
from iusynth.reporting.subject_page.files import SubjectFiles, read_json


def metric_row(row: Any, method: str, direction: Direction, settings: PageSettings) -> dict:
    """One method's subject means for one direction and temperature, for the page's table."""
    return {
        "method": method,
        "label": settings.label(method),
        "direction": direction.label,
        "direction_name": direction.name,
        "temperature": None if math.isnan(row["temperature"]) else row["temperature"],
        "psnr": row["psnr"],
        "ssim": row["ssim"],
        "lpips": row["lpips"],
        "l1": row["l1"],
    }


def subject_synthesis_metrics(files: SubjectFiles, settings: PageSettings) -> list[dict]:
    """The subject's PSNR / SSIM / LPIPS / L1 per method, direction and temperature."""
    from iusynth.evaluation.evaluate import read_slice_metrics
    from iusynth.evaluation.metrics import subject_means

    frame = subject_means(read_slice_metrics(list(files.synthesis_metrics.values())))
    rows = []
    for direction in settings.directions:
        chosen = frame[
            (frame["inputs"] == "+".join(direction.inputs)) & (frame["target"] == direction.target)
        ]
        for method in files.synthesis_metrics:
            of_method = chosen[chosen["method"] == method]
            at_table = of_method[
                of_method["temperature"].isna()
                | np.isclose(of_method["temperature"].astype(float), settings.table_temperature)
            ]
            rows += [metric_row(row, method, direction, settings) for _, row in at_table.iterrows()]
    return rows


def synthesises(folder: Path, direction: Direction) -> bool:
    """Whether a method's synthesis folder of a subject holds a direction."""
    from iusynth.synthesis.synthesizers import INDEX_NAME

    index = read_json(Path(folder) / INDEX_NAME, "synthesis index", "synthesise")
    return any(
        tuple(record["inputs"]) == direction.inputs and record["target"] == direction.target
        for record in index["records"]
    )


def examples_figure(
    files: SubjectFiles, settings: PageSettings, subject: str, direction: Direction
) -> InlineImage:
    """The inputs, the acquired target and each Table 1 method's synthesis, on a few slices."""
    from iusynth.reporting.figures import plot_examples

    method_dirs = {m: files.synthesis[m] for m in settings.figure_methods}
    slices = settings.reports.figure_slices
    return inline_plot(
        lambda path: plot_examples(
            method_dirs,
            files.synthesis_slices,
            direction,
            settings.table_temperature,
            path,
            count=slices,
        ),
        f"{direction.label}: the input(s), the acquired target and each method's "
        f"synthesis (temperature {settings.table_temperature:g} for the VAEs) on "
        f"{slices} slices.",
        f"{subject}: {direction.label} by each method",
    )


def sweep_figure(
    files: SubjectFiles, settings: PageSettings, subject: str, direction: Direction
) -> InlineImage:
    """The sweep method's mean and standard deviation over its samples, per temperature."""
    from iusynth.reporting.figures import plot_temperature_sweep

    method = settings.sweep_method
    return inline_plot(
        lambda path: plot_temperature_sweep(
            files.synthesis[method], files.synthesis_slices, direction, path
        ),
        f"{direction.label} by {settings.label(method)} at each "
        "temperature: mean (top) and standard deviation (bottom) over the samples.",
        f"{subject}: temperature sweep of {method}",
    )


def direction_entry(
    files: SubjectFiles,
    settings: PageSettings,
    subject: str,
    direction: Direction,
    acquired: frozenset[str],
) -> dict[str, Any]:
    """One direction's figures, or a note saying why it has none (or no sweep)."""
    entry: dict[str, Any] = {"label": direction.label, "figures": [], "note": None}
    lacking = [m for m in (*direction.inputs, direction.target) if m not in acquired]
    if lacking:
        entry["note"] = f"not synthesised for this subject: it has no {', '.join(lacking)}"
        return entry
    synthesised = [m for m in settings.figure_methods if synthesises(files.synthesis[m], direction)]
    if not synthesised:
        entry["note"] = "no method synthesised this direction for this subject"
        return entry
    entry["figures"].append(examples_figure(files, settings, subject, direction))
    if settings.sweep_method not in synthesised:
        entry["note"] = (
            f"{settings.label(settings.sweep_method)} does not synthesise this direction: "
            "no temperature sweep"
        )
        return entry
    entry["figures"].append(sweep_figure(files, settings, subject, direction))
    return entry


def synthesis_section(
    files: SubjectFiles, settings: PageSettings, subject: str, checks: list[Check]
) -> dict[str, Any]:
    """Acquired vs synthesised slices per direction, the temperature sweep and the metrics."""
    from iusynth.preprocessing.slices import load_slices

    stack = load_slices(files.synthesis_slices)
    directions = [
        direction_entry(files, settings, subject, direction, stack.acquired)
        for direction in settings.directions
    ]
    metrics = subject_synthesis_metrics(files, settings)
    if not metrics:
        checks.append(Check("synthesis", "no synthesis metric for the configured directions"))
    return {
        "directions": directions,
        "metrics": metrics,
        "table_temperature": settings.table_temperature,
    }
