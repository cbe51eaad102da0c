"""Virtual iUS sweeps from MR-only subjects: geometry, sampling, normalisation, layout."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from iusynth import jobs
from iusynth.core import layout, modalities
from iusynth.core.settings import ConfigError
from iusynth.core.subject import SubjectRecord
from iusynth.experiments.segmentation.sweeps import (
    make_sweeps,
    plane_world_points,
)
from iusynth.preprocessing.pipeline import fov_grid, resample, ultrasound_fov
from iusynth.preprocessing.slices import load_slices
from iusynth.synthesis.synthesizers import Synthesizer, synthesise_stack

from .conftest import defaults, merged_config

SETTINGS = defaults(
    jobs.virtual_sweep,
    max_planes=40,
    plane_spacing_mm=1.0,
    jitter_mm=2.0,
    margin_mm=3.0,
    size=(96, 96),
    spacing_mm=1.0,
    sector_angle_deg=70.0,
    depth_mm=60.0,
    clip_percentile=99.95,
    seed=0,
)


@pytest.fixture(scope="module")
def upenn_sweep(generated, tmp_path_factory) -> tuple[Path, Path, str]:
    """The sweep of the generated upenn subject: (sweep folder, subject folder, subject)."""
    subject, folder = generated["upenn"]
    output = tmp_path_factory.mktemp("sweeps") / subject.plan.subject
    make_sweeps(SubjectRecord.read(folder), output, SETTINGS)
    return output, folder, subject.plan.subject


def test_settings_read_the_config_section_and_the_slices():
    config = merged_config({"preprocessing": {"slice_size": [64, 64], "spacing_mm": 0.8}})
    settings = jobs.virtual_sweep(config)
    assert settings.size == (64, 64) and settings.spacing_mm == 0.8  # planes like the slices
    assert settings.max_planes == config["segmentation"]["sweeps"]["max_planes"]
    bad = merged_config({"segmentation": {"sweeps": {"sector_angle_deg": 200}}})
    with pytest.raises(ConfigError, match=r"segmentation\.sweeps.*out of range"):
        jobs.virtual_sweep(bad)


def test_stack_opens_like_a_training_stack(upenn_sweep):
    output, _, subject = upenn_sweep
    stack = load_slices(output)
    planes = stack.images.shape[0]
    assert stack.images.dtype == np.float32 and stack.images.shape == (planes, 4, 96, 96)
    assert stack.fov.dtype == bool and stack.fov.shape == (planes, 96, 96)
    assert stack.labels["tumor-MR"].dtype == np.uint8
    assert set(np.unique(stack.labels["tumor-MR"])) <= {0, 1}
    assert stack.meta["subject"] == subject and stack.meta["slice_indices"] == list(range(planes))
    assert stack.present.tolist() == [False, True, True, True]
    images = np.asarray(stack.images, np.float32)
    assert (images[:, 0] == -1).all()
    assert images.min() >= -1 and images.max() <= 1
    for channel in (1, 2, 3):  # normalised in the fan, as the demo's training slices
        assert images[:, channel][stack.fov].max() == pytest.approx(1.0, abs=1e-3)
        assert (images[:, channel][~stack.fov] == -1).all()
    assert 0 < planes <= SETTINGS.max_planes
    offsets = np.diff([p["offset_mm"] for p in stack.meta["sweep"]["planes"]])
    np.testing.assert_allclose(offsets, SETTINGS.plane_spacing_mm)


def test_planes_near_the_centroid_cut_the_tumour(upenn_sweep):
    stack = load_slices(upenn_sweep[0])
    offsets = np.array([p["offset_mm"] for p in stack.meta["sweep"]["planes"]])
    near = np.abs(offsets) <= 2 * SETTINGS.plane_spacing_mm
    assert near.sum() >= 3
    tumour_pixels = np.asarray(stack.labels["tumor-MR"]).sum(axis=(1, 2))
    assert (tumour_pixels[near] > 50).all()
    # the tumour is in the fan's far half at most: the probe sits on the nearest surface
    assert tumour_pixels.max() > 200


def test_labels_are_the_3d_labels_at_the_same_world_points(upenn_sweep):
    output, folder, subject = upenn_sweep
    stack = load_slices(output)
    labels = nib.load(layout.subject_file(folder, subject, "tumor-MR"))
    data = np.asarray(labels.dataobj)
    inverse = np.linalg.inv(labels.affine)
    sweep = stack.meta["sweep"]
    mismatches = 0
    for k, plane in enumerate(sweep["planes"]):
        world = plane_world_points(plane, SETTINGS.size, sweep["spacing_mm"])
        voxels = np.rint(world @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
        inside = np.all((voxels >= 0) & (voxels < data.shape), axis=-1)
        expected = np.zeros(SETTINGS.size, np.uint8)
        expected[inside] = data[tuple(voxels[inside].T)]
        expected[~stack.fov[k]] = 0
        mismatches += int((expected != stack.labels["tumor-MR-brats"][k]).sum())
        assert ((expected > 0) == stack.labels["tumor-MR"][k]).mean() > 0.999
    assert mismatches <= 1e-4 * stack.fov.size  # only ties at exactly half a voxel
    # the regular grid and the per-plane geometry agree
    affine = np.asarray(stack.meta["grid_affine"])
    last = sweep["planes"][-1]
    corner = affine @ [95, 95, len(sweep["planes"]) - 1, 1]
    np.testing.assert_allclose(corner[:3], plane_world_points(last, (96, 96), 1.0)[95, 95])


def test_fan_has_the_configured_apex_angle_and_depth(upenn_sweep):
    stack = load_slices(upenn_sweep[0])
    sweep = stack.meta["sweep"]
    depth = np.asarray(sweep["depth_direction"])
    half_angle = np.radians(SETTINGS.sector_angle_deg / 2)
    for k in (0, len(sweep["planes"]) // 2, len(sweep["planes"]) - 1):
        plane = sweep["planes"][k]
        world = plane_world_points(plane, SETTINGS.size, SETTINGS.spacing_mm)
        apex = np.asarray(plane["apex_ras_mm"])
        axes = np.stack([plane["axis0"], plane["axis1"]])
        # the apex lies in the plane, inside the pixel grid
        apex_pixel = (apex - np.asarray(plane["origin_ras_mm"])) @ axes.T / SETTINGS.spacing_mm
        assert abs((apex - np.asarray(plane["origin_ras_mm"])) @ np.cross(*axes)) < 1e-6
        assert np.all((apex_pixel >= 0) & (apex_pixel <= 95))
        offset = world[stack.fov[k]] - apex
        radius = np.linalg.norm(offset, axis=1)
        angle = np.arccos(np.clip(offset @ depth / np.maximum(radius, 1e-9), -1, 1))
        assert radius.max() <= SETTINGS.depth_mm and radius.max() > SETTINGS.depth_mm - 1.5
        assert angle.max() <= half_angle and angle.max() > half_angle - np.radians(3)
        # pixels just outside the fan are out of the field of view
        outside = world[~stack.fov[k]] - apex
        outside_radius = np.linalg.norm(outside, axis=1)
        outside_angle = np.arccos(
            np.clip(outside @ depth / np.maximum(outside_radius, 1e-9), -1, 1)
        )
        assert np.all((outside_radius > SETTINGS.depth_mm) | (outside_angle > half_angle))


def test_layout_matches_the_training_slices(generated, tmp_path):
    """Depth runs along the same image axis, probe on the same side, as in training slices."""
    subject, folder = generated["remind"]
    name = subject.plan.subject
    make_sweeps(SubjectRecord.read(folder), tmp_path / "sweep", SETTINGS)
    sweep = load_slices(tmp_path / "sweep")

    # the training slice stack's field of view, built as preprocessing does (headers only)
    us = nib.load(layout.subject_file(folder, name, "US"))
    native = ultrasound_fov(np.asarray(us.dataobj))
    grid = fov_grid(us.affine, native, SETTINGS.spacing_mm, SETTINGS.size)
    training = np.moveaxis(resample(native, us.affine, grid, np.eye(4), order=1) > 0.5, 2, 0)
    training = training[training.any(axis=(1, 2))]

    for axis in (1, 2):  # mean field of view along rows, then along columns
        ours = np.asarray(sweep.fov).mean(axis=(0, 3 - axis))
        theirs = training.mean(axis=(0, 3 - axis))
        assert np.corrcoef(ours, theirs)[0, 1] > 0.8

    # depth direction in the image: apex -> centre of the field of view
    def image_depth(fov: np.ndarray, apex_pixel: np.ndarray) -> np.ndarray:
        centre = np.argwhere(fov).mean(axis=0)[1:]
        return (centre - apex_pixel) / np.linalg.norm(centre - apex_pixel)

    probe = np.asarray(subject.truth["probe"]["apex_ras_mm"])
    training_apex = (np.linalg.inv(grid.affine) @ [*probe, 1])[:2]
    plane = sweep.meta["sweep"]["planes"][len(sweep.meta["sweep"]["planes"]) // 2]
    axes = np.stack([plane["axis0"], plane["axis1"]])
    ours_apex = (np.asarray(plane["apex_ras_mm"]) - plane["origin_ras_mm"]) @ axes.T
    cosine = image_depth(np.asarray(sweep.fov), ours_apex / SETTINGS.spacing_mm) @ image_depth(
        training, training_apex
    )
    assert cosine > 0.9


def test_sweeps_follow_the_normalisation_region_of_the_training_slices(generated, tmp_path):
    _, folder = generated["upenn"]
    whole = dataclasses.replace(SETTINGS, normalisation_region="grid")  # the authors'
    make_sweeps(SubjectRecord.read(folder), tmp_path / "sweep", whole)
    stack = load_slices(tmp_path / "sweep")
    t2 = np.asarray(stack.images[:, 1], np.float32)
    assert t2.max() == pytest.approx(1.0, abs=1e-3) and (t2[~stack.fov] > -1).any()


def test_a_missing_sequence_is_blank_and_not_present(generated, tmp_path):
    subject, folder = generated["upenn"]
    name = subject.plan.subject
    copy = tmp_path / name
    shutil.copytree(folder, copy)
    layout.subject_file(copy, name, "FLAIR").unlink()
    make_sweeps(SubjectRecord.read(copy), tmp_path / "sweep", SETTINGS)
    stack = load_slices(tmp_path / "sweep")
    assert stack.present.tolist() == [False, True, True, False]
    assert (np.asarray(stack.images[:, 3]) == -1).all()
    assert (np.asarray(stack.images[:, 1])[np.asarray(stack.fov)] > -1).any()


def test_sweeps_are_deterministic_for_a_seed(upenn_sweep, tmp_path):
    output, folder, _ = upenn_sweep
    make_sweeps(SubjectRecord.read(folder), tmp_path / "again", SETTINGS)
    for file in ("images.npy", "fov.npy", "tumor-MR.npy"):
        np.testing.assert_array_equal(np.load(output / file), np.load(tmp_path / "again" / file))
    other = dataclasses.replace(SETTINGS, seed=1)
    meta = make_sweeps(SubjectRecord.read(folder), tmp_path / "other", other)
    first = load_slices(output).meta["sweep"]["planes"][0]["apex_ras_mm"]
    assert meta["sweep"]["planes"][0]["apex_ras_mm"] != first


class _MeanSynthesizer(Synthesizer):
    """A stand-in model: every target is the mean of the observed channels."""

    stochastic = False

    def targets(self, inputs: tuple[str, ...]) -> tuple[str, ...]:
        return ("US",)

    def __call__(self, images, observed, fov, temperature):
        mean = (images * observed[:, :, None, None]).sum(1) / observed.sum(1)[:, None, None]
        return {"US": torch.where(fov, mean, -torch.ones_like(mean))}


def test_synthesis_runs_on_the_sweep(upenn_sweep):
    stack = load_slices(upenn_sweep[0])
    positions = np.arange(0, stack.images.shape[0], 7)
    result = synthesise_stack(_MeanSynthesizer(), stack, ("T2", "ceT1", "FLAIR"), 0.0, 1, positions)
    assert result["US"].shape == (1, len(positions), 96, 96) and result["US"].max() > 0


def test_bad_subjects_get_clear_errors(generated, tmp_path):
    subject, folder = generated["upenn"]
    name = subject.plan.subject
    copy = tmp_path / name
    shutil.copytree(folder, copy)
    labels = layout.subject_file(copy, name, "tumor-MR")
    image = nib.load(labels)
    data = np.asarray(image.dataobj)
    nib.save(nib.Nifti1Image(np.zeros_like(data), image.affine), labels)
    with pytest.raises(ValueError, match=r"tumor-MR\.nii\.gz are empty"):
        make_sweeps(SubjectRecord.read(copy), tmp_path / "out", SETTINGS)
    shifted = image.affine.copy()
    shifted[:3, 3] += 500.0
    nib.save(nib.Nifti1Image(data, shifted), labels)
    with pytest.raises(ValueError, match="do not match the grid"):
        make_sweeps(SubjectRecord.read(copy), tmp_path / "out", SETTINGS)
    labels.unlink()
    with pytest.raises(FileNotFoundError, match=r"no tumour labels: .*tumor-MR\.nii\.gz"):
        make_sweeps(SubjectRecord.read(copy), tmp_path / "out", SETTINGS)
    for sequence in modalities.MR_SEQUENCES:
        layout.subject_file(copy, name, sequence).unlink()
    with pytest.raises(FileNotFoundError, match="no MR sequence"):
        make_sweeps(SubjectRecord.read(copy), tmp_path / "out", SETTINGS)
    assert not (tmp_path / "out").exists()
