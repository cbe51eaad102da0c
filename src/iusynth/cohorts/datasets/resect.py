"""RESECT from the NIRD archive and RESECT-SEG from OSF: download, verify, convert.

RESECT publishes, per case, ``NIFTI/Case{N}/MRI/Case{N}-{T1,FLAIR}.nii.gz``,
``NIFTI/Case{N}/US/Case{N}-US-before.nii.gz`` and
``NIFTI/Case{N}/Landmarks/Case{N}-MRI-beforeUS.tag``: MNI tag points, FLAIR then iUS, in
RAS world millimetres (case 11 may have none). Its T1 is gadolinium-enhanced (our ceT1).
The archive serves the same folder from two documented addresses
(:data:`~iusynth.cohorts.datasets.catalog.RESECT_URLS`), tried in turn. ``.md5`` sidecars are
documented for the US files only: they are required there; an MR file or the landmarks
use a sidecar when the archive has one, else the SHA-256 computed at download is recorded
(ledger and ``source.json`` say which). RESECT-SEG's zip holds
``Case{N}/Case{N}-US-before-tumor.nii.gz`` and ``Case{N}/Case{N}-FLAIR-tumor.nii.gz``; OSF
builds that zip on the fly, so it has no published checksum (its CRCs are checked).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

from iusynth.cohorts.datasets.catalog import RESECT, resect_case
from iusynth.cohorts.datasets.download import (
    CHUNK_BYTES,
    MD5_HEX,
    DownloadError,
    FileRecord,
    Ledger,
    RetryPolicy,
    announce_licence,
    fetch,
    fetch_text,
    new_session,
    safe_extract,
    tree_size,
    zip_validator,
)
from iusynth.core import layout
from iusynth.core.fileio import atomic_directory, load_nifti, write_json
from iusynth.core.tags import read_tag_file, write_tag_file

log = logging.getLogger(__name__)

SIDECAR_REQUIRED = frozenset({"US"})  # the files whose .md5 the archive documents
OPTIONAL_FILES = frozenset({"landmarks"})  # case 11 may have no landmark file
PUBLISHED = "published MD5 (.md5 sidecar)"
COMPUTED = "no checksum published: SHA-256 computed at download"


def case_files(case: int) -> dict[str, str]:
    """The files of one case, by our file kind, relative to the archive's root."""
    root = f"NIFTI/Case{case}"
    return {
        "ceT1": f"{root}/MRI/Case{case}-T1.nii.gz",
        "FLAIR": f"{root}/MRI/Case{case}-FLAIR.nii.gz",
        "US": f"{root}/US/Case{case}-US-before.nii.gz",
        "landmarks": f"{root}/Landmarks/Case{case}-MRI-beforeUS.tag",
    }


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar_md5(url: str, session: Any, policy: RetryPolicy, required: bool) -> str | None:
    """The MD5 published in ``<url>.md5``; None when optional and absent."""
    try:
        text = fetch_text(url + ".md5", session=session, policy=policy)
    except DownloadError:
        if required:
            raise
        return None
    match = MD5_HEX.search(text)
    if match is None:
        raise DownloadError(f"{url}.md5 holds no MD5 digest (starts with {text[:60]!r})")
    return match.group(0).lower()


def _fetch_case_file(
    kind: str, relative: str, path: Path, base_urls: list[str], session: Any, policy: RetryPolicy
) -> tuple[FileRecord, str, str | None] | None:
    """Fetch one file from the first address that serves it: (record, url, published MD5).

    None for an optional file that no address has (HTTP 404 everywhere).
    """
    problems = []
    for base in base_urls:
        url = f"{base.rstrip('/')}/{relative}"
        try:
            expected = _sidecar_md5(url, session, policy, required=kind in SIDECAR_REQUIRED)
            return (
                fetch(url, path, session=session, policy=policy, expected_md5=expected),
                url,
                (expected),
            )
        except DownloadError as error:
            problems.append(str(error))
            log.warning("%s: %s", relative, error)
    if kind in OPTIONAL_FILES and all("HTTP 404" in problem for problem in problems):
        return None
    raise DownloadError(
        f"{relative} could not be downloaded from any of {base_urls} ("
        + " | ".join(problems)
        + "); if the archive moved, set cohorts.resect.url"
    )


