"""Downloads that survive flaky servers, and archives that cannot escape their folder.

- :func:`fetch` streams one URL to disk under a temporary name, with timeouts, retries
  with exponential backoff on 5xx, dropped connections and corrupt payloads, optional
  size and MD5 checks and a validation hook (e.g. "is this a complete zip?"), then renames
  it into place. An error page served instead of data (HTML, or an object store's XML
  error document, recognised by its first bytes whatever the status), a 4xx and a full
  disk each stop with a message naming the URL and the file; a checksum still wrong after
  the last attempt is reported as a checksum mismatch, with both digests.
- :class:`Ledger` records, per dataset, which files were verified (size and MD5), so a
  rerun skips them and an interrupted download resumes where it stopped.
- :func:`safe_extract` unpacks zip and tar archives refusing any member that would land
  outside the target folder (absolute paths, ``..``, links) or overwrite a different file.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import requests

from iusynth.core.fileio import atomic_path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
MD5_HEX = re.compile(r"\b[0-9a-fA-F]{32}\b")  # an MD5 digest as servers publish it
USER_AGENT = "iusynth (MRI-iUS synthesis workflow)"


class DownloadError(RuntimeError):
    """A download that cannot succeed as things are; the message says what to do."""


class CorruptDownload(ValueError):
    """A payload that arrived but is wrong (size, checksum, archive): worth a retry."""


class WrongContent(CorruptDownload):
    """A payload that arrived complete but is not the expected file (size, digest)."""


class ChecksumMismatch(WrongContent):
    """A complete payload whose digest is not the expected one."""

    def __init__(self, algorithm: str, expected: str, actual: str, what: str = "") -> None:
        super().__init__(
            f"{what + ': ' if what else ''}{algorithm} checksum mismatch: expected {expected}, "
            f"got {actual}"
        )
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try (``download``).

    Attempts per file, the first backoff (doubled each time) and the timeouts.
    """

    attempts: int
    backoff_s: float
    connect_timeout_s: float
    read_timeout_s: float


@dataclass(frozen=True)
class FileRecord:
    """A verified file: its size in bytes and MD5."""

    size: int
    md5: str


def md5_of(path: Path) -> str:
    """MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def new_session() -> requests.Session:
    """An HTTP session with this project's User-Agent."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


_XML_FIELD = re.compile(rb"<(Code|Message)>\s*([^<]{1,200}?)\s*</\1>", re.IGNORECASE)


def error_document(first_bytes: bytes) -> str | None:
    """What an error page served instead of data is, from its first bytes; None for data.

    An HTML page, or an XML error document as object stores send them (S3, GCS:
    ``<Error><Code>NoSuchKey</Code>...``), whatever the HTTP status said; the XML one is
    described with its code and message.
    """
    head = first_bytes.lstrip(b"\xef\xbb\xbf \t\r\n")[:4096]
    lowered = head[:64].lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if lowered.startswith((b"<?xml", b"<error")) and b"<error" in head.lower():
        fields = {
            name.decode().lower(): value.decode("utf-8", "replace")
            for name, value in _XML_FIELD.findall(head)
        }
        details = ", ".join(f"{name} {value}" for name, value in sorted(fields.items()))
        return f"an XML error document ({details or 'no code given'})"
    return None


def _disk_full(error: OSError, path: Path) -> DownloadError:
    """A clear error for a full disk, naming the folder and the space left."""
    free = shutil.disk_usage(path.parent).free
    return DownloadError(
        f"disk full while writing {path} ({free / 1e9:.2f} GB left in {path.parent}): free "
        "space or point the dataset's 'raw' folder elsewhere, then rerun; verified files are "
        "kept and will not be downloaded again"
    )


