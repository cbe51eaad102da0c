"""The paper's tables from the metric files the workflow wrote, beside the paper's numbers.

The paper's own numbers live in one shipped file, ``iusynth/reporting/data/paper_results.csv``
(experiment, set, method, direction, metric, value, source); nothing here is typed by hand.
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

PAPER_COLUMNS = ["experiment", "set", "method", "direction", "metric", "value", "source"]
LPIPS_ABSENT = "LPIPS left out (evaluation.lpips_weights: null)"
# Shown in %, as in the paper.
PERCENT = {"ssim", "lpips"}


def read_paper_results(path: Path) -> pd.DataFrame:
    """The shipped table of the paper's numbers."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = set(PAPER_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing")
    return frame


def _paper_value(paper: pd.DataFrame, **criteria: str) -> float:
    """The published value whose columns equal ``criteria`` (NaN where the paper has none)."""
    chosen = np.logical_and.reduce([paper[column] == value for column, value in criteria.items()])
    rows = paper[chosen]
    return float(rows["value"].iloc[0]) if len(rows) else float("nan")


def synthesis_table(
    summary: pd.DataFrame,
    methods: dict[str, str],
    directions: list[Direction],
    temperature: float,
    paper: pd.DataFrame,
    lpips_available: bool,
) -> pd.DataFrame:
    """One row per set, method (the config's, in its order) and direction.

    Stochastic methods are read at ``temperature``; deterministic ones (no temperature)
    as they are. Metrics a method could not be evaluated on are NaN. SSIM and LPIPS are
    in %.
    """
    rows = []
    sets = sorted(summary["set"].unique()) if len(summary) else []
    for set_name in sets:
        for method, label in methods.items():
            for direction in directions:
                selected = summary[
                    (summary["set"] == set_name)
                    & (summary["method"] == method)
                    & (summary["inputs"] == subset_name(direction.inputs))
                    & (summary["target"] == direction.target)
                    & (
                        summary["temperature"].isna()
                        | np.isclose(summary["temperature"].astype(float), temperature)
                    )
                ]
                row = {
                    "set": set_name,
                    "method": method,
                    "label": label,
                    "direction": direction.name,
                    "direction_label": direction.label,
                    "subjects": int(selected["subjects"].iloc[0]) if len(selected) else 0,
                }
                for metric in ("psnr", "ssim", "lpips", "l1"):
                    scale = 100.0 if metric in PERCENT else 1.0
                    for suffix in ("", "_low", "_high"):
                        value = (
                            float(selected[f"{metric}{suffix}"].iloc[0]) * scale
                            if len(selected)
                            else float("nan")
                        )
                        row[f"{metric}{suffix}"] = value
                row["lpips_note"] = "" if lpips_available else LPIPS_ABSENT
                for metric in ("psnr", "ssim", "lpips"):
                    row[f"paper_{metric}"] = _paper_value(
                        paper,
                        experiment="synthesis",
                        method=method,
                        direction=direction.name,
                        metric=metric,
                    )
                    row[f"gap_{metric}"] = row[metric] - row[f"paper_{metric}"]
                rows.append(row)
    return pd.DataFrame(rows)


def _cell(row: pd.Series, metric: str, digits: int) -> str:
    value = row[metric]
    if metric == "lpips" and row["lpips_note"]:
        return row["lpips_note"]
    if not math.isfinite(value):
        return "–"
    low, high = row[f"{metric}_low"], row[f"{metric}_high"]
    interval = f" [{low:.{digits}f}, {high:.{digits}f}]" if math.isfinite(low) else ""
    return f"{value:.{digits}f}{interval}"


def _paper_cell(row: pd.Series, prefix: str = "paper") -> str:
    values = [row[f"{prefix}_{m}"] for m in ("psnr", "ssim", "lpips")]
    if not any(math.isfinite(v) for v in values):
        return ""
    sign = "+" if prefix == "gap" else ""
    return " / ".join(f"{v:{sign}.3g}" if math.isfinite(v) else "–" for v in values)


def scored_subjects_notes(per_subject: pd.DataFrame, labels: dict[str, str]) -> list[str]:
    """One line per method scored on fewer subjects of a set than the others, naming them.

    The authors' weights, for instance, score only the test list of their fold.
    """
    notes = []
    for set_name, group in per_subject.groupby("set", sort=True):
        everyone = set(group["subject"])
        for method, label in labels.items():
            scored = set(group.loc[group["method"] == method, "subject"])
            if scored and scored < everyone:
                notes.append(
                    f"{label} ({set_name}): scored on {len(scored)} of the {len(everyone)} "
                    f"subjects: {', '.join(sorted(scored))}."
                )
    return notes


