"""Fill the README's results preview from a finished demo run.

Reads Table 1 (``results/tables/table1_synthesis.csv``, written by rule
``synthesis_tables``) and one figure of ``results/figures/``, copies the figure into
``docs/preview/`` and rewrites the block between ``<!-- preview:start -->`` and
``<!-- preview:end -->`` of ``README.md``: a small table (one evaluation set, one
direction, every method with PSNR, SSIM and LPIPS) and a link to the figure. Nothing is
typed in by hand; run it from the repository root after ``snakemake --cores all``::

    python benchmarks/readme_preview.py [--set resect] [--direction T2-to-US]

The README must stay under 6,000 bytes (``tests/test_docs.py``); the script refuses to
write a longer one.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

START = "<!-- preview:start -->"
END = "<!-- preview:end -->"
README_LIMIT = 6000  # bytes
FIGURE = "synthesis_examples.png"  # preferred; else the first figure by name
METRICS = (("psnr", "PSNR (dB)", 2), ("ssim", "SSIM (%)", 1), ("lpips", "LPIPS (%)", 1))


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of Table 1's CSV, with an error naming the file when it is missing."""
    if not path.is_file():
        raise SystemExit(f"{path} not found: run the demo first (snakemake --cores all)")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"set", "label", "direction", "direction_label", "subjects", "lpips_note"}
    needed |= {name for name, _, _ in METRICS}
    if not rows:
        raise SystemExit(f"{path}: no rows")
    missing = needed - set(rows[0])
    if missing:
        raise SystemExit(f"{path}: columns {sorted(missing)} missing")
    return rows


def choose(rows: list[dict[str, str]], set_name: str | None, direction: str | None) -> tuple:
    """The set and direction to show: the ones given, else the first with evaluated subjects."""
    for row in rows:
        if set_name not in (None, row["set"]) or direction not in (None, row["direction"]):
            continue
        if int(row["subjects"] or 0) > 0:
            return row["set"], row["direction"]
    raise SystemExit(f"Table 1 has no evaluated row for set {set_name}, direction {direction}")


def cell(row: dict[str, str], metric: str, digits: int) -> str:
    """One metric of a row, or a dash where it is absent (e.g. LPIPS left out)."""
    text = row[metric]
    if not text or (metric == "lpips" and row["lpips_note"]):
        return "–"
    value = float(text)
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def preview_table(rows: list[dict[str, str]], set_name: str, direction: str) -> list[str]:
    """The Markdown lines of the table: every method of one set and direction."""
    chosen = [r for r in rows if r["set"] == set_name and r["direction"] == direction]
    header = ["Method", *(title for _, title, _ in METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in chosen:
        cells = [row["label"], *(cell(row, name, digits) for name, _, digits in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def choose_figure(figures: Path, name: str | None) -> Path:
    """The figure to show: ``name``, else the synthesis examples, else the first PNG."""
    candidates = sorted(figures.glob("*.png"))
    wanted = [p for p in candidates if p.name == (name or FIGURE)]
    if wanted or (candidates and name is None):
        return (wanted or candidates)[0]
    raise SystemExit(f"no figure {name or '*.png'} in {figures}")


def render_preview(
    rows: list[dict[str, str]], set_name: str, direction: str, figure_link: str
) -> str:
    """The preview block's content: a caption, the table and the figure link."""
    chosen = [r for r in rows if r["set"] == set_name and r["direction"] == direction]
    subjects = max(int(r["subjects"] or 0) for r in chosen)
    caption = (
        f"Table 1 of a demo run, set `{set_name}`, {chosen[0]['direction_label']} "
        f"({subjects} subjects; SSIM and LPIPS in %). Made by "
        "`python benchmarks/readme_preview.py` from `results/tables/table1_synthesis.csv`."
    )
    figure = f"![{Path(figure_link).stem}]({figure_link})"
    return "\n".join([caption, "", *preview_table(rows, set_name, direction), "", figure])


def replace_block(text: str, content: str) -> str:
    """``text`` with the content between the preview markers replaced by ``content``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"README.md must hold {START} then {END}, once each")
    before, rest = text.split(START)
    _, after = rest.split(END)
    return f"{before}{START}\n{content}\n{END}{after}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: where the run's results are, what to show."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="the run's results")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="README to update")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where the figure goes")
    parser.add_argument("--set", dest="set_name", default=None, help="evaluation set (cohort)")
    parser.add_argument("--direction", default=None, help="e.g. T2-to-US (default: the first)")
    parser.add_argument("--figure", default=None, help=f"figure file name (default {FIGURE})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Rewrite the README's preview block from the run under ``--results``."""
    args = parse_args(argv)
    rows = read_rows(args.results / "tables" / "table1_synthesis.csv")
    set_name, direction = choose(rows, args.set_name, args.direction)
    figure = choose_figure(args.results / "figures", args.figure)
    target = args.docs / "preview" / figure.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(figure, target)
    link = Path(os.path.relpath(target, args.readme.parent)).as_posix()
    text = replace_block(args.readme.read_text(), render_preview(rows, set_name, direction, link))
    if len(text.encode()) > README_LIMIT:
        raise SystemExit(f"the preview would make {args.readme} over {README_LIMIT} bytes")
    args.readme.write_text(text)
    print(f"{args.readme}: preview of {set_name}, {direction}; figure {target}")


if __name__ == "__main__":
    main()
