"""Raw files bound by content: digests cached by stamp, refused when they changed."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from iusynth.core import raw_digests
from iusynth.core.raw_digests import (
    DigestCache,
    check_digests,
    format_digests,
    parse_digests,
    subject_digests,
)


def write(path: Path, data: bytes, mtime_ns: int | None = None) -> Path:
    """Write ``data`` and, if given, set the file's modification time back."""
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_digests_are_the_files_sha256_and_round_trip(tmp_path):
    a = write(tmp_path / "S1_T2.nii.gz", b"first")
    b = write(tmp_path / "S1_US.nii.gz", b"second")
    digests = subject_digests([b, a])
    assert digests == {
        "S1_T2.nii.gz": hashlib.sha256(b"first").hexdigest(),
        "S1_US.nii.gz": hashlib.sha256(b"second").hexdigest(),
    }
    assert parse_digests(format_digests(digests)) == digests
    assert parse_digests("") == {}
    with pytest.raises(ValueError, match="expected name=<64 hex digits>"):
        parse_digests("S1_T2.nii.gz=abc123")


def test_cache_rehashes_a_file_only_when_its_stamp_moved(tmp_path, monkeypatch):
    path = write(tmp_path / "S1_T2.nii.gz", b"old content", mtime_ns=10**18)
    calls = []
    real = raw_digests.file_sha256
    monkeypatch.setattr(raw_digests, "file_sha256", lambda p: calls.append(p) or real(p))
    cache = DigestCache(tmp_path / "cache" / "mine.json")
    first = cache.sha256(path)
    assert not cache.path.exists()  # written once per subject, by save()
    cache.save()
    assert DigestCache(cache.path).sha256(path) == first  # read back from the file
    assert len(calls) == 1
    # replaced by other bytes of the same size, the old modification time put back (cp -p)
    write(path, b"new content", mtime_ns=10**18)
    assert DigestCache(cache.path).sha256(path) == hashlib.sha256(b"new content").hexdigest()
    assert len(calls) == 2


def test_an_unreadable_cache_is_started_afresh(tmp_path):
    path = write(tmp_path / "S1_T2.nii.gz", b"content")
    (tmp_path / "mine.json").write_text("{not json")
    assert (
        DigestCache(tmp_path / "mine.json").sha256(path) == hashlib.sha256(b"content").hexdigest()
    )


def test_a_file_changed_after_planning_is_refused_naming_it(tmp_path):
    path = write(tmp_path / "S1_T2.nii.gz", b"planned")
    planned = format_digests(subject_digests([path]))
    assert check_digests(tmp_path, planned, "S1") == {
        "S1_T2.nii.gz": hashlib.sha256(b"planned").hexdigest()
    }
    assert check_digests(tmp_path, "", "S1") == {}  # a folder the workflow writes
    write(path, b"replaced", mtime_ns=10**18)
    with pytest.raises(ValueError, match=f"raw file {path} of subject S1 changed"):
        check_digests(tmp_path, planned, "S1")
    path.unlink()
    with pytest.raises(FileNotFoundError, match=f"raw file {path} of subject S1 disappeared"):
        check_digests(tmp_path, planned, "S1")


def test_the_rules_pass_an_empty_digest_list_as_an_argument():
    """Snakemake's :q renders an empty string as nothing, so '--raw-sha256 {p:q}' would
    leave the option without its value for the workflow's own folders: '=' keeps it."""
    from .conftest import REPO

    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    uses = re.findall(r"--raw-sha256(.)\{params\.raw_sha256:q\}", rules)
    assert len(uses) == 8 and set(uses) == {"="}, uses
