"""TCIA's NBIA v4 REST API (no authentication needed for public collections).

The alternative to IDC's bucket for ReMIND (``cohorts.remind.api: nbia``); the series to
fetch come from the plan made on IDC's index (same SeriesInstanceUIDs).

- ``getImageWithMD5Hash?SeriesInstanceUID=<uid>`` returns a zip of the series' DICOM
  files (``00000001.dcm``, ...) plus ``md5hashes.csv`` (``Filename,MD5Hash`` rows). The
  server ignores HTTP Range and, during outages, answers 500 or sends a broken zip: a
  series is retried whole, then checked member by member against the MD5 list (and in
  total against a known FileSize, when one is given).
- A ``.tcia`` manifest (from the TCIA web portal) holds header lines and, after
  ``ListOfSeriesToDownload=``, one SeriesInstanceUID per line (newer portals put a
  ``Series ID`` column header first).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iusynth.cohorts.datasets.download import (
    MD5_HEX,
    ChecksumMismatch,
    CorruptDownload,
    DownloadError,
    FileRecord,
    Ledger,
    RetryPolicy,
    fetch,
    md5_of,
    safe_extract,
    tree_size,
    zip_validator,
)
from iusynth.core.fileio import atomic_directory

log = logging.getLogger(__name__)

NBIA_V4 = "https://nbia.cancerimagingarchive.net/nbia-api/services/v4/"
SERIES_HEADERS = {"series id", "seriesinstanceuid", "series instance uid"}
MD5_LIST = "md5hashes.csv"


@dataclass(frozen=True)
class Series:
    """One series to download from NBIA (its size, when known, is checked too)."""

    uid: str
    patient: str
    modality: str
    description: str
    study_description: str
    image_count: int
    file_size: int | None


def read_tcia_manifest(path: Path) -> list[str]:
    """The SeriesInstanceUIDs listed in a ``.tcia`` manifest."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".tcia manifest {path} does not exist")
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("ListOfSeriesToDownload"))
    except StopIteration:
        raise ValueError(
            f"{path} is not a .tcia manifest: no 'ListOfSeriesToDownload=' line"
        ) from None
    uids = [line for line in lines[start + 1 :] if line]
    if uids and uids[0].lower() in SERIES_HEADERS:
        uids = uids[1:]  # a column header, not a series
    bad = [uid for uid in uids if not re.fullmatch(r"[0-9.]+", uid)]
    if bad:
        raise ValueError(f"{path}: {bad[0]!r} is not a SeriesInstanceUID")
    if not uids:
        raise ValueError(f"{path}: the manifest lists no series")
    return uids


def _md5_list(text: str) -> dict[str, str]:
    """File name -> MD5 from NBIA's ``md5hashes.csv`` (column order not assumed)."""
    hashes = {}
    for row in csv.reader(io.StringIO(text)):
        cells = [cell.strip() for cell in row if cell.strip()]
        digests = [cell for cell in cells if MD5_HEX.fullmatch(cell)]
        names = [cell for cell in cells if not MD5_HEX.fullmatch(cell)]
        if len(digests) == 1 and names:
            hashes[Path(names[0].replace("\\", "/")).name] = digests[0].lower()
    return hashes


def _verify_series_folder(folder: Path, series: Series) -> int:
    """Check extracted files against md5hashes.csv and FileSize; return the bytes held."""
    listing = folder / MD5_LIST
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != MD5_LIST]
    if not files:
        raise CorruptDownload(f"series {series.uid}: the zip holds no file")
    if listing.is_file():
        hashes = _md5_list(listing.read_text(errors="replace"))
        for path in files:
            expected = hashes.get(path.name)
            if expected is None:
                raise CorruptDownload(f"series {series.uid}: {path.name} is not in {MD5_LIST}")
            actual = md5_of(path)
            if actual != expected:
                raise ChecksumMismatch("MD5", expected, actual, f"series {series.uid}: {path.name}")
        missing = set(hashes) - {p.name for p in files}
        if missing:
            raise CorruptDownload(f"series {series.uid}: {len(missing)} listed files missing")
    elif series.file_size is None:
        raise CorruptDownload(
            f"series {series.uid}: no {MD5_LIST} in the zip, and no known size: nothing to "
            "check its files against"
        )
    else:
        log.warning("series %s: no %s in the zip; checked by CRC and size", series.uid, MD5_LIST)
    total = sum(p.stat().st_size for p in files)
    if series.file_size is not None and total != series.file_size:
        raise CorruptDownload(
            f"series {series.uid}: {total} bytes, the listing says {series.file_size}"
        )
    return total


def _failed_verification(
    series: Series, attempts: int, last_problem: CorruptDownload | None
) -> DownloadError:
    """The error after the last attempt: a checksum mismatch is not an outage."""
    advice = (
        "the server's copy or its md5hashes.csv is wrong: report it to the data provider "
        "(rerunning will not help)"
        if isinstance(last_problem, ChecksumMismatch)
        else "rerun later"
    )
    return DownloadError(
        f"series {series.uid} ({series.patient}, {series.description}) failed verification "
        f"{attempts} times (last: {last_problem}); {advice}"
    )


def download_series(
    series: Series,
    raw_dir: Path,
    ledger: Ledger,
    *,
    base_url: str = NBIA_V4,
    policy: RetryPolicy,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Download, verify and extract one series into ``raw_dir/<patient>/<uid>/``.

    Skipped when the ledger already holds it verified. The zip is deleted once its
    content is verified; nothing half-extracted is ever left in place.
    """
    folder = Path(raw_dir) / series.patient / series.uid
    if ledger.verified(series.uid) is not None and folder.is_dir():
        log.info("series %s (%s) already verified", series.uid, series.description)
        return folder
    zip_path = folder.with_name(f"{series.uid}.zip")
    last_problem: CorruptDownload | None = None
    for attempt in range(1, policy.attempts + 1):
        record = fetch(
            f"{base_url.rstrip('/')}/getImageWithMD5Hash",
            zip_path,
            params={"SeriesInstanceUID": series.uid},
            policy=policy,
            validate=zip_validator,
            description=f"{series.patient} {series.description}",
        )
        try:
            with atomic_directory(folder) as tmp:
                safe_extract(zip_path, tmp)
                total = _verify_series_folder(tmp, series)
        except CorruptDownload as error:
            last_problem = error
            log.warning("attempt %d/%d: %s", attempt, policy.attempts, error)
            continue
        finally:
            zip_path.unlink(missing_ok=True)
        log.info("series %s: %d bytes verified", series.uid, total)
        ledger.record(
            series.uid,
            folder,
            FileRecord(tree_size(folder), record.md5),
            patient=series.patient,
            description=series.description,
            source="nbia",
            checksum=f"zip CRCs and {MD5_LIST} per file",
            **(extra or {}),
        )
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    raise _failed_verification(series, policy.attempts, last_problem)
