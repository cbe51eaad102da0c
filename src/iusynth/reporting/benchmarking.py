"""Summary of the per-job timings Snakemake's ``benchmark:`` directive writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def summarise_benchmarks(folder: Path, exclude: tuple[str, ...] = ()) -> Any:
    """Per rule: jobs, total/mean/max wall seconds and peak memory (a pandas DataFrame).

    Benchmark files are expected at ``<folder>/<rule>/.../<job>.tsv`` or ``<folder>/<rule>.tsv``.
    """
    import pandas as pd

    folder = Path(folder)
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        relative = path.relative_to(folder)
        rule = relative.parts[0] if len(relative.parts) > 1 else path.stem
        if rule in exclude:
            continue
        table = pd.read_csv(path, sep="\t")
        if "s" not in table.columns:
            continue
        rows.append(
            {
                "rule": rule,
                "job": str(relative.with_suffix("")),
                "s": table["s"].iloc[-1],
                "max_rss_mb": table["max_rss"].iloc[-1],
            }
        )
    if not rows:
        raise FileNotFoundError(f"no Snakemake benchmark file under {folder}")
    jobs = pd.DataFrame(rows)
    jobs["max_rss_mb"] = pd.to_numeric(jobs["max_rss_mb"], errors="coerce")
    summary = jobs.groupby("rule").agg(
        jobs=("s", "size"),
        total_s=("s", "sum"),
        mean_s=("s", "mean"),
        max_s=("s", "max"),
        peak_rss_mb=("max_rss_mb", "max"),
    )
    return summary.round(2).reset_index()
