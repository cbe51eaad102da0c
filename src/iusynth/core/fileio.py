"""Atomic file writing and NIfTI reading with errors that name the file.

Every output of the workflow is first written under a temporary name in its final folder
and renamed into place only when complete, so an interrupted run never leaves a file that
looks finished.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _split_suffix(name: str) -> tuple[str, str]:
    """Split a file name into stem and (possibly double) suffix, e.g. ``.nii.gz``."""
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return name[: -len(double)], double
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot and stem else (name, "")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the suffix, so writers that infer the format from it work.
    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    stem, suffix = _split_suffix(target.name)
    handle, tmp_name = tempfile.mkstemp(
        prefix=f".{stem}.", suffix=f".part{suffix}", dir=target.parent
    )
    os.close(handle)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_parts(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` left beside ``path`` when killed.

    A SIGKILL during a write leaves ``.<stem>.<random>.part<suffix>`` (possibly 0 bytes).
    Call this only while no other process writes ``path`` (e.g. under its lock); returns
    the files removed.
    """
    target = Path(path)
    stem, suffix = _split_suffix(target.name)
    removed = []
    for part in sorted(target.parent.glob(f".{glob.escape(stem)}.*.part{glob.escape(suffix)}")):
        if part.is_file():
            part.unlink()
            removed.append(part)
    return removed


def set_aside(path: Path, label: str, reason: str) -> Path:
    """Rename a checkpoint that must not be resumed to ``<stem>.stale-<label><suffix>``.

    It is kept beside ``path``, never deleted nor overwritten (an earlier one set aside
    under the same name gets ``-2``, ``-3``... appended); a warning says why.
    """
    stem, suffix = path.stem, path.suffix
    target = path.with_name(f"{stem}.stale-{label}{suffix}")
    count = 2
    while target.exists():
        target = path.with_name(f"{stem}.stale-{label}-{count}{suffix}")
        count += 1
    os.replace(path, target)
    log.warning(
        "%s %s: not resumed, set aside as %s (delete it when unneeded); training from scratch",
        path,
        reason,
        target.name,
    )
    return target


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it onto ``path`` if the block succeeds.

    An existing ``path`` is replaced only after the new content is complete.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_nifti(path: str | os.PathLike[str], array: Any, affine: Any) -> None:
    """Save an array with a RAS affine as NIfTI (sform and qform set), atomically.

    The on-disk data type is the array's; use uint8/int16 arrays for compact files.
    """
    import nibabel as nib
    import numpy as np

    image = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=float))
    image.set_sform(image.affine, code=1)
    image.set_qform(image.affine, code=1)
    image.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def load_nifti(path: str | os.PathLike[str], dimensions: int = 3) -> Any:
    """Load a NIfTI image fully into memory, with an error naming the file when it is bad.

    Returns a ``nibabel.Nifti1Image`` whose data has been read (so truncated files fail
    here, not later in some computation); it must have ``dimensions`` axes.
    """
    import nibabel as nib
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"image {path} is empty (0 bytes): re-generate or re-download it")
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types for corrupt files
        raise ValueError(
            f"image {path} is not a readable NIfTI file ({type(error).__name__}: {error}); "
            "re-generate or re-download it"
        ) from error
    if data.ndim != dimensions:
        raise ValueError(f"image {path} has {data.ndim} dimensions, not the {dimensions} expected")
    return nib.Nifti1Image(data, image.affine, image.header)


class CorruptFile(ValueError):
    """A file the workflow wrote earlier that cannot be read back (truncated or damaged)."""