def _stream_to(response: requests.Response, tmp: Path, url: str, description: str) -> FileRecord:
    """Write a streamed response into ``tmp``; return its size and MD5."""
    from tqdm import tqdm

    total = int(response.headers.get("Content-Length") or 0) or None
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with (
        open(tmp, "wb") as handle,
        tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=description,
            mininterval=5.0,  # also readable in a job's log file
        ) as progress,
    ):
        for index, chunk in enumerate(response.iter_content(CHUNK_BYTES)):
            document = error_document(chunk) if index == 0 else None
            if document is not None:
                raise DownloadError(
                    f"{url} answered {document} instead of data for {description}"
                    f" (HTTP {response.status_code}; first bytes: {chunk[:80]!r}); the file is "
                    "not there or the address has moved: check it in a browser and fix the "
                    "dataset's url (or subject list) in the config"
                )
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            progress.update(len(chunk))
    if total is not None and size != total:
        raise CorruptDownload(f"connection closed after {size} of {total} bytes")
    return FileRecord(size, digest.hexdigest())


def _retry_delay(policy: RetryPolicy, attempt: int) -> float:
    """Exponential backoff before the next attempt."""
    return policy.backoff_s * 2 ** (attempt - 1)


def _check_status(response: requests.Response) -> None:
    """A 5xx is worth another attempt; a 4xx is final."""
    if response.status_code >= 500:
        raise CorruptDownload(f"server error HTTP {response.status_code}")
    if response.status_code >= 400:
        document = error_document(next(response.iter_content(4096), b""))
        raise DownloadError(
            f"{response.url} answered HTTP {response.status_code} ({response.reason})"
            f"{f' with {document}' if document else ''}: the file is not there; check the "
            "dataset's url and subject list in the config"
        )


def _check_payload(
    record: FileRecord,
    tmp: Path,
    expected_size: int | None,
    expected_md5: str | None,
    validate: Callable[[Path], None] | None,
) -> None:
    """The downloaded bytes' size, MD5 and content checks (CorruptDownload when wrong)."""
    if expected_size is not None and record.size != expected_size:
        raise WrongContent(f"size {record.size} bytes, expected {expected_size}")
    if expected_md5 is not None and record.md5 != expected_md5.lower():
        raise ChecksumMismatch("MD5", expected_md5.lower(), record.md5)
    if validate is not None:
        validate(tmp)


def fetch(
    url: str,
    destination: Path,
    *,
    session: requests.Session | None = None,
    policy: RetryPolicy,
    params: dict[str, str] | None = None,
    expected_size: int | None = None,
    expected_md5: str | None = None,
    validate: Callable[[Path], None] | None = None,
    description: str | None = None,
) -> FileRecord:
    """Download ``url`` to ``destination`` atomically; retry what can be retried.

    ``validate`` receives the complete temporary file and raises :class:`CorruptDownload`
    to ask for another attempt. Nothing is left at ``destination`` unless every check
    passed; the temporary file is removed on every failure.
    """
    session = session or new_session()
    destination = Path(destination)
    description = description or destination.name
    problems: list[CorruptDownload | OSError] = []
    for attempt in range(1, policy.attempts + 1):
        try:
            timeout = (policy.connect_timeout_s, policy.read_timeout_s)
            with (
                atomic_path(destination) as tmp,
                session.get(url, params=params, stream=True, timeout=timeout) as response,
            ):
                _check_status(response)
                record = _stream_to(response, tmp, url, description)
                _check_payload(record, tmp, expected_size, expected_md5, validate)
            return record
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise _disk_full(error, destination) from error
            if not isinstance(error, requests.RequestException):
                raise
            problems.append(error)
        except CorruptDownload as error:
            problems.append(error)
        if attempt < policy.attempts:
            delay = _retry_delay(policy, attempt)
            log.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.0f s",
                description,
                attempt,
                policy.attempts,
                _describe(problems[-1]),
                delay,
            )
            time.sleep(delay)
    raise _gave_up(url, destination, policy.attempts, problems)


def _describe(problem: Exception) -> str:
    """One attempt's problem in words."""
    if isinstance(problem, CorruptDownload):
        return str(problem)
    return f"{type(problem).__name__}: {problem}"


