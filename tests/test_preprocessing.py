"""Preprocessing: geometry, normalisation, labels, slice stacks, splits and bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from iusynth import jobs
from iusynth.core import layout, modalities
from iusynth.core.fileio import save_nifti
from iusynth.core.geometry import rigid_transform, rotation_matrix, voxel_to_world
from iusynth.core.splits import kfold
from iusynth.core.subject import SubjectRecord, check_header
from iusynth.preprocessing.pipeline import (
    Grid,
    fov_grid,
    normalise,
    preprocess_subject,
    resample,
    resample_labels,
)
from iusynth.preprocessing.registration import reg_aladin, register_subject
from iusynth.preprocessing.slices import export_slices, load_slices

from .conftest import REPO, defaults

SETTINGS = defaults(jobs.preprocessing, spacing_mm=1.0, slice_size=(96, 96))
OPTIONS = defaults(jobs.registration).registration
CHECKS = defaults(jobs.registration).registration_checks


def oblique_affine(spacing: float, origin: tuple[float, float, float]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation_matrix(np.array([1.0, 2.0, 0.5]), 0.4) * spacing
    affine[:3, 3] = origin
    return affine


def test_resampling_preserves_physical_positions():
    source_affine = oblique_affine(0.7, (-20.0, 5.0, 3.0))
    volume = np.zeros((60, 60, 60), np.float32)
    voxel = np.array([31, 22, 40])
    volume[tuple(voxel)] = 1.0
    point = voxel_to_world(source_affine, voxel)[0]
    grid = Grid(
        oblique_affine(0.5, (-30.0, -10.0, -5.0)) @ np.diag([1, 1, 1, 1.0]), (120, 120, 120)
    )
    # the grid's world is the source world moved by a known rigid map
    shift = rigid_transform(
        rotation_matrix(np.array([0, 0, 1.0]), 0.2), np.array([3.0, -2.0, 1.0]), point
    )
    out = resample(volume, source_affine, grid, shift, order=1)
    peak = np.array(np.unravel_index(np.argmax(out), out.shape))
    expected_world = np.linalg.inv(shift) @ np.append(point, 1.0)
    landed = voxel_to_world(grid.affine, peak)[0]
    assert np.linalg.norm(landed - expected_world[:3]) <= 0.5 * np.sqrt(3) * 0.5 + 1e-6


def test_normalisation_maps_foreground_above_minus_one_and_background_to_minus_one():
    rng = np.random.default_rng(0)
    volume = rng.gamma(2.0, 50.0, (40, 40, 40)).astype(np.float32)
    volume[:10] = 0.0
    fov = np.ones(volume.shape, bool)
    fov[:, :5] = False
    out, info = normalise(volume, fov, 99.95)
    foreground = (volume > 0) & fov
    assert out[~foreground].min() == -1.0 and out[~foreground].max() == -1.0
    assert out[foreground].min() == pytest.approx(-255 / 256)  # the authors' min-max
    assert out[foreground].max() == pytest.approx(1.0)
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert info["high"] == pytest.approx(np.percentile(volume[foreground], 99.95))


def test_linear_label_resampling_keeps_labels_and_follows_nearest_closely():
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[10:25, 10:25, 10:25] = 2
    labels[14:20, 14:20, 14:20] = 4
    affine = np.eye(4)
    grid = Grid(np.diag([0.5, 0.5, 0.5, 1.0]), (80, 80, 80))
    linear = resample_labels(labels, affine, grid, np.eye(4), "linear")
    nearest = resample_labels(labels, affine, grid, np.eye(4), "nearest")
    assert set(np.unique(linear)) == {0, 2, 4}
    assert (linear == nearest).mean() > 0.97
    with pytest.raises(ValueError, match="nearest"):
        resample_labels(labels, affine, grid, np.eye(4), "cubic")


def test_fov_grid_is_isotropic_with_the_requested_slice_size():
    us_affine = oblique_affine(0.8, (10.0, 20.0, 30.0))
    fov = np.zeros((70, 60, 50), bool)
    fov[10:60, 5:50, 8:40] = True
    grid = fov_grid(us_affine, fov, 0.5, (192, 160))
    assert grid.shape[:2] == (192, 160)
    np.testing.assert_allclose(np.linalg.norm(grid.affine[:3, :3], axis=0), 0.5)
    centre = voxel_to_world(grid.affine, (np.array(grid.shape) - 1) / 2.0)[0]
    np.testing.assert_allclose(
        centre, voxel_to_world(us_affine, np.array([34.5, 27.0, 23.5]))[0], atol=1e-6
    )


def test_kfold_splits_are_disjoint_complete_and_seeded():
    subjects = [f"S{i:02d}" for i in range(11)]
    folds = kfold(subjects, 5, seed=3)
    assert folds == kfold(list(reversed(subjects)), 5, seed=3)
    assert folds != kfold(subjects, 5, seed=4)
    assert sorted(s for fold in folds for s in fold["val"]) == subjects
    for fold in folds:
        assert not set(fold["train"]) & set(fold["val"])
        assert sorted(fold["train"] + fold["val"]) == subjects
    with pytest.raises(ValueError, match="at least 12 subjects"):
        kfold(subjects, 12, seed=0)


def test_reg_aladin_recovers_a_known_shift_of_an_image(tmp_path, generated):
    subject, folder = generated["upenn"]
    image = nib.load(layout.subject_file(folder, subject.plan.subject, "T2"))
    moved = image.affine.copy()
    moved[:3, 3] += [2.0, -3.0, 1.5]
    save_nifti(tmp_path / "moved.nii.gz", np.asarray(image.dataobj), moved)
    result = reg_aladin(
        layout.subject_file(folder, subject.plan.subject, "T2"),
        tmp_path / "moved.nii.gz",
        dataclasses.replace(OPTIONS, levels=3, reference_smoothing_mm=0.0, threads=2),
    )
    np.testing.assert_allclose(result.matrix[:3, 3], [2.0, -3.0, 1.5], atol=0.3)
    np.testing.assert_allclose(result.matrix[:3, :3], np.eye(3), atol=0.01)


@pytest.fixture
def subject_copy(generated, tmp_path):
    """A writable copy of the paired (ReMIND-like) subject."""
    subject, folder = generated["remind"]
    copy = tmp_path / subject.plan.subject
    shutil.copytree(folder, copy)
    return subject.plan.subject, copy


def test_preprocessed_subject_and_slice_stack(subject_copy, tmp_path):
    sid, folder = subject_copy
    truth = np.array(
        json.loads(layout.subject_file(folder, sid, "truth").read_text())["us_to_mr_world"]
    )
    whole = dataclasses.replace(SETTINGS, normalisation_region="grid")  # the authors'
    grid, volumes, summary = preprocess_subject(SubjectRecord.read(folder), truth, {}, whole)
    assert grid.shape[:2] == (96, 96)
    fov = volumes["fov"] > 0
    assert summary["grid"] == "authors" and summary["normalisation_region"] == "grid"
    for modality in summary["modalities"]:
        values = volumes[modality]
        assert values.min() >= -1.0 and values.max() <= 1.0
        # the authors' statistics over the whole grid: an MR covers the head around the
        # sector; the iUS, its sector (and a rim of interpolated voxels at its edge)
        outside = np.mean(values[~fov] > -1.0)
        assert outside < 0.01 if modality == "US" else outside > 0.1
    inside = dataclasses.replace(SETTINGS, normalisation_region="fov")
    _, in_fov, _ = preprocess_subject(SubjectRecord.read(folder), truth, {}, inside)
    for modality in summary["modalities"]:
        assert (in_fov[modality][~fov] == -1.0).all()
    # through the true transform, the iUS and MR tumour labels agree
    both = (volumes["tumor-US"] > 0) & (volumes["tumor-MR"] > 0)
    either = (volumes["tumor-US"] > 0) | (volumes["tumor-MR"] > 0)
    assert both.sum() / either.sum() > 0.8

    out = tmp_path / "pre"
    out.mkdir()
    for name, volume in volumes.items():
        save_nifti(layout.subject_file(out, sid, name), volume, grid.affine)
    missing = next(m for m in ("FLAIR", "T2", "ceT1") if m in summary["modalities"])
    layout.subject_file(out, sid, missing).unlink()
    export_slices(out, sid, tmp_path / "slices")
    stack = load_slices(tmp_path / "slices")
    channel = modalities.MODALITIES.index(missing)
    assert not stack.present[channel] and stack.present[0]
    expected = {m for m in modalities.MODALITIES if m in summary["modalities"]} - {missing}
    assert stack.acquired == expected and "US" in stack.acquired
    assert (stack.images[:, channel] == -1).all()
    assert stack.images.shape[1:] == (4, 96, 96) and stack.fov.any(axis=(1, 2)).all()
    assert "tumor-US" in stack.labels
    # the noise-free images come along, normalised the same way, in the same slices
    assert stack.meta["clean"] == [layout.clean_kind(m) in volumes for m in modalities.MODALITIES]
    assert stack.meta["clean"][0]  # the iUS before speckle
    assert stack.clean is not None and stack.clean.shape == stack.images.shape
    for channel, modality in enumerate(modalities.MODALITIES):
        kind = layout.clean_kind(modality)
        if kind in volumes:
            clean = stack.clean[:, channel].astype(np.float32)
            acquired = stack.images[:, channel].astype(np.float32)
            inside = stack.fov & (acquired > -1)
            if inside.any():
                assert np.corrcoef(clean[inside], acquired[inside])[0, 1] > 0.5, modality


def test_corrupt_and_empty_images_are_named(subject_copy):
    sid, folder = subject_copy
    t2 = layout.subject_file(folder, sid, "T2")
    t2.write_bytes(t2.read_bytes()[:1000])
    with pytest.raises(ValueError, match=rf"{sid}_T2\.nii\.gz is not a readable NIfTI"):
        register_subject(SubjectRecord.read(folder), ["T2", "ceT1"], OPTIONS, {}, CHECKS)
    t2.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{sid}_T2\.nii\.gz is empty"):
        preprocess_subject(SubjectRecord.read(folder), np.eye(4), {}, SETTINGS)


def test_ultrasound_without_foreground_is_refused(subject_copy):
    sid, folder = subject_copy
    us = layout.subject_file(folder, sid, "US")
    image = nib.load(us)
    save_nifti(us, np.zeros(image.shape, np.uint8), image.affine)
    with pytest.raises(ValueError, match=rf"{sid}_US\.nii\.gz has no foreground"):
        register_subject(SubjectRecord.read(folder), ["T2"], OPTIONS, {}, CHECKS)
    with pytest.raises(ValueError, match=rf"{sid}_US\.nii\.gz has no foreground"):
        preprocess_subject(SubjectRecord.read(folder), np.eye(4), {}, SETTINGS)


def test_subject_without_reference_mr_is_refused(subject_copy):
    sid, folder = subject_copy
    for sequence in modalities.MR_SEQUENCES:
        layout.subject_file(folder, sid, sequence).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match=rf"{sid} has no reference MR.*{sid}_T2\.nii\.gz"):
        register_subject(SubjectRecord.read(folder), ["T2", "ceT1", "FLAIR"], OPTIONS, {}, CHECKS)


def test_lps_written_as_ras_is_refused(subject_copy):
    sid, folder = subject_copy
    us = layout.subject_file(folder, sid, "US")
    image = nib.load(us)
    image.set_sform(np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine, code=1)
    nib.save(image, us)
    with pytest.raises(ValueError, match=rf"{sid}_US\.nii\.gz: qform and sform disagree.*LPS"):
        check_header(us)
    with pytest.raises(ValueError, match="LPS"):
        register_subject(SubjectRecord.read(folder), ["T2"], OPTIONS, {}, CHECKS)


def test_ultrasound_outside_the_mr_is_refused(subject_copy):
    sid, folder = subject_copy
    us = layout.subject_file(folder, sid, "US")
    image = nib.load(us)
    far = image.affine.copy()
    far[:3, 3] += [0.0, 0.0, 400.0]
    save_nifti(us, np.asarray(image.dataobj), far)
    with pytest.raises(ValueError, match=rf"falls inside .*{sid}_T2\.nii\.gz.*LPS vs RAS"):
        register_subject(SubjectRecord.read(folder), ["T2"], OPTIONS, {}, CHECKS)


def test_shipped_config_documents_every_preprocessing_key():
    text = (REPO / "config" / "config.yaml").read_text()
    for key in ("transform", "symmetric", "levels", "reference_smoothing_mm", "mask_erosion_mm"):
        assert f"{key}:" in text and "#" in text.split(f"{key}:")[1].splitlines()[0]


def test_landmarks_on_another_sequence_go_through_the_mr_alignment(subject_copy):
    """RESECT-style landmarks (FLAIR world) are mapped into the reference world first."""
    from iusynth.core.fileio import write_json
    from iusynth.core.geometry import apply_transform
    from iusynth.core.tags import LandmarkPairs, read_tag_file, write_tag_file

    sid, folder = subject_copy
    assert SubjectRecord.read(folder).has("landmarks")
    options = dataclasses.replace(OPTIONS, levels=2)
    plain = register_subject(
        SubjectRecord.read(folder), ["T2", "ceT1", "FLAIR"], options, {}, CHECKS
    )
    angle = np.deg2rad(4.0)
    to_flair = np.eye(4)  # reference world -> FLAIR world, as align-mr would estimate it
    to_flair[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    to_flair[:3, 3] = [3.0, -2.0, 5.0]
    tag = layout.subject_file(folder, sid, "landmarks")
    pairs = read_tag_file(tag)
    write_tag_file(
        tag, LandmarkPairs(apply_transform(to_flair, pairs.first), pairs.second, pairs.labels)
    )
    layout.subject_file(folder, sid, "FLAIR").touch()  # the named sequence must exist
    write_json(layout.subject_file(folder, sid, "source"), {"annotation_sequence": "FLAIR"})
    mapped = register_subject(
        SubjectRecord.read(folder), ["T2", "ceT1", "FLAIR"], options, {"FLAIR": to_flair}, CHECKS
    )
    assert mapped["landmark_sequence"] == "FLAIR"
    for key in ("before_median_mm", "after_median_mm", "after_max_mm"):
        assert mapped[key] == pytest.approx(plain[key], abs=1e-3)  # tags keep 4 decimals
