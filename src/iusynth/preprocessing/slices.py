"""2D slice stacks for training: one memory-mappable folder per subject.

A stack holds the slices of a subject's preprocessed grid (axis 2 of the iUS grid) that
contain some field of view::

    <subject>/
        images.npy      float32 (slices, 4, H, W): US, T2, ceT1, FLAIR in [-1, 1]; a missing
                        modality is all -1 and flagged in meta.json
        fov.npy         bool (slices, H, W)
        tumor-US.npy    uint8 (slices, H, W), when the subject has iUS tumour labels
        tumor-MR.npy    uint8 (slices, H, W), when the subject has MR tumour labels
        clean.npy       float32 (slices, 4, H, W), demo subjects: the noise-free images,
                        normalised as the acquired ones (meta.json's ``clean`` flags them)
        meta.json       subject, modalities, present, slice indices, grid shape and affine

``np.load(..., mmap_mode="r")`` reads a batch of contiguous slices without loading the
whole subject.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iusynth.core import layout, modalities
from iusynth.core.fileio import atomic_directory, load_nifti

STACK_DTYPE = np.float32  # the models' inputs exactly as normalised (as the authors feed them)


@dataclass
class SliceStack:
    """A subject's slices, memory-mapped."""

    images: np.ndarray
    fov: np.ndarray
    labels: dict[str, np.ndarray]
    meta: dict[str, Any]
    clean: np.ndarray | None = None  # noise-free images (demo), as ``images``

    @property
    def present(self) -> np.ndarray:
        """Boolean mask over ``meta['modalities']``: which modalities were acquired."""
        return np.array(self.meta["present"], dtype=bool)

    @property
    def acquired(self) -> frozenset[str]:
        """The names of the modalities this subject has (the rest are all -1)."""
        names = self.meta["modalities"]
        return frozenset(m for m, p in zip(names, self.meta["present"], strict=True) if p)


def export_slices(preprocessed_dir: Path, subject: str, output_dir: Path) -> dict[str, Any]:
    """Write the slice stack of one preprocessed subject; returns its metadata."""
    preprocessed_dir = Path(preprocessed_dir)
    fov_image = load_nifti(layout.subject_file(preprocessed_dir, subject, "fov"))
    fov = np.asarray(fov_image.dataobj) > 0
    keep = np.flatnonzero(fov.any(axis=(0, 1)))
    if keep.size == 0:
        raise ValueError(f"{preprocessed_dir}: the field of view of {subject} is empty")

    def as_slices(volume: np.ndarray) -> np.ndarray:
        return np.moveaxis(volume, 2, 0)[keep]

    def channels(kinds: list[str]) -> tuple[np.ndarray, list[bool]]:
        stack = np.full((keep.size, len(kinds), *fov.shape[:2]), -1.0, STACK_DTYPE)
        found = []
        for channel, kind in enumerate(kinds):
            path = layout.subject_file(preprocessed_dir, subject, kind)
            found.append(path.is_file())
            if path.is_file():
                stack[:, channel] = as_slices(np.asarray(load_nifti(path).dataobj, np.float32))
        return stack, found

    images, present = channels(list(modalities.MODALITIES))
    clean, clean_present = channels([layout.clean_kind(m) for m in modalities.MODALITIES])
    meta = {
        "subject": subject,
        "modalities": list(modalities.MODALITIES),
        "present": present,
        "slice_axis": 2,
        "slice_indices": keep.tolist(),
        "grid_shape": list(fov.shape),
        "grid_affine": fov_image.affine.tolist(),
        "labels": [],
        "clean": clean_present,
    }
    with atomic_directory(output_dir) as folder:
        np.save(folder / "images.npy", images)
        np.save(folder / "fov.npy", as_slices(fov))
        if any(clean_present):
            np.save(folder / "clean.npy", clean)
        for kind in layout.LABEL_KINDS:
            path = layout.subject_file(preprocessed_dir, subject, kind)
            if path.is_file():
                np.save(
                    folder / f"{kind}.npy",
                    as_slices(np.asarray(load_nifti(path).dataobj, np.uint8)),
                )
                meta["labels"].append(kind)
        (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_slices(folder: Path) -> SliceStack:
    """Open a subject's slice stack, memory-mapped."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a slice stack (no meta.json); re-run export_slices"
        )
    meta = json.loads(meta_path.read_text())
    labels = {kind: np.load(folder / f"{kind}.npy", mmap_mode="r") for kind in meta["labels"]}
    clean = folder / "clean.npy"
    return SliceStack(
        images=np.load(folder / "images.npy", mmap_mode="r"),
        fov=np.load(folder / "fov.npy", mmap_mode="r"),
        labels=labels,
        meta=meta,
        clean=np.load(clean, mmap_mode="r") if clean.is_file() else None,
    )
