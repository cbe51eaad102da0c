"""2D iUS planes of a subject, with labels: what a segmenter trains on and predicts.

Synthetic planes come from a virtual sweep and its synthetic iUS
(:func:`synthetic_planes`), real ones from a subject's slice stack
(:func:`planes_from_stack`); :func:`stack_to_grid` puts plane masks back in the subject's
3D grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iusynth.core.modalities import ULTRASOUND
from iusynth.preprocessing.slices import load_slices


@dataclass
class SubjectPlanes:
    """A subject's 2D iUS planes with their tumour labels.

    ``images``: (n, H, W), uint8 0..255 or float in [-1, 1]. ``labels``: (n, H, W), any
    value > 0 is tumour (None for prediction-only input). ``spacing``: mm along H and W.
    ``fov``: (n, H, W) bool, None for "everywhere". ``planes``: the plane numbers used in
    case names (default 0..n-1). ``subject`` is the case-name prefix and the unit the
    folds are grouped by.
    """

    subject: str
    images: np.ndarray
    labels: np.ndarray | None
    spacing: tuple[float, float]
    fov: np.ndarray | None = None
    planes: np.ndarray = field(default_factory=lambda: np.empty(0, int))

    def __post_init__(self) -> None:
        if self.images.ndim != 3:
            raise ValueError(f"{self.subject}: planes must be (n, H, W), not {self.images.shape}")
        for name in ("labels", "fov"):
            array = getattr(self, name)
            if array is not None and array.shape != self.images.shape:
                raise ValueError(
                    f"{self.subject}: {name} {array.shape} differ from images {self.images.shape}"
                )
        if self.planes.size == 0:
            self.planes = np.arange(len(self.images))
        if len(self.planes) != len(self.images):
            raise ValueError(f"{self.subject}: {len(self.planes)} plane numbers for {len(self)}")

    def __len__(self) -> int:
        return len(self.images)

    def case_id(self, index: int) -> str:
        """The nnU-Net case name of plane ``index``."""
        return f"{self.subject}_{int(self.planes[index]):04d}"


def subject_of(case_id: str) -> str:
    """The subject of an nnU-Net case named ``<subject>_<plane:04d>``."""
    return case_id.rsplit("_", 1)[0]


def to_intensity(images: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
    """Intensities of iUS planes as float32 0..255, 0 outside the field of view.

    uint8 input is taken as 0..255; float input as [-1, 1] (clipped).
    """
    if images.dtype == np.uint8:
        values = images.astype(np.float32)
    elif np.issubdtype(images.dtype, np.floating):
        values = (np.clip(np.asarray(images, np.float32), -1.0, 1.0) + 1.0) * 127.5
    else:
        raise TypeError(f"iUS planes must be uint8 0..255 or float in [-1, 1], not {images.dtype}")
    if fov is not None:
        values = np.where(fov, values, np.float32(0.0))
    return values


def grid_spacing(meta: dict[str, Any]) -> tuple[float, float, float]:
    """Voxel size (mm) along the three axes of a slice stack's grid (from ``grid_affine``)."""
    affine = np.asarray(meta["grid_affine"], float)
    return tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))


def planes_from_stack(
    folder: Path, label: str | None = "tumor-US", subject: str | None = None
) -> SubjectPlanes:
    """The US channel of a slice stack as :class:`SubjectPlanes` (plane = grid slice index).

    ``label`` names the label array to carry (None: no labels); ``subject`` overrides the
    stack's subject as case-name prefix.
    """
    stack = load_slices(folder)
    meta = stack.meta
    us = meta["modalities"].index(ULTRASOUND)
    if not stack.present[us]:
        raise ValueError(f"{folder}: the slice stack of {meta['subject']} has no iUS")
    labels = None
    if label is not None:
        if label not in stack.labels:
            raise ValueError(f"{folder}: no {label} labels in {meta['subject']}'s slice stack")
        labels = np.asarray(stack.labels[label])
    spacing = grid_spacing(meta)
    return SubjectPlanes(
        subject=subject or meta["subject"],
        images=np.asarray(stack.images[:, us], np.float32),
        labels=labels,
        spacing=(spacing[0], spacing[1]),
        fov=np.asarray(stack.fov, bool),
        planes=np.asarray(meta["slice_indices"], int),
    )


def synthetic_planes(synthetic_dir: Path, sweep_dir: Path) -> SubjectPlanes:
    """A subject's synthetic iUS planes with the tumour labels of its virtual sweep.

    ``synthetic_dir`` holds ``us.npy`` (temperatures, planes, H, W) uint8 (the
    synthetic-ius stage); ``sweep_dir`` the sweep it was made from (binary ``tumor-MR``
    labels, field of view, grid). Several temperatures become more planes of the same
    subject (augmentation), so they stay in one fold.
    """
    us_path = Path(synthetic_dir) / "us.npy"
    if not us_path.is_file():
        raise FileNotFoundError(f"{us_path} is missing: re-run the synthetic_ius rule")
    us = np.load(us_path)
    sweep = load_slices(sweep_dir)
    if "tumor-MR" not in sweep.labels:
        raise ValueError(f"{sweep_dir}: the sweep has no tumor-MR labels; re-run virtual_sweep")
    if us.shape[1:] != sweep.fov.shape:
        raise ValueError(
            f"{us_path}: planes {us.shape[1:]} do not match the sweep {sweep.fov.shape} of "
            f"{sweep_dir}; re-run synthetic_ius"
        )
    copies = len(us)
    spacing = grid_spacing(sweep.meta)
    return SubjectPlanes(
        subject=sweep.meta["subject"],
        images=us.reshape(-1, *us.shape[2:]),
        labels=np.tile(np.asarray(sweep.labels["tumor-MR"]), (copies, 1, 1)),
        spacing=(spacing[0], spacing[1]),
        fov=np.tile(np.asarray(sweep.fov, bool), (copies, 1, 1)),
    )


def stack_to_grid(masks: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Put a slice stack's (n, H, W) masks back into its 3D grid (slices on axis 2)."""
    grid = np.zeros(meta["grid_shape"], np.uint8)
    grid[:, :, meta["slice_indices"]] = np.moveaxis(np.asarray(masks, np.uint8), 0, 2)
    return grid
