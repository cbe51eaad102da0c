"""Time the demo's model training, old code against new, side by side on the same slices.

Each variant of the demo config is trained by ``python -m iusynth train`` from two source
trees (an older commit checked out with ``git worktree add``, and this one), one after the
other, variant by variant, on the same slice stacks and splits; wall time and the epochs'
optimiser steps are recorded. This machine is shared and noisy: only timings taken in one
such run are compared. Writes ``benchmarks/demo_training.md``.

Run from the repository root, after building the demo's slices (e.g.
``snakemake --cores 2 -d /tmp/demo --until make_splits export_slices``)::

    git worktree add /tmp/old <commit>
    python -m benchmarks.demo_training_benchmark --old /tmp/old --results /tmp/demo/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def models_section(tree: Path) -> dict:
    """The ``models`` section of a tree's default config."""
    return yaml.safe_load((tree / "config" / "config.yaml").read_text())["models"]


def git_describe(tree: Path) -> str:
    """The commit of a tree (and whether it has uncommitted changes)."""
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=tree
    )
    return result.stdout.strip() or "unknown"


def train_once(tree: Path, section: dict, variant: str, results: Path, scratch: Path) -> dict:
    """Train one variant with one tree's code; its wall time and epochs' steps."""
    one = {**section, "variants": {variant: section["variants"][variant]}}
    out = scratch / f"{tree.name}-{variant}"
    out.mkdir(parents=True)
    command = [
        sys.executable, "-m", "iusynth", "train", "--variant", variant,
        "--settings", json.dumps(one), "--splits", str(results / "splits" / "splits.json"),
        "--slices", str(results / "slices" / "remind"), "--threads", str(section["threads"]),
        "--checkpoint", str(out / "checkpoint.pt"), "--losses", str(out / "losses.csv"),
        "--output", str(out / "model.pt"),
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(tree / "src")}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{tree} {variant}: {result.stderr[-3000:]}")
    losses = pd.read_csv(out / "losses.csv")
    steps = int(losses["steps"].sum()) if "steps" in losses else None
    return {"seconds": seconds, "epochs": len(losses), "steps": steps}


def main() -> None:
    """Train every variant with both trees, interleaved; write the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", type=Path, required=True, help="worktree of the older commit")
    parser.add_argument("--results", type=Path, required=True, help="demo results folder")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "demo_training.md")
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": REPO}
    sections = {name: models_section(tree) for name, tree in trees.items()}
    variants = [v for v in sections["new"]["variants"] if v in sections["old"]["variants"]]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for variant in variants:
            row = {"variant": variant}
            for name, tree in trees.items():
                measured = train_once(tree, sections[name], variant, args.results, Path(scratch))
                row |= {f"{name}_{key}": value for key, value in measured.items()}
                print(variant, name, measured, flush=True)
            rows.append(row)
    table = pd.DataFrame(rows)
    total_old, total_new = table["old_seconds"].sum(), table["new_seconds"].sum()
    lines = [
        "# Demo model training: old code against new, side by side",
        "",
        f"Written by `python -m benchmarks.demo_training_benchmark` on {platform.node()} "
        f"({os.cpu_count()} CPUs). Old: {git_describe(trees['old'])}; new: "
        f"{git_describe(trees['new'])}. Each variant was trained by both, one after the "
        "other, on the same demo slices (`models.threads` torch threads per job).",
        "",
        "| variant | old: s | old: epochs | new: s | new: epochs | new: optimiser steps |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| {r['variant']} | {r['old_seconds']:.0f} | {r['old_epochs']} | "
            f"{r['new_seconds']:.0f} | {r['new_epochs']} | {r['new_steps']} |"
            for r in rows
        ],
        f"| **all** | **{total_old:.0f}** | | **{total_new:.0f}** | | |",
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