def render_markdown(
    table: pd.DataFrame, title: str, temperature: float, notes: list[str] | None = None
) -> str:
    """The table as Markdown: one section per set and direction, methods as rows.

    ``notes``: sentences printed under the legend (which folds scored it, which subjects).
    """
    lines = [
        f"# {title}",
        "",
        f"Mean over subjects [bootstrap 95 % CI]; stochastic methods at temperature "
        f"{temperature:g}. SSIM and LPIPS in %, L1 in 0..255 units. Paper: PSNR / SSIM / "
        "LPIPS as published (different data); Gap: ours minus the paper's; – : not "
        "evaluable here.",
        "",
        *[line for note in notes or [] for line in (markdown_escape(note), "")],
    ]
    for (set_name, _direction), group in table.groupby(["set", "direction"], sort=False):
        label = group["direction_label"].iloc[0]
        lines += [f"## {markdown_escape(set_name)}: {markdown_escape(label)}", ""]
        if (group["subjects"] == 0).all():
            lines += ["No subject of this set has these modalities.", ""]
            continue
        lines += [
            "| Method | PSNR (dB) | SSIM (%) | LPIPS (%) | L1 | Subjects | Paper | Gap |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, row in group.iterrows():
            lines.append(
                f"| {markdown_escape(row['label'])} | {_cell(row, 'psnr', 2)} | "
                f"{_cell(row, 'ssim', 1)} | "
                f"{_cell(row, 'lpips', 1)} | {_cell(row, 'l1', 2)} | {row['subjects']} | "
                f"{_paper_cell(row)} | {_paper_cell(row, 'gap')} |"
            )
        lines.append("")
    return "\n".join(lines)


def synthesis_latex(table: pd.DataFrame, title: str, temperature: float) -> str:
    """Table 1 or 2 as a LaTeX table: one block per set and direction, methods as rows."""
    rows = []
    for (set_name, _direction), group in table.groupby(["set", "direction"], sort=False):
        rows.append([f"{set_name}: {group['direction_label'].iloc[0]}"])
        for _, row in group.iterrows():
            rows.append(
                [
                    row["label"],
                    _cell(row, "psnr", 2),
                    _cell(row, "ssim", 1),
                    _cell(row, "lpips", 1),
                    str(row["subjects"]),
                    _paper_cell(row),
                    _paper_cell(row, "gap"),
                ]
            )
    header = ["Method", "PSNR (dB)", "SSIM (\\%)", "LPIPS (\\%)", "n", "Paper", "Gap"]
    caption = (
        f"{title}. Mean over subjects [bootstrap 95\\% CI], stochastic methods at "
        f"temperature {temperature:g}; paper: PSNR / SSIM / LPIPS as published; gap: ours "
        "minus the paper's."
    )
    return latex_table(header, rows, caption)


def latex_escape(text: str) -> str:
    """Text made safe for LaTeX (specials escaped; the arrow becomes a math arrow)."""
    replacements = {
        "\\": "\\textbackslash{}",
        "&": "\\&",
        "%": "\\%",
        "$": "\\$",
        "#": "\\#",
        "_": "\\_",
        "{": "\\{",
        "}": "\\}",
        "~": "\\textasciitilde{}",
        "^": "\\textasciicircum{}",
        "→": "$\\rightarrow$",
        "–": "--",
    }
    return "".join(replacements.get(character, character) for character in text)


def latex_table(header: list[str], rows: list[list[str]], caption: str) -> str:
    """A booktabs ``table``: header cells are LaTeX already, body cells are escaped.

    A row with one cell is a section heading spanning every column.
    """
    columns = len(header)
    lines = [
        "% written by the iusynth workflow; needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{caption}}}",
        f"\\begin{{tabular}}{{l{'c' * (columns - 1)}}}",
        "\\toprule",
        " & ".join(header) + " \\\\",
        "\\midrule",
    ]
    for row in rows:
        if len(row) == 1:
            lines.append(
                f"\\multicolumn{{{columns}}}{{l}}{{\\textit{{{latex_escape(row[0])}}}}} \\\\"
            )
        else:
            lines.append(" & ".join(latex_escape(cell) for cell in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def write_table(
    table: pd.DataFrame, paths: list[Path] | tuple[Path, ...], markdown: str, latex: str
) -> None:
    """The table as CSV, Markdown and LaTeX (``paths`` in that order), atomically."""
    csv_path, markdown_path, latex_path = paths
    write_csv(table, csv_path)
    for path, text in ((markdown_path, markdown), (latex_path, latex)):
        with atomic_path(path) as tmp:
            tmp.write_text(text)


METHOD_LABELS = {"direct": "direct", "synthesis": "synthesis-assisted"}


def tre_table(per_case: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Aggregate per-case rows per sequence, method and bin (a tidy pandas DataFrame).

    Columns: sequence, method, bin, bin_low_mm, bin_high_mm, n (registrations), subjects,
    initial_tre_mean_mm, final_tre_mean_mm, final_tre_median_mm, final_tre_std_mm,
    seconds_mean. ``paper``, when given, is a frame with sequence, method, bin and
    ``paper_tre_mm`` columns, merged in (missing entries NaN).
    """
    grouped = per_case.groupby(["sequence", "method", "bin", "bin_low_mm", "bin_high_mm"])
    table = grouped.agg(
        n=("final_tre_mm", "size"),
        subjects=("subject", "nunique"),
        initial_tre_mean_mm=("initial_tre_mm", "mean"),
        final_tre_mean_mm=("final_tre_mm", "mean"),
        final_tre_median_mm=("final_tre_mm", "median"),
        final_tre_std_mm=("final_tre_mm", "std"),
        seconds_mean=("seconds", "mean"),
    ).reset_index()
    if paper is not None:
        table = table.merge(
            paper[["sequence", "method", "bin", "paper_tre_mm"]],
            on=["sequence", "method", "bin"],
            how="left",
        )
    return table.sort_values(["sequence", "bin_low_mm", "method"]).reset_index(drop=True)


def registration_table(per_case: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Table 3: TRE per sequence, displacement bin and method, beside the paper's.

    From the per-registration rows of
    :func:`iusynth.experiments.registration_tre.experiment.run_subject`;
    ``paper_tre_mm`` is the published TRE for that sequence, method and bin where there
    is one (the paper gives the 8-12 mm bin), ``gap_tre_mm`` our mean minus it.
    """
    rows = paper[paper["experiment"] == "registration"]
    published = pd.DataFrame(
        {
            "sequence": rows["direction"],
            "method": rows["method"],
            "bin": rows["bin_mm"] if "bin_mm" in rows else "",
            "paper_tre_mm": rows["value"].astype(float),
        }
    )
    if per_case.empty:
        return pd.DataFrame(
            columns=["sequence", "method", "bin", "n", "final_tre_mean_mm", "paper_tre_mm"]
        )
    table = tre_table(per_case, published)
    table["gap_tre_mm"] = table["final_tre_mean_mm"] - table["paper_tre_mm"]
    return table


def _mm(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "–"


def _registration_rows(table: pd.DataFrame) -> list[list[str]]:
    """Per sequence, a heading then one row per bin: initial TRE, each method's, the paper's."""
    rows: list[list[str]] = []
    for sequence, group in table.groupby("sequence", sort=False):
        rows.append([f"{sequence}"])
        for bin_name, entries in group.groupby("bin", sort=False):
            by_method = {row["method"]: row for _, row in entries.iterrows()}
            cells = [f"{bin_name} mm", str(int(entries["n"].max()))]
            cells.append(_mm(float(entries["initial_tre_mean_mm"].mean())))
            for method in METHOD_LABELS:
                row = by_method.get(method)
                cells.append(
                    "–"
                    if row is None
                    else f"{_mm(row['final_tre_mean_mm'])} ({_mm(row['final_tre_median_mm'])})"
                )
            papers = [
                by_method[m]["paper_tre_mm"] if m in by_method else float("nan")
                for m in METHOD_LABELS
            ]
            cells.append(
                " → ".join(f"{v:g}" for v in papers) if all(map(math.isfinite, papers)) else ""
            )
            rows.append(cells)
    return rows


REGISTRATION_NOTE = (
    "Target registration error (mm) on landmarks after rigid iUS -> MR registration "
    "(NiftyReg reg_aladin) from simulated displacements; mean (median) over registrations "
    "per bin of initial displacement. Paper: direct → synthesis-assisted as published "
    "(different data)."
)


def sectioned_markdown(
    title: str, note: str, header: list[str], rows: list[list[str]], empty: str
) -> str:
    """A Markdown table per section: a one-cell row starts a section (its heading)."""
    lines = [f"# {title}", "", note, ""]
    if not rows:
        return "\n".join([*lines, empty, ""])
    for row in rows:
        if len(row) == 1:
            rule = "|".join("---" for _ in header)
            heading = markdown_escape(row[0])
            lines += ["", f"## {heading}", "", f"| {' | '.join(header)} |", f"|{rule}|"]
        else:
            lines.append("| " + " | ".join(map(markdown_escape, row)) + " |")
    return "\n".join([*lines, ""])


REGISTRATION_HEADER = ["Displacement", "n", "Initial TRE", "Direct", "Synthesis-assisted", "Paper"]


def registration_markdown(table: pd.DataFrame) -> str:
    """Table 3 as Markdown: a section per sequence, a row per displacement bin."""
    return sectioned_markdown(
        "Table 3: direct vs synthesis-assisted registration",
        REGISTRATION_NOTE,
        REGISTRATION_HEADER,
        _registration_rows(table) if not table.empty else [],
        "No subject with landmarks was registered.",
    )


def registration_latex(table: pd.DataFrame) -> str:
    """Table 3 as a LaTeX table."""
    return latex_table(
        REGISTRATION_HEADER, _registration_rows(table), latex_escape(REGISTRATION_NOTE)
    )


def segmentation_table(
    per_case: pd.DataFrame, methods: dict[str, str], paper: pd.DataFrame
) -> pd.DataFrame:
    """Table 4: per test set and method (the config's, in its order), Dice and ASSD.

    Dice in % (mean and std over subjects); ASSD in mm over the subjects where it is
    defined (``assd_undefined``: subjects with one mask empty); ``paper_dice`` is the
    published Dice for that set and method where there is one, ``gap_dice`` ours minus it.
    """
    rows = []
    sets = sorted(per_case["set"].unique()) if len(per_case) else []
    for set_name in sets:
        for method, label in methods.items():
            chosen = per_case[(per_case["set"] == set_name) & (per_case["method"] == method)]
            dice = chosen["dice"].astype(float) * 100.0
            assd = chosen["assd_mm"].astype(float)
            paper_dice = _paper_value(
                paper, experiment="segmentation", set=set_name, method=method, metric="dice"
            )
            mean = float(dice.mean()) if len(dice) else float("nan")
            rows.append(
                {
                    "set": set_name,
                    "method": method,
                    "label": label,
                    "subjects": len(chosen),
                    "dice": mean,
                    "dice_std": float(dice.std(ddof=1)) if len(dice) > 1 else float("nan"),
                    "assd_mm": float(assd.mean()) if assd.notna().any() else float("nan"),
                    "assd_std_mm": float(assd.std(ddof=1)) if assd.notna().sum() > 1 else np.nan,
                    "assd_undefined": int(assd.isna().sum()),
                    "paper_dice": paper_dice,
                    "gap_dice": mean - paper_dice,
                }
            )
    return pd.DataFrame(rows)


def _mean_std(mean: float, std: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def _segmentation_rows(table: pd.DataFrame) -> list[list[str]]:
    """Per test set, a heading then one row per method."""
    rows: list[list[str]] = []
    for set_name, group in table.groupby("set", sort=False):
        rows.append([f"test set: {set_name}"])
        for _, row in group.iterrows():
            assd = _mean_std(row["assd_mm"], row["assd_std_mm"], 2)
            if row["assd_undefined"]:
                assd += f" ({row['assd_undefined']} undefined)"
            rows.append(
                [
                    row["label"],
                    str(row["subjects"]),
                    _mean_std(row["dice"], row["dice_std"], 1),
                    assd,
                    f"{row['paper_dice']:g}" if math.isfinite(row["paper_dice"]) else "",
                    f"{row['gap_dice']:+.1f}" if math.isfinite(row["gap_dice"]) else "",
                ]
            )
    return rows


SEGMENTATION_NOTE = (
    "Tumour segmentation in real iUS by 2D nnU-Net ensembles trained on each method's "
    "planes (synthetic iUS of virtual sweeps, or real iUS); per subject in 3D, mean ± std "
    "over subjects. Dice in %, ASSD in mm (undefined where one mask is empty). Paper: Dice "
    "as published (different data); gap: ours minus the paper's."
)


def segmentation_markdown(table: pd.DataFrame) -> str:
    """Table 4 as Markdown: a section per test set, a row per method."""
    return sectioned_markdown(
        "Table 4: tumour segmentation in real iUS",
        SEGMENTATION_NOTE,
        ["Trained on", "n", "Dice (%)", "ASSD (mm)", "Paper Dice", "Gap"],
        _segmentation_rows(table) if not table.empty else [],
        "No test subject was segmented.",
    )


def segmentation_latex(table: pd.DataFrame) -> str:
    """Table 4 as a LaTeX table."""
    header = ["Trained on", "n", "Dice (\\%)", "ASSD (mm)", "Paper Dice", "Gap"]
    return latex_table(header, _segmentation_rows(table), latex_escape(SEGMENTATION_NOTE))
