"""Scores of a segmentation against its truth, in 3D.

Dice and the average symmetric surface distance (mm), one table row per subject
(:data:`CASE_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from iusynth.experiments.segmentation.planes import grid_spacing, stack_to_grid
from iusynth.preprocessing.slices import load_slices

CASE_COLUMNS: tuple[str, ...] = (
    "subject",
    "method",
    "set",
    "dice",
    "assd_mm",
    "truth_voxels",
    "prediction_voxels",
)


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two binary masks; 1.0 when both are empty, 0.0 when only one is."""
    prediction, truth = np.asarray(prediction) > 0, np.asarray(truth) > 0
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((prediction & truth).sum()) / total


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Voxels of a mask with a face neighbour outside it (the array edge counts as outside)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=0)


def assd(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance (mm) between two binary masks.

    Surfaces are the masks' boundary voxels (:func:`_boundary`); every boundary voxel of
    each mask contributes its distance to the nearest boundary voxel of the other
    (Euclidean, voxel size ``spacing``), and the mean is over both sets together.
    0.0 when both masks are empty, nan when only one is (no surface to measure to).
    """
    prediction, truth = np.asarray(prediction) > 0, np.asarray(truth) > 0
    if len(spacing) != prediction.ndim or prediction.shape != truth.shape:
        raise ValueError(
            f"masks {prediction.shape} and {truth.shape} with spacing {tuple(spacing)} differ"
        )
    if not prediction.any() and not truth.any():
        return 0.0
    if not prediction.any() or not truth.any():
        return float("nan")
    edges = _boundary(prediction), _boundary(truth)
    to_truth = ndimage.distance_transform_edt(~edges[1], sampling=spacing)
    to_prediction = ndimage.distance_transform_edt(~edges[0], sampling=spacing)
    distances = np.concatenate([to_truth[edges[0]], to_prediction[edges[1]]])
    return float(distances.mean())


def case_metrics(
    subject: str,
    method: str,
    set_name: str,
    prediction: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
) -> pd.Series:
    """One table row (:data:`CASE_COLUMNS`)."""
    return pd.Series(
        {
            "subject": subject,
            "method": method,
            "set": set_name,
            "dice": dice(prediction, truth),
            "assd_mm": assd(prediction, truth, spacing),
            "truth_voxels": int((np.asarray(truth) > 0).sum()),
            "prediction_voxels": int((np.asarray(prediction) > 0).sum()),
        }
    )


def score_stack(
    folder: Path,
    prediction: np.ndarray,
    method: str,
    set_name: str,
    label: str = "tumor-US",
) -> pd.Series:
    """Score a subject's predicted (n, H, W) masks against its slice stack's 3D ``label``.

    Both are placed back in the subject's grid (:func:`stack_to_grid`) and compared in 3D
    with the grid's voxel size (:func:`case_metrics`).
    """
    stack = load_slices(folder)
    if label not in stack.labels:
        raise ValueError(f"{folder}: no {label} labels to score against")
    truth = np.asarray(stack.labels[label])
    if prediction.shape != truth.shape:
        raise ValueError(f"{folder}: prediction {prediction.shape} is not {truth.shape}")
    return case_metrics(
        stack.meta["subject"],
        method,
        set_name,
        stack_to_grid(prediction, stack.meta),
        stack_to_grid(truth > 0, stack.meta),
        grid_spacing(stack.meta),
    )
