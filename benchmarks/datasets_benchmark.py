"""Measure the real-dataset code on this machine; write benchmarks/datasets.md.

Runs the download, verification and conversion code against the test suite's local
server (127.0.0.1), on series of realistic size, and times the dry run of each dataset
config. Run from the repository root:  python -m benchmarks.datasets_benchmark
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from iusynth.datasets import download as dl
from iusynth.datasets import nbia
from iusynth.datasets.dicom import series_volume
from tests import dicom_factory as factory
from tests import fake_servers as fake

REPO = Path(__file__).resolve().parents[1]
POLICY = dl.RetryPolicy(attempts=3, backoff_s=0.1)


def timed(function, *args, **kwargs) -> tuple[float, object]:
    """Seconds taken by one call, and its result."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def dry_run(configfile: str, workdir: Path) -> tuple[float, int]:
    """Seconds of `snakemake -n` with an overlay config, and the number of jobs planned."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--configfile",
         str(REPO / "config" / configfile), "-d", str(workdir)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    total = next(
        int(line.split()[1])
        for line in (result.stdout + result.stderr).splitlines()
        if line.startswith("total")
    )
    return seconds, total


def main() -> None:
    """Run every measurement and write the Markdown table."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        state = fake.FakeServer()
        httpd = fake.start(state)
        try:
            blob = np.random.default_rng(0).integers(0, 255, 256 * 2**20, dtype=np.uint8).tobytes()
            state.add("/blob.bin", fake.Reply(blob))
            seconds, _ = timed(
                dl.fetch, f"{state.url}/blob.bin", tmp / "blob.bin", policy=POLICY,
                expected_md5=hashlib.md5(blob).hexdigest(),
            )  # fmt: skip
            rows.append(
                (
                    "fetch 256 MB over loopback, MD5 checked",
                    f"{seconds:.2f} s",
                    f"{256 / seconds:.0f} MB/s",
                )
            )

            shape = (256, 256, 176)
            volume = np.random.default_rng(1).integers(0, 4000, shape).astype(float)
            mr = factory.mr_series(
                volume, fake.ORIENTATION_AX, (1.0, 1.0, 1.0), np.zeros(3), patient="P"
            )
            body, size = fake.series_zip(mr)
            uid = str(mr[0].SeriesInstanceUID)
            state.add(
                fake.nbia_path("getImageWithMD5Hash", SeriesInstanceUID=uid), fake.Reply(body)
            )
            series = nbia.Series(uid, "P", "MR", "3D_AX_T2_SPACE", "preop", len(mr), size)
            ledger = dl.Ledger(tmp / "raw" / "ledger.jsonl")
            seconds, series_folder = timed(
                nbia.download_series, series, tmp / "raw", ledger,
                base_url=f"{state.url}/nbia", policy=POLICY,
            )  # fmt: skip
            rows.append(
                (
                    f"NBIA series {shape[0]}x{shape[1]}x{shape[2]} MR ({size / 2**20:.0f} MB, "
                    f"{len(mr)} files): download, zip check, extraction, MD5s",
                    f"{seconds:.2f} s",
                    f"{size / 2**20 / seconds:.0f} MB/s",
                )
            )
            seconds, _ = timed(
                nbia.download_series, series, tmp / "raw", ledger, base_url=f"{state.url}/nbia",
                policy=POLICY,
            )  # fmt: skip
            rows.append(
                (
                    "the same series on a rerun (ledger: verified, skipped)",
                    f"{seconds * 1000:.0f} ms",
                    "",
                )
            )
            seconds, _ = timed(series_volume, series_folder)
            rows.append(("DICOM MR series -> volume (highdicom)", f"{seconds:.2f} s", ""))

            us_shape = (400, 300, 250)
            us = factory.us_volume(
                np.random.default_rng(2).integers(0, 255, us_shape).astype(float),
                fake.ORIENTATION_OBLIQUE, (0.3, 0.3, 0.4), np.zeros(3), patient="P",
            )  # fmt: skip
            factory.write_datasets([us], tmp / "us")
            seconds, _ = timed(series_volume, tmp / "us")
            rows.append(
                (
                    f"multi-frame iUS {us_shape[0]}x{us_shape[1]}x{us_shape[2]} "
                    f"({np.prod(us_shape) / 2**20:.0f} MB) -> volume",
                    f"{seconds:.2f} s",
                    "",
                )
            )
        finally:
            httpd.shutdown()
        for configfile in ("remind.yaml", "resect.yaml"):
            seconds, jobs = dry_run(configfile, tmp / configfile)
            rows.append(
                (
                    f"`snakemake -n --configfile config/{configfile}` (offline)",
                    f"{seconds:.1f} s",
                    f"{jobs} jobs",
                )
            )
    lines = [
        "# Real-dataset code: measured",
        "",
        f"Written by `python -m benchmarks.datasets_benchmark` on {platform.node()} "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()}).",
        "Transfers are over loopback from the test suite's fake servers: they measure this",
        "code (streaming, checksums, extraction), not TCIA's or NIRD's bandwidth.",
        "",
        "| what | time | rate / size |",
        "| --- | --- | --- |",
        *[f"| {what} | {time_} | {rate} |" for what, time_, rate in rows],
        "",
    ]
    (REPO / "benchmarks" / "datasets.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(json.dumps({"rows": len(rows)}))


if __name__ == "__main__":
    main()