def download_subject(
    subject: str,
    raw_dir: Path,
    output: Path,
    *,
    base_urls: list[str] | tuple[str, ...],
    policy: RetryPolicy,
) -> None:
    """Download and verify one RESECT case's files; write a record of them."""
    case = resect_case(subject)
    raw_dir = Path(raw_dir)
    announce_licence(raw_dir, RESECT.name, RESECT.licence)
    ledger = Ledger(raw_dir / "ledger.jsonl")
    session = new_session()
    record: dict[str, Any] = {"subject": subject, "files": {}, "checksums": {}}
    for kind, relative in case_files(case).items():
        path = raw_dir / relative
        entry = ledger.verified(relative)
        if entry is None:
            fetched = _fetch_case_file(kind, relative, path, list(base_urls), session, policy)
            if fetched is None:
                log.warning(
                    "%s has no %s on the archive: converted without landmarks (left out of "
                    "the landmark errors only)",
                    subject,
                    Path(relative).name,
                )
                continue
            file, url, published = fetched
            checks = {"checksum": PUBLISHED} if published else {"checksum": COMPUTED}
            checks["sha256"] = sha256_of(path)
            ledger.record(relative, path, file, url=url, **checks)
            entry = ledger.verified(relative)
        record["files"][kind] = str(path.resolve())
        record["checksums"][kind] = {
            "checksum": entry.get("checksum", COMPUTED),
            "md5": entry["md5"],
            "sha256": entry.get("sha256"),
        }
    write_json(output, record)


def download_segmentations(raw_dir: Path, output: Path, *, url: str, policy: RetryPolicy) -> None:
    """Download RESECT-SEG's zip, check its CRCs, extract it safely; record where it went."""
    raw_dir = Path(raw_dir)
    announce_licence(raw_dir, RESECT.name, RESECT.licence)
    ledger = Ledger(raw_dir / "ledger.jsonl")
    target = raw_dir / "RESECT-SEG"
    if ledger.verified("RESECT-SEG") is None:
        archive = raw_dir / "RESECT-SEG.zip"
        file = fetch(url, archive, policy=policy, validate=zip_validator)
        try:
            with atomic_directory(target) as tmp:
                safe_extract(archive, tmp)
        finally:
            archive.unlink(missing_ok=True)
        ledger.record("RESECT-SEG", target, FileRecord(tree_size(target), file.md5))
    write_json(output, {"folder": str(target.resolve())})


def _find_one(folder: Path, name: str) -> Path | None:
    """The single file called ``name`` anywhere under ``folder`` (None if absent)."""
    found = sorted(Path(folder).rglob(name))
    if len(found) > 1:
        raise ValueError(f"{folder} holds {len(found)} files named {name}: {found[:3]}")
    return found[0] if found else None


def convert_subject(
    record: dict[str, Any], segmentations: Path | None, output: Path
) -> dict[str, Any]:
    """Lay out one RESECT case: ceT1, FLAIR, iUS, landmarks (RAS) and RESECT-SEG's masks."""
    subject = record["subject"]
    case = resect_case(subject)
    files = {kind: Path(path) for kind, path in record["files"].items()}
    source: dict[str, Any] = {
        "dataset": RESECT.name,
        "files": {kind: str(path) for kind, path in files.items()},
        "annotation_sequence": "FLAIR",
    }
    with atomic_directory(output) as tmp:
        for kind in ("ceT1", "FLAIR", "US"):
            load_nifti(files[kind])  # a readable 3D volume, or an error naming the file
            shutil.copyfile(files[kind], layout.subject_file(tmp, subject, kind))
        source["checksums"] = record.get("checksums", {})
        if "landmarks" in files:
            pairs = read_tag_file(files["landmarks"])
            write_tag_file(
                layout.subject_file(tmp, subject, "landmarks"),
                pairs,
                comment=(
                    f"RESECT case {case}: FLAIR point, then iUS (before resection) point, RAS mm"
                ),
            )
        else:
            log.warning("%s: no landmark file; converted without landmarks", subject)
            source["notes"] = ["no landmark file on the archive: no landmark errors"]
        if segmentations is not None:
            masks = {
                "tumor-US": _find_one(segmentations, f"Case{case}-US-before-tumor.nii.gz"),
                "tumor-MR": _find_one(segmentations, f"Case{case}-FLAIR-tumor.nii.gz"),
            }
            for kind, path in masks.items():
                if path is None:
                    log.warning("RESECT-SEG has no %s mask for %s", kind, subject)
                    continue
                load_nifti(path)
                shutil.copyfile(path, layout.subject_file(tmp, subject, kind))
                source["files"][kind] = str(path)
        write_json(layout.subject_file(tmp, subject, "source"), source)
    return source
