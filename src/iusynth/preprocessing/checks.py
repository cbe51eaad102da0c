"""Plausibility checks of a registration that need no ground truth.

A registration started from the headers can only repair what the headers got nearly
right. When a header is wrong in a way rigid block matching cannot undo (the classic: LPS
coordinates written into a NIfTI header, whose world is RAS, which turns the head by 180
degrees about the superior axis), ``reg_aladin`` still returns a transform, and everything
downstream is silently wrong. Three checks catch this after each MR -> MR and iUS -> MR
registration (``preprocessing.registration_checks``):

* the images match better with the floating image's world flipped (x and y negated: LPS
  written as RAS; x negated: a left-right mirror) than with the headers or the
  registration: a flipped header;
* the transform moves further (rotation about, and displacement of, the centre of the
  compared region) than a patient or a tracked probe plausibly does;
* the similarity (normalised mutual information, NMI, over the reference's region) after
  registration is worse than the headers' own.

Landmark pairs, where a subject has them, are checked by
:func:`iusynth.preprocessing.registration.register_subject`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from iusynth.preprocessing.settings import RegistrationChecks

# World flips a header error produces, each a map of world points (its own inverse).
FLIPS: dict[str, np.ndarray] = {
    "x and y negated (LPS coordinates written as RAS)": np.diag([-1.0, -1.0, 1.0, 1.0]),
    "x negated (a left-right mirrored header)": np.diag([-1.0, 1.0, 1.0, 1.0]),
}
HISTOGRAM_BINS = 32
MAX_SAMPLES = 100_000  # voxels of the reference region compared (a seeded subsample)
CHECKS_KEY = "preprocessing.registration_checks"


class ImplausibleRegistration(ValueError):
    """A registration whose result (or whose images' headers) cannot be right."""


@dataclass(frozen=True)
class Volume:
    """An image to compare: its file, voxel data and voxel -> world (RAS) affine."""

    path: Path
    data: np.ndarray
    affine: np.ndarray

    @classmethod
    def of(cls, path: Path, image: Any) -> Volume:
        """From a loaded ``nibabel`` image."""
        return cls(Path(path), np.asarray(image.dataobj, dtype=np.float32), image.affine)


def rotation_deg(matrix: np.ndarray) -> float:
    """The rotation angle (degrees) of a 4x4 transform's nearest rotation (180 if it mirrors)."""
    u, _, vt = np.linalg.svd(np.asarray(matrix, dtype=float)[:3, :3])
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        return 180.0
    cosine = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cosine)))


def displacement_mm(matrix: np.ndarray, point: np.ndarray) -> float:
    """How far a 4x4 transform moves one world point (mm)."""
    moved = np.asarray(matrix, dtype=float)[:3, :3] @ point + np.asarray(matrix)[:3, 3]
    return float(np.linalg.norm(moved - point))


def normalised_mutual_information(first: np.ndarray, second: np.ndarray) -> float:
    """(H(A) + H(B)) / H(A, B) of paired samples: 1 for independent, 2 for identical."""
    joint, _, _ = np.histogram2d(first, second, bins=HISTOGRAM_BINS)
    joint = joint / joint.sum()

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    joint_entropy = entropy(joint.ravel())
    if joint_entropy == 0:
        return 1.0
    return (entropy(joint.sum(axis=1)) + entropy(joint.sum(axis=0))) / joint_entropy


def foreground(data: np.ndarray) -> np.ndarray:
    """An MR's head: voxels above 10% of the 99th percentile of the positive intensities."""
    positive = data[data > 0]
    if positive.size == 0:
        return np.zeros(data.shape, bool)
    return data > 0.1 * np.percentile(positive, 99)


class Comparison:
    """The reference's region, sampled once, compared with the floating image under maps."""

    def __init__(self, reference: Volume, floating: Volume, region: np.ndarray) -> None:
        """Sample up to :data:`MAX_SAMPLES` voxels of ``region`` (a reference-grid mask)."""
        rng = np.random.default_rng(0)
        voxels = np.argwhere(region)
        if len(voxels) > MAX_SAMPLES:
            voxels = voxels[np.sort(rng.choice(len(voxels), MAX_SAMPLES, replace=False))]
        self.floating = floating
        self.values = reference.data[tuple(voxels.T)]
        # a point anywhere in each voxel: the floating image is interpolated under every
        # map alike (on a shared grid the headers would hit voxel centres, sharper than any
        # registration can)
        points = voxels + rng.uniform(-0.5, 0.5, voxels.shape)
        self.world = points @ reference.affine[:3, :3].T + reference.affine[:3, 3]
        self.centre = self.world.mean(axis=0) if len(voxels) else np.zeros(3)

    def nmi(self, reference_to_floating: np.ndarray) -> float:
        """NMI where the floating image, mapped through the world map, overlaps the region."""
        to_voxels = np.linalg.inv(self.floating.affine) @ reference_to_floating
        points = self.world @ to_voxels[:3, :3].T + to_voxels[:3, 3]
        sampled = ndimage.map_coordinates(
            self.floating.data, points.T, order=1, mode="constant", cval=np.nan
        )
        inside = np.isfinite(sampled)
        if inside.sum() < 100:  # (almost) no overlap: nothing in common
            return 1.0
        return normalised_mutual_information(self.values[inside], sampled[inside])