def _gave_up(
    url: str, destination: Path, attempts: int, problems: list[CorruptDownload | OSError]
) -> DownloadError:
    """The error after the last attempt: wrong content that arrived is not an outage.

    A checksum that fails on the last attempt is reported as a checksum mismatch (expected
    and actual digest); wrong content on every attempt, as the wrong file; only attempts
    that failed to arrive are blamed on the server.
    """
    where = f"could not download {url} to {destination} after {attempts} attempts"
    last = problems[-1] if problems else None
    if isinstance(last, ChecksumMismatch):
        failed = sum(isinstance(p, ChecksumMismatch) for p in problems)
        return DownloadError(
            f"{destination}: {last.algorithm} checksum mismatch downloading {url}: expected "
            f"{last.expected}, got {last.actual} ({failed} of {attempts} attempts arrived "
            "complete with a wrong checksum); the server's copy or the expected checksum is "
            "wrong: check the checksum in the config or the dataset's published list, or "
            "report it to the data provider (rerunning will not help)"
        )
    if problems and all(isinstance(p, WrongContent) for p in problems):
        return DownloadError(
            f"{where}: every attempt got a wrong file (last: {_describe(problems[-1])}); the "
            "server's copy is damaged or the expected size is wrong: check the dataset's "
            "published list, or report it to the data provider"
        )
    return DownloadError(
        f"{where} (last problem: {_describe(last) if last else 'none'}); the server may be "
        "having an outage: rerun later, files already verified are kept"
    )


def fetch_text(
    url: str,
    *,
    session: requests.Session | None = None,
    policy: RetryPolicy,
    params: dict[str, str] | None = None,
) -> str:
    """GET a small text resource (JSON listing, checksum sidecar) with the same retries."""
    session = session or new_session()
    last_problem = "no attempt made"
    for attempt in range(1, policy.attempts + 1):
        try:
            response = session.get(
                url, params=params, timeout=(policy.connect_timeout_s, policy.read_timeout_s)
            )
            document = error_document(response.content[:4096])
            if response.status_code < 400 and document is None:
                return response.text
            if response.status_code < 500:
                raise DownloadError(
                    f"{response.url} answered HTTP {response.status_code} ({response.reason})"
                    f"{f' with {document}' if document else ''}: the file is not there or "
                    "the address has moved; check it in a browser and fix the dataset's url "
                    "in the config"
                )
            last_problem = f"server error HTTP {response.status_code}"
        except requests.RequestException as error:
            last_problem = f"{type(error).__name__}: {error}"
        if attempt < policy.attempts:
            time.sleep(_retry_delay(policy, attempt))
    raise DownloadError(
        f"could not read {url} after {policy.attempts} attempts (last problem: {last_problem})"
    )


