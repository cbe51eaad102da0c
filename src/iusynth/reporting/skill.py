"""The skill table: deterministic syntheses against the noise-free targets (demo only).

Where the subjects hold their noise-free images (the demo cohort), every method's
temperature-0 synthesis (a GAN's only one) is scored against them inside the field of
view: the correlation ``r`` and the PSNR, beside the PSNR of the best constant, the floor
any skill must beat. Real data have no noise-free images: the table says so.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from iusynth.core.directions import Direction, subset_name
from iusynth.core.fileio import atomic_path
from iusynth.evaluation.evaluate import write_csv
from iusynth.reporting.markdown import markdown_escape

SKILL_COLUMNS = ("skill_r", "skill_psnr", "constant_psnr")
NO_SKILL = (
    "No evaluated subject holds noise-free images (only the demo cohort does), so no skill "
    "is measured."
)


def skill_table(
    summary: pd.DataFrame, methods: dict[str, str], directions: list[Direction]
) -> pd.DataFrame:
    """One row per set, method and direction with a finite skill (deterministic syntheses)."""
    rows = []
    deterministic = summary["temperature"].isna() | np.isclose(
        summary["temperature"].astype(float).fillna(-1.0), 0.0
    )
    for set_name in sorted(summary["set"].unique()) if len(summary) else []:
        for method, label in methods.items():
            for direction in directions:
                selected = summary[
                    deterministic
                    & (summary["set"] == set_name)
                    & (summary["method"] == method)
                    & (summary["inputs"] == subset_name(direction.inputs))
                    & (summary["target"] == direction.target)
                ]
                if not len(selected) or not np.isfinite(selected["skill_r"].iloc[0]):
                    continue
                row = {
                    "set": set_name,
                    "method": method,
                    "label": label,
                    "direction": direction.name,
                    "direction_label": direction.label,
                    "subjects": int(selected["subjects"].iloc[0]),
                }
                for column in SKILL_COLUMNS:
                    for suffix in ("", "_low", "_high"):
                        row[f"{column}{suffix}"] = float(selected[f"{column}{suffix}"].iloc[0])
                rows.append(row)
    columns = ["set", "method", "label", "direction", "direction_label", "subjects"]
    columns += [f"{c}{s}" for c in SKILL_COLUMNS for s in ("", "_low", "_high")]
    return pd.DataFrame(rows, columns=columns)


def _cell(row: pd.Series, column: str, digits: int) -> str:
    value, low, high = row[column], row[f"{column}_low"], row[f"{column}_high"]
    if not math.isfinite(value):
        return "–"
    interval = f" [{low:.{digits}f}, {high:.{digits}f}]" if math.isfinite(low) else ""
    return f"{value:.{digits}f}{interval}"


def render_skill_markdown(table: pd.DataFrame) -> str:
    """The skill table as Markdown: one section per set and direction, methods as rows."""
    lines = [
        "# Skill: syntheses against the noise-free targets",
        "",
        "Temperature-0 syntheses (GANs: their only one) against the target's noise-free "
        "image (MR before bias and noise, iUS before speckle) inside the field of view: "
        "Pearson r and PSNR, mean over subjects [bootstrap 95 % CI]. Constant: the PSNR of "
        "the best constant image, the floor a skilled method beats.",
        "",
    ]
    if table.empty:
        return "\n".join([*lines, NO_SKILL, ""])
    for (set_name, _direction), group in table.groupby(["set", "direction"], sort=False):
        heading = f"{set_name}: {group['direction_label'].iloc[0]}"
        lines += [f"## {markdown_escape(heading)}", ""]
        lines += ["| Method | r | PSNR (dB) | Constant (dB) | Subjects |", "|---|---|---|---|---|"]
        for _, row in group.iterrows():
            lines.append(
                f"| {markdown_escape(row['label'])} | {_cell(row, 'skill_r', 3)} | "
                f"{_cell(row, 'skill_psnr', 2)} | {_cell(row, 'constant_psnr', 2)} | "
                f"{row['subjects']} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_skill_table(table: pd.DataFrame, paths: list[Path] | tuple[Path, ...]) -> None:
    """The skill table as CSV and Markdown (``paths`` in that order), atomically."""
    csv_path, markdown_path = paths
    write_csv(table, csv_path)
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(render_skill_markdown(table))
