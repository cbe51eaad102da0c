"""What binding raw files by content costs: hashing a local cohort, cold and from the cache.

The demo cohorts of the default config (config/config.yaml: 12 ReMIND-like, 6 UPenn-like
and 3 RESECT-like subjects) are generated into a scratch folder and read as local cohorts
would be: each subject's files are hashed as the workflow does when it plans the jobs
(:func:`iusynth.core.raw_digests.subject_digests`), first with an empty digest cache (a
first run, or files that all moved), then again from the cache (every later
``snakemake`` call, files unchanged: one ``stat`` per file). Rounds alternate cold and
warm. Writes ``benchmarks/raw_digests.md``::

    python -m benchmarks.raw_digests_benchmark [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from iusynth import jobs
from iusynth.cohorts.demo.generate import generate_subject
from iusynth.cohorts.demo.plan import plan_cohort
from iusynth.core.raw_digests import DigestCache, subject_digests
from iusynth.core.subject import SubjectRecord

REPO = Path(__file__).resolve().parents[1]
COHORTS = ("remind", "upenn", "resect")


def generate(root: Path) -> list[SubjectRecord]:
    """Every demo subject of the default config, written under ``root``."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    settings = jobs.demo(config)
    records = []
    for cohort in COHORTS:
        dataset = config["cohorts"][cohort]["dataset"]
        plans = plan_cohort(
            cohort, dataset, config["demo"]["seed"], jobs.demo_cohort(config, cohort)
        )
        for plan in plans:
            folder = root / cohort / plan.subject
            generate_subject(plan, settings, folder)
            records.append(SubjectRecord.read(folder, plan.subject))
    return records


def hash_all(records: list[SubjectRecord], cache: DigestCache) -> float:
    """Seconds to digest every subject's files through ``cache``."""
    start = time.perf_counter()
    for record in records:
        subject_digests(record.files(), cache)
    return time.perf_counter() - start


def main() -> None:
    """Measure and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        records = generate(Path(scratch) / "cohorts")
        files = [path for record in records for path in record.files()]
        megabytes = sum(path.stat().st_size for path in files) / 1e6
        cold, warm = [], []
        for round_ in range(args.rounds):
            cache_path = Path(scratch) / f"cache-{round_}.json"
            cold.append(hash_all(records, DigestCache(cache_path)))
            warm.append(hash_all(records, DigestCache(cache_path)))
    cold_ms = [1000 * s for s in cold]
    warm_ms = [1000 * s for s in warm]
    rows = [
        ("cold: every file hashed (first run, or all files moved)", cold_ms),
        ("warm: from the cache, files unchanged (every later run)", warm_ms),
    ]
    lines = [
        "# Raw files bound by content: what hashing costs",
        "",
        "Written by `python -m benchmarks.raw_digests_benchmark` "
        f"({platform.machine()}, Python {platform.python_version()}, {args.rounds} rounds "
        "alternating cold and warm).",
        "",
        f"The default config's demo cohorts read as local cohorts: {len(records)} subjects, "
        f"{len(files)} files, {megabytes:.1f} MB. Time to digest every subject's files "
        "when the workflow plans its jobs (median, min-max over the rounds):",
        "",
        "| digest cache | total ms | ms per subject |",
        "|---|---|---|",
    ]
    for label, values in rows:
        median = statistics.median(values)
        lines.append(
            f"| {label} | {median:.1f} ({min(values):.1f}-{max(values):.1f}) "
            f"| {median / len(records):.2f} |"
        )
    rate = megabytes / (statistics.median(cold_ms) / 1000)
    lines += [
        "",
        f"Cold hashing ran at {rate:.0f} MB/s here (files in the page cache, just "
        "written): a real cohort is hashed once at that rate (its size in MB divided by "
        "it, in seconds), then costs one `stat` per file per "
        "`snakemake` call. The demo run itself generates its cohorts (they are outputs of "
        "the workflow, bound by Snakemake's own timestamps), so it hashes nothing.",
        "",
    ]
    output = REPO / "benchmarks" / "raw_digests.md"
    output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
