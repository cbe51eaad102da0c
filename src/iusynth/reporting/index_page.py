"""The reports' index: a sortable row per subject, the run's tables and its provenance.

``results/reports/index.html`` lists every subject page with its key figures (registration
landmark error, synthesis scores, Dice, TRE, warnings), shows each results table of the
workflow (``results/tables/*.md``: ours beside the paper's numbers) and links the methods
text and the provenance file. Every link is relative, so the folder can be moved or
zipped with ``results/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iusynth.reporting.markdown import markdown_unescape, table_cells
from iusynth.reporting.provenance import read_stamp
from iusynth.reporting.render import relative_link, render_template, write_text


@dataclass(frozen=True)
class MarkdownBlock:
    """A piece of one of the workflow's Markdown tables: a heading, a paragraph or a table."""

    kind: str  # heading, paragraph or table
    text: str = ""
    level: int = 0
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def parse_markdown_tables(text: str, source: Path) -> list[MarkdownBlock]:
    """Headings, paragraphs and pipe tables of a results table file (its Markdown subset)."""
    blocks: list[MarkdownBlock] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].rstrip()
        if not line.strip():
            index += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            text = markdown_unescape(line.lstrip("#").strip())
            blocks.append(MarkdownBlock("heading", text, level=level))
            index += 1
        elif line.lstrip().startswith("|"):
            table = []
            while index < len(lines) and lines[index].lstrip().startswith("|"):
                table.append(lines[index])
                index += 1
            if len(table) < 2 or not set(table[1].replace("|", "").strip()) <= set("-: "):
                raise ValueError(
                    f"{source}: a table without its header separator line; re-run the rule "
                    "that writes it"
                )
            header = table_cells(table[0])
            rows = tuple(table_cells(row) for row in table[2:])
            blocks.append(MarkdownBlock("table", header=header, rows=rows))
        else:
            paragraph = []
            while (
                index < len(lines)
                and lines[index].strip()
                and not lines[index].startswith(("#", "|"))
            ):
                paragraph.append(lines[index].strip())
                index += 1
            blocks.append(MarkdownBlock("paragraph", markdown_unescape(" ".join(paragraph))))
    return blocks


def read_summaries(paths: list[Path]) -> list[dict[str, Any]]:
    """The subject pages' summaries, sorted by cohort and subject; errors name the file."""
    summaries = []
    for path in paths:
        path = Path(path)
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(
                f"{path} is not a subject page summary ({type(error).__name__}: {error}); "
                "delete it and re-run the rule report_subject"
            ) from None
        missing = sorted({"subject", "cohort", "page"} - set(summary))
        if missing:
            raise ValueError(
                f"{path} lacks {missing}: not a subject page summary; delete it and re-run "
                "the rule report_subject"
            )
        summaries.append(summary)
    return sorted(summaries, key=lambda s: (s["cohort"], s["subject"]))


def table_entries(markdown_files: list[Path], output_dir: Path) -> list[dict[str, Any]]:
    """Each results table: its blocks and links to its CSV / Markdown / LaTeX files."""
    entries = []
    for path in markdown_files:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"table {path} does not exist; re-run the rule that writes it")
        blocks = parse_markdown_tables(path.read_text(), path)
        title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), path.stem)
        links = [
            {"label": sibling.suffix.lstrip("."), "href": relative_link(sibling, output_dir)}
            for sibling in (path.with_suffix(".csv"), path, path.with_suffix(".tex"))
            if sibling.is_file()
        ]
        body = [b for b in blocks if not (b.kind == "heading" and b.level == 1)]
        entries.append({"id": path.stem, "title": title, "blocks": body, "links": links})
    return entries


def subject_columns(summaries: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, Any]:
    """Which optional columns the index has: the synthesis key, Dice and TRE methods."""
    synthesis = next((s["synthesis"] for s in summaries if s["synthesis"].get("method")), None)
    dice = list(dict.fromkeys(m for s in summaries for m in s.get("dice", {})))
    tre = list(dict.fromkeys(m for s in summaries for m in s.get("tre_final_mm", {})))
    return {
        "synthesis": synthesis,
        "dice": [(method, labels.get(method, method)) for method in dice],
        "tre": tre,
    }


def write_index(
    summaries: list[Path],
    tables: list[Path],
    provenance: Path,
    methods: list[Path],
    segmentation_labels: dict[str, str],
    output: Path,
) -> int:
    """Write the index page; return the number of subjects listed.

    ``segmentation_labels`` name the Dice columns as Table 4 names its rows.
    """
    output = Path(output)
    rows = read_summaries(summaries)
    stamp = read_stamp(provenance)
    record = json.loads(Path(provenance).read_text())
    for path in methods:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist; re-run the rule report_methods")
    cohorts: dict[str, int] = {}
    for row in rows:
        row["synthesis"] = row.get("synthesis") or {"psnr": None, "ssim": None, "lpips": None}
        cohorts.setdefault(row["cohort"], 0)
        cohorts[row["cohort"]] += 1
    context = {
        "rows": rows,
        "columns": subject_columns(rows, segmentation_labels),
        "cohorts": [
            {"name": name, "subjects": count, "source": record["data"].get(name, {}).get("source")}
            for name, count in cohorts.items()
        ],
        "simulated": all(entry.get("source") == "demo" for entry in record["data"].values()),
        "tables": table_entries(tables, output.parent),
        "methods": [
            {"label": Path(path).name, "href": relative_link(path, output.parent)}
            for path in methods
        ],
        "provenance": stamp,
        "provenance_link": relative_link(provenance, output.parent),
        "machine": record["machine"],
        "wall_times": record["wall_times"],
        "config_files": [Path(f["path"]).name for f in record["config"]["files"]],
    }
    write_text(output, render_template("index.html.j2", **context))
    return len(rows)
