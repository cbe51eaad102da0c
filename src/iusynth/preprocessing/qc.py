"""Quality-control figures of a subject: orthogonal slices of every modality with label contours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from iusynth.core import layout, modalities
from iusynth.core.fileio import atomic_path, load_nifti
from iusynth.core.subject import SubjectRecord

_VIEWS = ("axial", "coronal", "sagittal")
_LABEL_COLOURS = {1: "red", 2: "yellow", 4: "cyan"}


def _canonical(image: Any) -> np.ndarray:
    """A volume reoriented to RAS voxel axes (for display only)."""
    import nibabel as nib

    return np.asarray(nib.as_closest_canonical(image).dataobj)


def _slices(volume: np.ndarray, centre: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices through ``centre``, oriented for display."""
    i, j, k = (round(float(c)) for c in centre)
    return [volume[:, :, k].T, volume[:, j, :].T, volume[i, :, :].T]


def _centre(labels: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Centroid of the labels when there are any, else the middle of the grid."""
    if labels is not None and labels.any():
        return np.argwhere(labels > 0).mean(axis=0)
    return (np.array(shape) - 1) / 2.0


def _draw_row(
    axes: np.ndarray, volume: np.ndarray, labels: np.ndarray | None, centre: np.ndarray, name: str
) -> None:
    """One row of three views with optional label contours."""
    finite = volume[volume > 0]
    vmax = np.percentile(finite, 99.5) if finite.size else 1.0
    label_views = _slices(labels, centre) if labels is not None else [None] * 3
    for axis, image, label, view in zip(
        axes, _slices(volume, centre), label_views, _VIEWS, strict=True
    ):
        axis.imshow(image, cmap="gray", origin="lower", vmin=0, vmax=vmax, interpolation="nearest")
        if label is not None:
            for value, colour in _LABEL_COLOURS.items():
                if (label == value).any():
                    axis.contour(label == value, levels=[0.5], colors=colour, linewidths=0.8)
        axis.set_title(f"{name} {view}", fontsize=8)
        axis.axis("off")


def plot_subject(record: SubjectRecord, output: Path) -> None:
    """Write a PNG with one row per modality (three orthogonal views) and tumour contours.

    MR rows are centred on the MR tumour labels and show them; the ultrasound row is in
    the ultrasound's own grid and shows the ultrasound tumour mask. The images come from
    the record, header-checked as every stage sees them.
    """
    subject = record.subject
    if not any(record.has(m) for m in modalities.MODALITIES):
        raise FileNotFoundError(f"{record.folder} holds no image of subject {subject}")
    rows: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    mr_labels = _canonical(record.image("tumor-MR")) if record.has("tumor-MR") else None
    for sequence in record.mr_sequences:
        rows.append((sequence, _canonical(record.image(sequence)), mr_labels))
    if record.has("US"):
        us_labels = _canonical(record.image("tumor-US")) if record.has("tumor-US") else None
        rows.append(("US", _canonical(record.image("US")), us_labels))

    figure, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for row_axes, (name, volume, labels) in zip(axes, rows, strict=True):
        if labels is not None and labels.shape != volume.shape:
            raise ValueError(
                f"{subject}: {name} {volume.shape} and its labels {labels.shape} differ in shape"
            )
        _draw_row(row_axes, volume, labels, _centre(labels, volume.shape), name)
    figure.suptitle(f"{subject}: red core/necrosis, cyan enhancing, yellow oedema", fontsize=9)
    figure.tight_layout()
    with atomic_path(output) as tmp:
        figure.savefig(tmp, dpi=90)
    plt.close(figure)


def _checkerboard(first: np.ndarray, second: np.ndarray, squares: int = 8) -> np.ndarray:
    """Interleave two same-shape 2D images in a checkerboard."""
    rows, cols = np.indices(first.shape)
    size = max(1, min(first.shape) // squares)
    return np.where(((rows // size) + (cols // size)) % 2 == 0, first, second)


def plot_registration(
    us: np.ndarray,
    mr_before: np.ndarray,
    mr_after: np.ndarray,
    fov: np.ndarray,
    title: str,
    output: Path,
) -> None:
    """Checkerboards of iUS and MR (all in [-1, 1], same grid) before and after registration."""
    centre = np.argwhere(fov).mean(axis=0) if fov.any() else (np.array(fov.shape) - 1) / 2.0
    figure, axes = plt.subplots(2, 3, figsize=(9, 6.4), squeeze=False)
    for row, (name, mr) in enumerate((("header only", mr_before), ("registered", mr_after))):
        views = zip(
            _slices(us, centre), _slices(mr, centre), _slices(fov, centre), _VIEWS, strict=True
        )
        for axis, (us_view, mr_view, fov_view, view) in zip(axes[row], views, strict=True):
            rows, cols = np.nonzero(fov_view)
            if rows.size:  # crop each view to the field of view
                crop = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
                us_view, mr_view, fov_view = us_view[crop], mr_view[crop], fov_view[crop]
            board = np.where(fov_view > 0, _checkerboard(us_view, mr_view, squares=6), -1.0)
            axis.imshow(
                board, cmap="gray", origin="lower", vmin=-1, vmax=1, interpolation="nearest"
            )
            axis.set_title(f"{name}, {view}", fontsize=8)
            axis.axis("off")
    figure.suptitle(f"{title}: iUS / MR checkerboard", fontsize=9)
    figure.tight_layout()
    with atomic_path(output) as tmp:
        figure.savefig(tmp, dpi=90)
    plt.close(figure)


def registration_volumes(
    record: SubjectRecord, preprocessed_dir: Path
) -> dict[str, np.ndarray | str]:
    """A subject's iUS and reference MR in its preprocessed grid, before and after registration.

    Keys: ``us``, ``before`` (the MR through the headers only), ``after`` (registered),
    ``fov`` (bool) and ``reference`` (the reference sequence's name); images in [-1, 1].
    """
    import json

    from iusynth.preprocessing.pipeline import Grid, normalise, resample

    subject = record.subject
    summary = json.loads(
        layout.subject_file(preprocessed_dir, subject, "preprocessing").read_text()
    )
    reference = summary["reference_sequence"]
    grid = Grid(np.array(summary["grid_affine"]), tuple(summary["grid_shape"]))
    fov = np.asarray(load_nifti(layout.subject_file(preprocessed_dir, subject, "fov")).dataobj) > 0
    us = np.asarray(load_nifti(layout.subject_file(preprocessed_dir, subject, "US")).dataobj)
    after = np.asarray(
        load_nifti(layout.subject_file(preprocessed_dir, subject, reference)).dataobj
    )
    mr_image = record.image(reference)
    header_only = resample(np.asarray(mr_image.dataobj), mr_image.affine, grid, np.eye(4), 1)
    region = fov if summary.get("normalisation_region", "fov") == "fov" else None
    before, _ = normalise(header_only, region, summary["clip_percentile"])
    return {"us": us, "before": before, "after": after, "fov": fov, "reference": reference}


def plot_subject_registration(record: SubjectRecord, preprocessed_dir: Path, output: Path) -> None:
    """QC of one subject's registration: reference MR through the header only vs registered."""
    volumes = registration_volumes(record, preprocessed_dir)
    subject = record.subject
    plot_registration(
        volumes["us"],
        volumes["before"],
        volumes["after"],
        volumes["fov"],
        f"{subject} ({volumes['reference']})",
        output,
    )
