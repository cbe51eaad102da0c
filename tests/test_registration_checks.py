"""Registration checks without ground truth: flipped headers, implausible motion, landmarks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from iusynth import jobs
from iusynth.core import layout
from iusynth.core.fileio import save_nifti
from iusynth.core.geometry import rotation_matrix
from iusynth.core.subject import SubjectRecord
from iusynth.preprocessing.checks import (
    ImplausibleRegistration,
    Volume,
    check_registration,
    rotation_deg,
)
from iusynth.preprocessing.registration import align_subject_sequences, check_landmarks

from .conftest import defaults

CHECKS = defaults(jobs.registration).registration_checks
OPTIONS = dataclasses.replace(defaults(jobs.registration).registration, levels=2, threads=1)
SPACING_MM = 3.0
LPS_AS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
RAS = np.eye(4)


def head(contrast: str) -> np.ndarray:
    """A small asymmetric head: an ellipsoid with a bright and a dark blob off its axes."""
    shape = (56, 64, 52)
    grid = np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij"))
    radius = np.sqrt(((grid / np.array([22, 27, 20])[:, None, None, None]) ** 2).sum(axis=0))
    volume = np.where(radius < 1, 100.0, 0.0)
    volume += 80.0 * (np.linalg.norm(grid - np.array([9, 12, 4])[:, None, None, None], axis=0) < 6)
    volume -= 60.0 * (
        np.linalg.norm(grid - np.array([-6, -14, -5])[:, None, None, None], axis=0) < 5
    )
    volume = ndimage.gaussian_filter(volume, 1.0)
    if contrast == "ceT1":  # another contrast of the same anatomy
        volume = np.where(volume > 5, 220.0 - volume, 0.0)
    noise = np.random.default_rng(len(contrast)).normal(0.0, 8.0, shape)  # each its own
    return np.abs(volume + noise).astype(np.float32)


def affine(header: np.ndarray = RAS) -> np.ndarray:
    """The head's voxel -> world map, centred on the world origin, under a header error."""
    centred = np.diag([SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
    centred[:3, 3] = -SPACING_MM * (np.array(head("T2").shape) - 1) / 2
    return header @ centred


def volume(tmp_path: Path, contrast: str, header: np.ndarray = RAS) -> Volume:
    """One contrast of the head written to a file (the path is what messages name)."""
    path = tmp_path / f"sub-01_{contrast}.nii.gz"
    save_nifti(path, head(contrast), affine(header))
    return Volume(path, head(contrast), affine(header))


def rigid(angle_deg: float, shift_mm: tuple[float, float, float]) -> np.ndarray:
    """A rotation about the superior axis through the origin, then a shift."""
    matrix = np.eye(4)
    matrix[:3, :3] = rotation_matrix(np.array([0.0, 0.0, 1.0]), np.deg2rad(angle_deg))
    matrix[:3, 3] = shift_mm
    return matrix


def test_rotation_angle_of_a_transform():
    assert rotation_deg(rigid(28.0, (0, 0, 0))) == pytest.approx(28.0)
    assert rotation_deg(LPS_AS_RAS) == pytest.approx(180.0)
    assert rotation_deg(np.diag([-1.0, 1.0, 1.0, 1.0])) == 180.0  # a mirror


def test_consistent_headers_pass_and_the_measures_are_kept(tmp_path):
    reference, floating = volume(tmp_path, "T2"), volume(tmp_path, "ceT1")
    measured = check_registration(reference, floating, rigid(2.0, (1.0, -1.0, 0.5)), CHECKS)
    assert measured["rotation_deg"] == pytest.approx(2.0)
    assert measured["nmi_headers"] > 1.2
    assert measured["nmi_registered"] > measured["nmi_headers"] - CHECKS.similarity_tolerance


def test_lps_written_as_ras_is_named(tmp_path):
    """qform and sform both flipped: each header is consistent, the head is turned 180 deg."""
    reference, floating = volume(tmp_path, "T2"), volume(tmp_path, "ceT1", LPS_AS_RAS)
    with pytest.raises(ImplausibleRegistration, match=r"sub-01_ceT1\.nii\.gz.*LPS.*RAS") as error:
        check_registration(reference, floating, np.eye(4), CHECKS)
    assert "fix" in str(error.value)
    mirrored = volume(tmp_path, "ceT1", np.diag([-1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ImplausibleRegistration, match=r"x negated \(a left-right mirrored"):
        check_registration(reference, mirrored, np.eye(4), CHECKS)


def test_implausible_motion_is_refused(tmp_path):
    reference, floating = volume(tmp_path, "T2"), volume(tmp_path, "ceT1")
    with pytest.raises(ImplausibleRegistration, match=r"28\.0 degrees.*max_rotation_deg 15"):
        check_registration(reference, floating, rigid(28.0, (0.0, 0.0, 0.0)), CHECKS)
    with pytest.raises(ImplausibleRegistration, match=r"37\.0 mm.*max_translation_mm 25"):
        check_registration(reference, floating, rigid(0.0, (37.0, 0.0, 0.0)), CHECKS)


def test_a_similarity_worse_than_the_headers_is_refused(tmp_path):
    reference, floating = volume(tmp_path, "T2"), volume(tmp_path, "ceT1")
    moved = rigid(10.0, (12.0, -8.0, 0.0))  # within the motion limits, but off the anatomy
    with pytest.raises(ImplausibleRegistration, match=r"similarity got worse than the headers"):
        check_registration(reference, floating, moved, CHECKS)


@pytest.mark.parametrize("flipped", [False, True])
def test_mr_alignment_of_a_flipped_sequence_stops_with_lps(tmp_path, flipped):
    """align-mr runs reg_aladin on the small head; a flipped ceT1 stops, a normal one passes."""
    folder = tmp_path / "sub-01"
    folder.mkdir()
    volume(folder, "T2")
    volume(folder, "ceT1", LPS_AS_RAS if flipped else RAS)
    record = SubjectRecord.read(folder)
    if flipped:
        with pytest.raises(ImplausibleRegistration, match=r"sub-01_ceT1\.nii\.gz.*LPS"):
            align_subject_sequences(record, ["T2"], OPTIONS, CHECKS)
    else:
        alignment = align_subject_sequences(record, ["T2"], OPTIONS, CHECKS)
        assert alignment["checks"]["ceT1"]["rotation_deg"] < 2.0
        # headers trusted (no alignment): still checked for a flip
        assert align_subject_sequences(record, ["T2"], None, CHECKS)["transforms"] == {}


def test_landmarks_made_worse_stop_unless_allowed(tmp_path):
    record = SubjectRecord(subject="sub-01", folder=tmp_path, kinds=frozenset())
    registration = {"reference_sequence": "T2", "before_median_mm": 5.83, "after_median_mm": 7.9}
    landmarks = layout.subject_file(tmp_path, "sub-01", "landmarks").name
    with pytest.raises(
        ImplausibleRegistration, match=rf"{landmarks} worse .*5\.83 -> 7\.90 mm.*LPS.*allow_worse"
    ):
        check_landmarks(registration, record, CHECKS)
    allowed = dataclasses.replace(CHECKS, allow_worse_landmarks=True)
    assert check_landmarks(registration, record, allowed) is None
    assert check_landmarks(registration | {"after_median_mm": 1.2}, record, CHECKS) is None


def test_a_reference_every_sequence_disagrees_with_is_named(tmp_path):
    folder = tmp_path / "sub-01"
    folder.mkdir()
    volume(folder, "T2", LPS_AS_RAS)
    volume(folder, "ceT1")
    volume(folder, "FLAIR")
    record = SubjectRecord.read(folder)
    with pytest.raises(
        ImplausibleRegistration, match=r"sub-01_T2\.nii\.gz: every other MR sequence.*ceT1, FLAIR"
    ):
        align_subject_sequences(record, ["T2"], None, CHECKS)
