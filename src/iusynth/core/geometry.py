"""Small helpers for 4x4 homogeneous transforms and voxel/world conversions."""

from __future__ import annotations

import numpy as np


def rotation_matrix(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Return the 3x3 rotation of ``angle_rad`` about ``axis`` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * skew + (1 - np.cos(angle_rad)) * skew @ skew


def rigid_transform(
    rotation: np.ndarray, translation: np.ndarray, centre: np.ndarray
) -> np.ndarray:
    """Return the 4x4 map x -> R (x - c) + c + t: rotation about ``centre``, then translation."""
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = np.asarray(centre) - rotation @ np.asarray(centre) + np.asarray(translation)
    return matrix


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to N x 3 points."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def voxel_to_world(affine: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Map N x 3 voxel indices to world coordinates with a 4x4 affine."""
    return apply_transform(affine, indices)


def world_to_voxel(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map N x 3 world points to (fractional) voxel indices with a 4x4 affine."""
    return apply_transform(np.linalg.inv(affine), points)


def unit(vector: np.ndarray) -> np.ndarray:
    """Return ``vector`` scaled to unit length."""
    vector = np.asarray(vector, dtype=float)
    return vector / np.linalg.norm(vector)
