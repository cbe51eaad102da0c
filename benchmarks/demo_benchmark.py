"""The whole demo from scratch, side by side against an older commit, and its scaling.

This machine is shared and noisy, so the comparison is made in one run: the demo of this
commit and of the old one (a ``git worktree`` given by ``--old``), one after the other,
each ``snakemake --cores N`` in a fresh working directory. Per run: wall time, jobs, and
per rule (from Snakemake's benchmark files) jobs, job seconds and peak resident memory.

``--scaling 4 8 16`` also runs this commit's demo with that many subjects in every demo
cohort and fits wall time = a + b * subjects (least squares); ``--scaling-only`` runs just
those (the comparison section is left as it is).

The results go into ``benchmarks/performance.md`` between the markers of this script's two
sections (the rest of the page belongs to ``performance_benchmark``)::

    python -m benchmarks.demo_benchmark --old ../wt_old [--scaling 4 8 16 [--scaling-only]]

Without ``--old`` only this commit's demo is run and reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.performance_benchmark import commit_of
from iusynth.reporting.benchmarking import summarise_benchmarks

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- demo_benchmark: start -->", "<!-- demo_benchmark: end -->"
SCALING_START, SCALING_END = "<!-- demo_scaling: start -->", "<!-- demo_scaling: end -->"
SECTIONS = ((START, END), (SCALING_START, SCALING_END))  # the page's sections this script owns
MEMORY_LIMIT_MB = 4096
SCALING_FOLDS = 4


def snakefile(tree: Path) -> Path:
    """The workflow's Snakefile in a checkout (catalog layout, or the older root one)."""
    for candidate in (tree / "workflow" / "Snakefile", tree / "Snakefile"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no Snakefile in {tree}")


def run_demo(
    tree: Path, workdir: Path, cores: int, configs: list[Path], reuse: bool = False
) -> dict[str, Any]:
    """Run one checkout's whole demo from scratch in ``workdir``: wall time and per rule.

    The run's wall time, jobs and commit are kept in ``workdir/run.json``; with ``reuse``
    a finished run found there is read back instead of run again.
    """
    record = workdir / "run.json"
    if reuse and record.is_file():
        run = json.loads(record.read_text())
        return {**run, "rules": summarise_benchmarks(workdir / "results" / "benchmarks")}
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    command = [
        sys.executable, "-m", "snakemake", "--cores", str(cores), "-s", str(snakefile(tree)),
        "-d", str(workdir), "--quiet", "rules",
    ]  # fmt: skip
    if configs:
        command += ["--configfile", *map(str, configs)]
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    environment.pop("PYTHONPATH", None)
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=tree, env=environment, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    (workdir / "snakemake.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"the demo of {tree} failed: see {workdir / 'snakemake.log'}")
    rules = summarise_benchmarks(workdir / "results" / "benchmarks")
    run = {"seconds": seconds, "jobs": int(rules["jobs"].sum()), "commit": commit_of(tree)}
    record.write_text(json.dumps(run))
    return {**run, "rules": rules}


def demo_cohorts() -> list[str]:
    """The demo cohorts of this checkout's config/config.yaml."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return list(config["demo"]["cohorts"])


def subjects_overlay(folder: Path, subjects: int) -> Path:
    """A config overlay giving every demo cohort ``subjects`` subjects.

    The synthesis models' splits use ``SCALING_FOLDS`` folds at every size (the default 5
    needs 5 training / validation subjects), so that validation is the same share of the
    cohort in every run of the fit.
    """
    cohorts = {name: {"subjects": subjects} for name in demo_cohorts()}
    overlay = {
        "demo": {"cohorts": cohorts},
        "preprocessing": {"splits": {"folds": SCALING_FOLDS}},
    }
    path = folder / f"subjects-{subjects}.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def linear_fit(counts: list[int], seconds: list[float]) -> tuple[float, float, float]:
    """Least squares seconds = a + b * count; a, b and the largest relative residual."""
    b, a = np.polyfit(np.asarray(counts, float), np.asarray(seconds, float), 1)
    fitted = a + b * np.asarray(counts, float)
    worst = float(np.max(np.abs(fitted - seconds) / np.asarray(seconds)))
    return float(a), float(b), worst


def minutes(seconds: float) -> str:
    """Seconds as ``M min S s``."""
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def rule_table(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Per rule, old and new: jobs, job seconds, peak RSS (Markdown lines)."""
    merged = old["rules"].merge(new["rules"], on="rule", how="outer", suffixes=("_old", "_new"))
    lines = [
        "| rule | jobs old | jobs new | job s old | job s new | peak RSS MB new |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in merged.sort_values("total_s_new", ascending=False).itertuples():

        def cell(value: Any, form: str) -> str:
            return "-" if value != value else format(value, form)  # NaN: rule absent

        lines.append(
            f"| {row.rule} | {cell(row.jobs_old, '.0f')} | {cell(row.jobs_new, '.0f')} | "
            f"{cell(row.total_s_old, '.0f')} | {cell(row.total_s_new, '.0f')} | "
            f"{cell(row.peak_rss_mb_new, '.0f')} |"
        )
    return lines


def section(
    old_tree: Path | None,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    cores: int,
    command: str,
) -> str:
    """The Markdown section of performance.md comparing the whole demo, old and new.

    Without an old run (``old`` None) the section reports this commit's demo alone.
    """
    peak = new["rules"].sort_values("peak_rss_mb", ascending=False).iloc[0]
    memory = (
        f"Peak resident memory of any job of the new demo: {peak['peak_rss_mb']:.0f} MB "
        f"(rule {peak['rule']}; limit {MEMORY_LIMIT_MB} MB: "
        f"{'within' if peak['peak_rss_mb'] <= MEMORY_LIMIT_MB else 'OVER'})."
    )
    lines = [START, "## The whole demo from scratch", ""]
    if old is None or old_tree is None:
        lines += [
            f"Written by `{command}` on {platform.machine()}, `snakemake --cores {cores}`, "
            f"no GPU; commit {new['commit']}, in a fresh working directory; no older "
            "commit was run beside it.",
            "",
            "| demo | jobs | wall time |",
            "| --- | --- | --- |",
            f"| {new['commit']} | {new['jobs']} | {minutes(new['seconds'])} |",
            "",
            memory,
            "",
            *rule_table({**new, "rules": new["rules"].iloc[0:0]}, new),
            "",
        ]
    else:
        lines += [
            f"Written by `{command}` on {platform.machine()}, `snakemake --cores {cores}`, "
            f"no GPU; old commit {old['commit']}, new commit {new['commit']}; the "
            "new demo first, then the old one, in one run, each in a fresh working directory.",
            "",
            "| demo | jobs | wall time |",
            "| --- | --- | --- |",
            f"| old ({old['commit']}) | {old['jobs']} | {minutes(old['seconds'])} |",
            f"| new ({new['commit']}) | {new['jobs']} | {minutes(new['seconds'])} |",
            "",
            f"Speed-up: **{old['seconds'] / new['seconds']:.2f}x**. {memory}",
            "",
            *rule_table(old, new),
            "",
        ]
    lines.append(END)
    return "\n".join(lines)


def scaling_section(
    scaling: list[tuple[int, float, int]], commit: str, cores: int, command: str
) -> str:
    """The Markdown section on wall time against subjects per cohort, with the linear fit.

    ``scaling`` holds (subjects per demo cohort, wall seconds, jobs) per run.
    """
    lines = [
        SCALING_START,
        "### Scaling with the cohorts' size",
        "",
        f"Written by `{command}` on {platform.machine()}, `snakemake --cores {cores}`, no GPU; "
        f"commit {commit}; each demo from scratch with that many subjects in every demo "
        f"cohort ({', '.join(demo_cohorts())}) and {SCALING_FOLDS} folds for the synthesis "
        f"models' split (validation 1/{SCALING_FOLDS} of the training cohort at every size), "
        "one after the other.",
        "",
        "| subjects per demo cohort | jobs | wall time |",
        "| --- | --- | --- |",
        *[f"| {n} | {jobs} | {minutes(s)} |" for n, s, jobs in scaling],
        "",
    ]
    if len(scaling) > 1:
        counts, seconds, _ = zip(*scaling, strict=True)
        a, b, worst = linear_fit(list(counts), list(seconds))
        lines += [
            f"Fit: time = a + b * subjects, a = {a:.0f} s, b = {b:.0f} s per subject "
            f"(largest relative residual {worst:.1%}).",
            "",
        ]
    lines.append(SCALING_END)
    return "\n".join(lines)


def write_section(page: Path, text: str, markers: tuple[str, str] = (START, END)) -> None:
    """Replace the section between ``markers`` in ``page`` (or append it)."""
    current = page.read_text() if page.is_file() else ""
    pattern = re.compile(re.escape(markers[0]) + ".*?" + re.escape(markers[1]), re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text, current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    page.write_text(updated)


def main() -> None:
    """Run the demos and write the sections."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--old", type=Path, help="worktree of the commit to compare against (none: new only)"
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--scaling", type=int, nargs="*", default=[])
    parser.add_argument("--scaling-only", action="store_true", help="run only the --scaling demos")
    parser.add_argument("--work", type=Path, default=Path("/tmp/iusynth-demo-benchmark"))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "performance.md")
    parser.add_argument(
        "--reuse", action="store_true", help="read back the runs already finished in --work"
    )
    args = parser.parse_args()
    if args.scaling_only and not args.scaling:
        parser.error("--scaling-only needs --scaling N ...")
    command = "python -m benchmarks.demo_benchmark " + " ".join(
        a if not a.startswith("/") else f"<{Path(a).name}>" for a in sys.argv[1:] if a != "--reuse"
    )
    if not args.scaling_only:
        old_tree = args.old.resolve() if args.old else None
        new = run_demo(REPO, args.work / "new", args.cores, [], args.reuse)
        write_section(args.output, section(old_tree, None, new, args.cores, command))
        if old_tree:
            old = run_demo(old_tree, args.work / "old", args.cores, [], args.reuse)
            write_section(args.output, section(old_tree, old, new, args.cores, command))
    scaling: list[tuple[int, float, int]] = []
    args.work.mkdir(parents=True, exist_ok=True)
    for count in args.scaling:
        overlay = subjects_overlay(args.work, count)
        run = run_demo(REPO, args.work / f"scaling-{count}", args.cores, [overlay], args.reuse)
        scaling.append((count, run["seconds"], run["jobs"]))
        text = scaling_section(scaling, run["commit"], args.cores, command)
        print(text, flush=True)
        write_section(args.output, text, (SCALING_START, SCALING_END))


if __name__ == "__main__":
    main()
