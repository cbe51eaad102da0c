"""Per-subject resumability inside a job that makes the outputs of several subjects.

A job that synthesises (or scores) a whole evaluation set loads its model once, but a
killed job must not lose the subjects it finished, and Snakemake removes a job's outputs
before it runs. So each subject's output is first made in a cache folder beside the
results, stamped with a key: the digest of everything that decides it (settings, model
files, input files). A re-run reuses a cached subject only when its key is the same, so
nothing stale is resumed; when every subject is done, the cached outputs are moved onto
the job's outputs and the cache is removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from iusynth.core.fileio import atomic_path

log = logging.getLogger(__name__)
KEY_SUFFIX = ".key"


def content_digest(paths: Iterable[str | os.PathLike[str]], *texts: str) -> str:
    """SHA-256 of some texts and of the files (folders: every file, by relative name)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def _discard(path: Path) -> None:
    """Remove a file or folder if it exists."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def make_resumably(
    outputs: dict[str, Path],
    keys: dict[str, str],
    cache: Path | None,
    make: Callable[[str, Path], None],
) -> list[str]:
    """Make each subject's output through ``cache``; return the subjects reused.

    ``make(subject, path)`` writes ``path`` atomically. Reused subjects are those an
    earlier, killed run finished with the same key. Without a cache every output is made
    in place.
    """
    if cache is None:
        for subject, output in outputs.items():
            make(subject, output)
        return []
    names = [output.name for output in outputs.values()]
    if len(set(names)) != len(names):
        raise ValueError(f"outputs {sorted(names)} share a name: they cannot share {cache}")
    cache.mkdir(parents=True, exist_ok=True)
    reused = []
    for subject, output in outputs.items():
        entry = cache / output.name
        stamp = cache / f"{output.name}{KEY_SUFFIX}"
        if entry.exists() and stamp.is_file() and stamp.read_text() == keys[subject]:
            reused.append(subject)
            continue
        _discard(entry)
        stamp.unlink(missing_ok=True)
        make(subject, entry)
        with atomic_path(stamp) as tmp:
            tmp.write_text(keys[subject])
    if reused:
        log.info("reused %d subjects of an interrupted run from %s: %s", len(reused), cache, reused)
    for output in outputs.values():
        _discard(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        os.replace(cache / output.name, output)
        (cache / f"{output.name}{KEY_SUFFIX}").unlink()
    shutil.rmtree(cache)
    for parent in (cache.parent, cache.parent.parent):  # .resume/<rule>/<method>: if empty
        try:
            parent.rmdir()
        except OSError:
            break
    return reused