def zip_validator(path: Path) -> None:
    """Raise :class:`CorruptDownload` unless ``path`` is a complete, CRC-clean zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise CorruptDownload(f"not a complete zip archive ({error})") from error
    if bad is not None:
        raise CorruptDownload(f"zip member {bad!r} fails its CRC check")


class Ledger:
    """A per-dataset record of verified files (JSON lines), safe for parallel jobs.

    Each line holds a key (e.g. a series UID or a relative path), the path of the file or
    folder relative to the ledger's folder, its size in bytes and an MD5. An entry counts
    as verified while its path exists with the recorded size; the workflow never rewrites
    a verified file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.root = self.path.parent

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        """Hold an exclusive lock on the ledger file."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every recorded key with its latest entry."""
        if not self.path.exists():
            return {}
        with self._locked() as handle:
            handle.seek(0)
            lines = handle.read().splitlines()
        entries = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                log.warning(
                    "%s: line %d is not JSON (an interrupted write); ignored", self.path, number
                )
                continue
            entries[entry["key"]] = entry
        return entries

    def verified(self, key: str) -> dict[str, Any] | None:
        """The entry of ``key`` if its file is still there with the recorded size."""
        entry = self.entries().get(key)
        if entry is None:
            return None
        path = self.root / entry["path"]
        if not path.exists() or tree_size(path) != entry["size"]:
            return None
        return entry

    def record(self, key: str, path: Path, file: FileRecord, **extra: Any) -> None:
        """Append a verified file to the ledger."""
        entry = {
            "key": key,
            "path": os.path.relpath(path, self.root),
            "size": file.size,
            "md5": file.md5,
            **extra,
        }
        with self._locked() as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _member_target(target: Path, name: str, archive: Path) -> Path:
    """Where an archive member would land; raise if that is outside ``target``."""
    relative = PurePosixPath(name.replace("\\", "/"))
    if (
        relative.is_absolute()
        or ".." in relative.parts
        or (relative.parts[:1] and ":" in relative.parts[0])
    ):
        raise DownloadError(
            f"archive {archive} holds a member {name!r} that would be written outside "
            f"{target} (absolute path or '..'); refusing to extract it: the archive is "
            "malicious or corrupt, delete it and download it again"
        )
    resolved = (target / Path(*relative.parts)).resolve()
    if not resolved.is_relative_to(target.resolve()):
        raise DownloadError(f"archive {archive}: member {name!r} escapes {target}; refusing")
    return resolved


def _place(source: Any, destination: Path, archive: Path, name: str) -> None:
    """Copy one member's bytes to ``destination``; an existing identical file is kept."""
    if destination.exists():
        digest = hashlib.md5(usedforsecurity=False)
        for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
            digest.update(chunk)
        if digest.hexdigest() != md5_of(destination):
            raise DownloadError(
                f"archive {archive}: member {name!r} differs from the existing "
                f"{destination}; refusing to overwrite it (delete it by hand if the "
                "archive is the newer one)"
            )
        return
    try:
        with atomic_path(destination) as tmp, open(tmp, "wb") as handle:
            shutil.copyfileobj(source, handle, CHUNK_BYTES)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise _disk_full(error, destination) from error
        raise


@contextmanager
def _archive_members(archive: Path) -> Iterator[list[tuple[str, bool, Callable[[], Any]]]]:
    """The files of a zip or tar archive: (name, is a regular file, opener of its bytes)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            yield [
                (
                    info.filename,
                    (info.external_attr >> 16) & 0o170000 != 0o120000,
                    partial(bundle.open, info),
                )
                for info in bundle.infolist()
                if not info.is_dir()
            ]
        return
    try:
        bundle = tarfile.open(archive)
    except tarfile.TarError as error:
        raise DownloadError(f"{archive} is neither a zip nor a tar archive ({error})") from error
    with bundle:
        yield [
            (member.name, member.isfile(), partial(bundle.extractfile, member))
            for member in bundle.getmembers()
            if not member.isdir()
        ]


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Extract a zip or tar archive into ``target``; return the files it holds.

    Every member is checked before anything is written; links and special files are
    refused, and a file already in ``target`` is never overwritten with other content.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    with _archive_members(archive) as members:
        for name, regular, _ in members:
            if not regular:
                raise DownloadError(
                    f"archive {archive}: member {name!r} is a link or a special file; refusing"
                )
            _member_target(target, name, archive)
        for name, _, open_member in members:
            destination = _member_target(target, name, archive)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with open_member() as source:
                _place(source, destination, archive, name)
            written.append(destination)
    return written


def announce_licence(raw_dir: Path, dataset: str, licence: str) -> None:
    """Log a dataset's licence the first time anything is downloaded into ``raw_dir``."""
    marker = Path(raw_dir) / "LICENCE.txt"
    if marker.exists():
        return
    message = f"{dataset}: {licence}"
    log.warning("%s", message)
    with atomic_path(marker) as tmp:
        tmp.write_text(message + "\n")