def check_registration(
    reference: Volume,
    floating: Volume,
    reference_to_floating: np.ndarray,
    checks: RegistrationChecks,
    region: np.ndarray | None = None,
    suspect: tuple[Path, str] | None = None,
) -> dict[str, float]:
    """Check one registration (reference world -> floating world); return what was measured.

    ``region`` is the reference-grid mask compared (default: the reference's foreground).
    ``suspect``: the file whose header a flip most likely comes from, and why (e.g. the
    iUS, when the subject's MR sequences agreed with each other); by default the message
    names the floating file, then the reference.
    Raises :class:`ImplausibleRegistration`, naming both files, the probable cause and
    the fix, when a flipped world matches better, the motion is beyond
    ``checks.max_rotation_deg`` / ``checks.max_translation_mm`` or the similarity fell
    below the headers' by more than ``checks.similarity_tolerance``.
    """
    if region is None:
        region = foreground(reference.data)
    comparison = Comparison(reference, floating, region)
    headers = comparison.nmi(np.eye(4))
    registered = comparison.nmi(reference_to_floating)
    measured = {
        "rotation_deg": rotation_deg(reference_to_floating),
        "translation_mm": displacement_mm(reference_to_floating, comparison.centre),
        "nmi_headers": headers,
        "nmi_registered": registered,
    }
    pair = f"{floating.path} registered to {reference.path}"
    _check_flips(comparison, (reference, floating), (headers, registered), checks, suspect)
    if (
        measured["rotation_deg"] > checks.max_rotation_deg
        or measured["translation_mm"] > checks.max_translation_mm
    ):
        raise ImplausibleRegistration(
            f"{pair}: the registration moved it by {measured['rotation_deg']:.1f} degrees and "
            f"{measured['translation_mm']:.1f} mm from the headers, beyond a plausible motion "
            f"({CHECKS_KEY}.max_rotation_deg {checks.max_rotation_deg:g}, max_translation_mm "
            f"{checks.max_translation_mm:g}): the headers probably do not share a world frame "
            "(a flipped header, e.g. LPS written as RAS) or the registration diverged; fix the "
            "header of the wrong file, or raise the limits if such motion is real"
        )
    if registered < headers - checks.similarity_tolerance:
        raise ImplausibleRegistration(
            f"{pair}: the similarity got worse than the headers' (NMI {headers:.3f} -> "
            f"{registered:.3f}, tolerance {CHECKS_KEY}.similarity_tolerance "
            f"{checks.similarity_tolerance:g}): the registration diverged, probably from "
            "headers that do not share a world frame (a flipped header, LPS written as RAS); "
            "check both headers, or raise the tolerance if the images share little"
        )
    return measured


def _check_flips(
    comparison: Comparison,
    volumes: tuple[Volume, Volume],
    similarities: tuple[float, float],
    checks: RegistrationChecks,
    suspect: tuple[Path, str] | None,
) -> None:
    """Raise when the images match better with the floating world flipped.

    ``volumes``: the reference and the floating volume; ``similarities``: their NMI through
    the headers and through the registration (see :func:`check_registration`).
    """
    reference, floating = volumes
    headers, registered = similarities
    pair = f"{floating.path} registered to {reference.path}"
    for flip, matrix in FLIPS.items():
        flipped = comparison.nmi(matrix)
        if flipped > max(headers, registered) + checks.similarity_tolerance:
            culprit = (
                f"the header of {suspect[0]} is the likelier to be flipped ({suspect[1]})"
                if suspect
                else f"the header of {floating.path} (or of {reference.path}) is flipped"
            )
            raise ImplausibleRegistration(
                f"{pair}: the images match far better with the world of {floating.path.name} "
                f"{flip} (NMI {flipped:.3f}) than through the headers ({headers:.3f}) or the "
                f"registration ({registered:.3f}): {culprit}, probably LPS coordinates written "
                "as RAS (NIfTI world is RAS); fix: re-convert the flipped file with a RAS-aware "
                "converter (e.g. dcm2niix, nibabel) or rewrite its qform and sform; the raw "
                "data is not modified by the workflow"
            )
