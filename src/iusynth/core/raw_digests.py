"""Raw files bound by content: the SHA-256 of each file of a local subject.

Snakemake reruns a job when an input is *newer* than its outputs. A raw file replaced by
another with an older or preserved timestamp (``mv``, ``cp -p``, ``rsync -a``) would then
leave the old file's outputs in place. So the rules that read a local subject's files
carry the SHA-256 of each of them as a parameter (:func:`format_digests`): when a digest
changes, Snakemake's parameter trigger reruns that subject's jobs, whatever the
timestamps say. Each job checks the files it reads against the digests the DAG was
planned with (:func:`check_digests`), so a file replaced while the workflow runs stops
the job naming it, and the subject's first records keep the digests.

Hashing every raw file at every ``snakemake`` call would cost minutes on a real cohort;
:class:`DigestCache` keeps each file's digest with its size, inode and change times and
rehashes a file only when one of them moved (a rewrite or a replacement always moves the
status-change time, which no tool can set back). Only the standard library is imported:
the Snakefile imports this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
SEPARATOR = ","


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> list[int]:
    """What moves when a file is rewritten or replaced: size, inode, mtime and ctime."""
    status = path.stat()
    return [status.st_size, status.st_ino, status.st_mtime_ns, status.st_ctime_ns]


class DigestCache:
    """Digests of files, kept in one JSON file and trusted while a file's stamp is unchanged.

    A cache that cannot be read is started afresh (the files are hashed again);
    :meth:`save` writes it atomically when a digest was computed since it was read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.changed = False
        try:
            loaded = json.loads(self.path.read_text())
            self.entries: dict[str, list] = loaded if isinstance(loaded, dict) else {}
        except FileNotFoundError:
            self.entries = {}
        except (OSError, ValueError) as error:
            log.warning("digest cache %s unreadable (%s): hashing again", self.path, error)
            self.entries = {}

    def sha256(self, file: str | os.PathLike[str]) -> str:
        """The SHA-256 of ``file``, from the cache when its stamp is unchanged."""
        path = Path(file).resolve()
        stamp = _stamp(path)
        entry = self.entries.get(str(path))
        if isinstance(entry, list) and len(entry) == 5 and entry[:4] == stamp:
            return str(entry[4])
        digest = file_sha256(path)
        self.entries[str(path)] = [*stamp, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        """Write the cache, if a digest was computed since it was read or last saved."""
        from iusynth.core.fileio import atomic_path

        if self.changed:
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(self.entries, sort_keys=True))
            self.changed = False


def subject_digests(
    files: list[str | os.PathLike[str]], cache: DigestCache | None = None
) -> dict[str, str]:
    """File name -> SHA-256 of a subject's raw files (names without their folder).

    With a ``cache``, the digests come from it and it is saved once for the subject.
    """
    digest = cache.sha256 if cache is not None else file_sha256
    digests = {Path(file).name: digest(file) for file in sorted(map(str, files))}
    if cache is not None:
        cache.save()
    return digests


def format_digests(digests: dict[str, str]) -> str:
    """The digests as one command-line value: ``name=sha256`` joined by commas."""
    return SEPARATOR.join(f"{name}={digest}" for name, digest in sorted(digests.items()))


def parse_digests(text: str) -> dict[str, str]:
    """The inverse of :func:`format_digests` (an empty text: no digests)."""
    pairs = [item.partition("=") for item in text.split(SEPARATOR) if item]
    if any(not sep or len(digest) != 64 for _, sep, digest in pairs):
        raise ValueError(f"--raw-sha256 {text!r}: expected name=<64 hex digits>, comma-joined")
    return {name: digest for name, _, digest in pairs}


def check_digests(folder: Path, expected: str, subject: str) -> dict[str, str]:
    """Hash the files ``expected`` names in ``folder`` and refuse any that changed.

    Returns the digests (name -> SHA-256) for the job's record; an empty ``expected``
    (a folder the workflow itself writes) checks nothing.
    """
    wanted = parse_digests(expected)
    found = {}
    for name, digest in wanted.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(
                f"raw file {path} of subject {subject} disappeared after the workflow planned "
                "this job: restore it (or remove it from subjects.tsv), then rerun snakemake"
            )
        found[name] = file_sha256(path)
        if found[name] != digest:
            raise ValueError(
                f"raw file {path} of subject {subject} changed after the workflow planned "
                f"this job (SHA-256 {digest[:12]}... planned, {found[name][:12]}... now): it "
                "was replaced while snakemake ran; rerun snakemake, which reruns this "
                "subject's jobs on the new file"
            )
    return found
