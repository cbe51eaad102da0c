"""The demo cohort generator, checked against what it claims to simulate."""

from __future__ import annotations

import argparse
import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage, stats

from iusynth import jobs
from iusynth.cohorts.cli import _demo_template
from iusynth.cohorts.demo.anatomy import read_anatomy
from iusynth.cohorts.demo.generate import generate_subject
from iusynth.cohorts.demo.plan import COHORT_ROLES, plan_cohort
from iusynth.cohorts.demo.settings import DemoCohortSettings
from iusynth.cohorts.demo.ultrasound import (
    ProbeGeometry,
    simulate_ultrasound,
    speckle_envelope,
)
from iusynth.core import layout
from iusynth.core.geometry import apply_transform, voxel_to_world, world_to_voxel
from iusynth.core.subject import SubjectRecord
from iusynth.core.tags import read_tag_file

from .conftest import DEFAULTS, mean_where

RAYLEIGH_MEAN_OVER_STD = np.sqrt(np.pi / (4 - np.pi))  # 1.913


def test_same_seed_gives_same_bytes(generated, micro_config, demo_settings, tmp_path):
    subject, folder = generated["remind"]
    again = tmp_path / subject.plan.subject
    generate_subject(subject.plan, demo_settings, again)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (folder / name).read_bytes() == (again / name).read_bytes(), name


def test_a_subject_from_the_template_file_is_the_one_built_in_process(
    generated, demo_settings, tmp_path
):
    subject, folder = generated["remind"]
    template = tmp_path / "template_anatomy.npz"
    _demo_template(argparse.Namespace(spacing_mm=demo_settings.mr_spacing_mm, output=template))
    again = tmp_path / subject.plan.subject
    generate_subject(subject.plan, demo_settings, again, read_anatomy(template))
    for path in sorted(folder.iterdir()):
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name
    coarser = dataclasses.replace(demo_settings, mr_spacing_mm=2 * demo_settings.mr_spacing_mm)
    with pytest.raises(ValueError, match="prepare_demo_template"):
        generate_subject(subject.plan, coarser, tmp_path / "other", read_anatomy(template))
    template.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=r"template_anatomy\.npz is not a demo template"):
        read_anatomy(template)


def test_other_seed_gives_other_subject(generated, micro_config, demo_settings, tmp_path):
    from dataclasses import replace

    subject, folder = generated["upenn"]
    other = tmp_path / "other"
    generate_subject(subject.plan, replace(demo_settings, seed=demo_settings.seed + 1), other)
    name = layout.subject_file(folder, subject.plan.subject, "T2").name
    assert (folder / name).read_bytes() != (other / name).read_bytes()


@pytest.mark.parametrize("cohort", ["remind", "resect"])
def test_ground_truth_affine_maps_us_landmarks_onto_mr_landmarks(generated, cohort):
    subject, folder = generated[cohort]
    sid = subject.plan.subject
    pairs = read_tag_file(layout.subject_file(folder, sid, "landmarks"))
    truth = json.loads(layout.subject_file(folder, sid, "truth").read_text())
    us_to_mr = np.array(truth["us_to_mr_world"])
    before = np.linalg.norm(pairs.second - pairs.first, axis=1)
    after = np.linalg.norm(apply_transform(us_to_mr, pairs.second) - pairs.first, axis=1)
    assert after.max() < 0.5
    assert np.median(before) > 2.0  # the header really is misaligned
    # and the stored US header is the true grid moved by the inverse of that map
    us_image = nib.load(layout.subject_file(folder, sid, "US"))
    np.testing.assert_allclose(us_to_mr @ us_image.affine, truth["us_true_affine"], atol=1e-4)


@pytest.mark.parametrize("cohort", ["remind", "resect"])
def test_us_tumour_mask_lands_on_mr_tumour_through_the_truth(generated, cohort):
    subject, folder = generated[cohort]
    sid = subject.plan.subject
    us = nib.load(layout.subject_file(folder, sid, "tumor-US"))
    mr = nib.load(layout.subject_file(folder, sid, "tumor-MR"))
    us_to_mr = np.array(
        json.loads(layout.subject_file(folder, sid, "truth").read_text())["us_to_mr_world"]
    )
    us_voxels = np.argwhere(np.asarray(us.dataobj) > 0)
    assert len(us_voxels) > 50, "the sector must show the tumour"
    mr_index = world_to_voxel(
        mr.affine, apply_transform(us_to_mr, voxel_to_world(us.affine, us_voxels))
    )
    hits = ndimage.map_coordinates(np.asarray(mr.dataobj), mr_index.T, order=0)
    assert (hits > 0).mean() > 0.98
    # and through the (wrong) header alone, the masks overlap much less
    naive = world_to_voxel(mr.affine, voxel_to_world(us.affine, us_voxels))
    assert (ndimage.map_coordinates(np.asarray(mr.dataobj), naive.T, order=0) > 0).mean() < 0.95


@pytest.mark.parametrize("cohort", ["remind", "upenn", "resect"])
def test_tumour_labels_lie_inside_the_brain(generated, cohort):
    subject, _ = generated[cohort]
    labelled = subject.brats > 0
    assert labelled.sum() > 50
    outside_brain = subject.tissues["skull"] + subject.tissues["scalp"]
    assert outside_brain[labelled].max() < 0.5
    brain = sum(subject.tissues[name] for name in subject.tissues if name not in ("skull", "scalp"))
    assert brain[labelled].min() > 0.5


def test_brats_labels_of_mr_only_cohort(generated):
    subject, folder = generated["upenn"]
    labels = np.asarray(
        nib.load(layout.subject_file(folder, subject.plan.subject, "tumor-MR")).dataobj
    )
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
    assert {1, 2, 4} <= set(np.unique(labels)), "a high-grade tumour has all three labels"


def test_mr_contrast_ordering(generated):
    subject, _ = generated["upenn"]  # high grade, all three sequences
    t = subject.tissues
    pure = {name: t[name] > 0.9 for name in ("csf", "gm", "wm")}
    pure |= {name: t[name] > 0.6 for name in ("oedema", "enhancing", "necrosis")}
    mean = {
        seq: {name: mean_where(subject.mr[seq], mask) for name, mask in pure.items()}
        for seq in subject.mr
    }
    assert mean["T2"]["csf"] > mean["T2"]["gm"] > mean["T2"]["wm"]
    assert mean["T2"]["oedema"] > mean["T2"]["wm"]
    assert mean["ceT1"]["enhancing"] > mean["ceT1"]["wm"] > mean["ceT1"]["gm"] > mean["ceT1"]["csf"]
    assert mean["ceT1"]["necrosis"] < mean["ceT1"]["enhancing"]
    assert mean["FLAIR"]["oedema"] > mean["FLAIR"]["wm"]
    assert mean["FLAIR"]["csf"] < mean["FLAIR"]["wm"]


def test_ultrasound_tumour_is_hyperechoic(generated):
    subject, _ = generated["remind"]
    us = subject.ultrasound
    tumour, brain = subject.us_tumour, us.fov & ~subject.us_tumour & (us.bmode > 0)
    assert mean_where(us.bmode, tumour) > mean_where(us.bmode, brain) + 10


def test_speckle_envelope_is_rayleigh():
    rng = np.random.default_rng(0)
    envelope = speckle_envelope(np.full((64, 64, 64), 2.0, np.float32), rng, (0.6, 1.5, 2.0))
    ratio = envelope.mean() / envelope.std()
    assert abs(ratio - RAYLEIGH_MEAN_OVER_STD) / RAYLEIGH_MEAN_OVER_STD < 0.05
    assert np.mean(envelope**2) == pytest.approx(4.0, rel=0.05)  # mean square = amplitude**2
    sample = envelope.ravel()[::97]  # thin out: neighbouring samples are correlated
    scale = np.sqrt(np.mean(sample**2) / 2)
    assert stats.kstest(sample, "rayleigh", args=(0, scale)).statistic < 0.05


def _phantom_probe(depth_mm: float = 40.0) -> ProbeGeometry:
    return ProbeGeometry(
        apex=np.array([0.0, 0.0, 0.0]),
        axial=np.array([0.0, 0.0, 1.0]),
        lateral=np.array([1.0, 0.0, 0.0]),
        elevation=np.array([0.0, 1.0, 0.0]),
        depth_mm=depth_mm,
        lateral_half_angle=np.radians(30),
        elevation_half_angle=np.radians(20),
    )


def _phantom_affine() -> np.ndarray:
    affine = np.eye(4)
    affine[:3, 3] = [-40.0, -40.0, -5.0]
    return affine


def test_simulated_envelope_of_homogeneous_tissue_is_rayleigh():
    echo = np.full((81, 81, 60), 0.2, np.float32)
    settings = dataclasses.replace(
        jobs.demo(DEFAULTS).ultrasound, spacing_mm=0.5, depth_mm=40.0, tgc_db_per_mm=0.0
    )
    us = simulate_ultrasound(
        echo,
        np.zeros_like(echo),
        _phantom_affine(),
        _phantom_probe(),
        settings,
        np.random.default_rng(1),
    )
    ratio = us.envelope.mean() / us.envelope.std()
    assert abs(ratio - RAYLEIGH_MEAN_OVER_STD) / RAYLEIGH_MEAN_OVER_STD < 0.08
    assert us.bmode[~us.fov].max() == 0 and us.bmode[us.fov].mean() > 0


def test_depth_attenuation_matches_the_tissue_coefficient():
    echo = np.full((81, 81, 60), 0.2, np.float32)
    attenuation_db_per_mm = 0.3
    settings = dataclasses.replace(
        jobs.demo(DEFAULTS).ultrasound, spacing_mm=0.5, depth_mm=40.0, tgc_db_per_mm=0.0
    )
    us = simulate_ultrasound(
        echo,
        np.full_like(echo, attenuation_db_per_mm),
        _phantom_affine(),
        _phantom_probe(),
        settings,
        np.random.default_rng(2),
    )
    level_db = 10 * np.log10(np.mean(us.envelope**2, axis=(1, 2)))  # power per depth
    slope = np.polyfit(us.depths_mm, level_db, 1)[0]
    assert slope == pytest.approx(-2 * attenuation_db_per_mm, rel=0.1)  # round trip


def test_strong_attenuator_casts_an_acoustic_shadow():
    echo = np.full((81, 81, 60), 0.2, np.float32)
    attenuation = np.full_like(echo, 0.1)
    # a 3 mm ball, 15 mm under the apex on the beam axis
    grid = np.indices(echo.shape).transpose(1, 2, 3, 0) + _phantom_affine()[:3, 3]
    ball = np.linalg.norm(grid - np.array([0.0, 0.0, 15.0]), axis=-1) < 3.0
    attenuation[ball] = 6.0
    settings = dataclasses.replace(
        jobs.demo(DEFAULTS).ultrasound, spacing_mm=0.5, depth_mm=40.0, tgc_db_per_mm=0.0
    )
    us = simulate_ultrasound(
        echo, attenuation, _phantom_affine(), _phantom_probe(), settings, np.random.default_rng(3)
    )
    behind = us.depths_mm > 22
    centre_theta, centre_phi = us.envelope.shape[1] // 2, us.envelope.shape[2] // 2
    shadow = us.envelope[
        behind, centre_theta - 2 : centre_theta + 3, centre_phi - 2 : centre_phi + 3
    ]
    beside = us.envelope[behind, 5:10, centre_phi - 2 : centre_phi + 3]
    assert shadow.mean() < 0.1 * beside.mean()


def test_plan_matches_the_roles_and_fractions():
    def plan(cohort, dataset, subjects, low_grade, missing=0.0):
        return plan_cohort(cohort, dataset, 2023, DemoCohortSettings(subjects, low_grade, missing))

    remind = plan("remind", "remind", 10, 0.3, 0.4)
    assert sum(p.grade == "LGG" for p in remind) == 3
    assert sum(len(p.modalities) == 3 for p in remind) == 4
    assert all("US" in p.modalities for p in remind)
    upenn = plan("upenn", "upenn", 4, 0.0)
    assert all(p.modalities == COHORT_ROLES["upenn"].modalities for p in upenn)
    assert all(p.grade == "LGG" for p in plan("resect", "resect", 3, 1.0))
    assert [p.subject for p in remind] == [
        p.subject for p in plan("remind", "remind", 10, 0.3, 0.4)
    ]
    assert remind[0].subject == "ReMIND-demo001"
    for p in remind:
        layout.check_subject_id(p.subject)
    # a second ReMIND-like cohort: its own draws and subject names
    extra = plan("extra", "remind", 10, 0.3, 0.4)
    assert extra[0].subject == "extra-demo001" and extra[0].role == remind[0].role
    assert [p.modalities for p in extra] != [p.modalities for p in remind]


def test_written_layout_matches_the_role(generated):
    for cohort, (subject, folder) in generated.items():
        entry = SubjectRecord.read(folder, subject.plan.subject).entry
        role = COHORT_ROLES[cohort]
        assert set(entry.available) >= set(subject.plan.modalities)
        assert entry.has("US") == ("US" in role.modalities)
        assert entry.has("landmarks") == role.has_landmarks
        assert entry.has("tumor-US") == role.has_ultrasound_labels
        us_path = layout.subject_file(folder, subject.plan.subject, "US")
        if us_path.is_file():
            assert nib.load(us_path).get_data_dtype() == np.uint8


def test_clean_images_are_the_acquisitions_without_noise(generated):
    subject, folder = generated["remind"]
    name = subject.plan.subject
    us = nib.load(layout.subject_file(folder, name, "US"))
    clean = nib.load(layout.subject_file(folder, name, layout.clean_kind("US")))
    assert clean.shape == us.shape and np.allclose(clean.affine, us.affine)
    bmode, noise_free = np.asarray(us.dataobj, float), np.asarray(clean.dataobj, float)
    fov = subject.ultrasound.fov
    assert not noise_free[~fov].any()
    assert np.corrcoef(bmode[fov], noise_free[fov])[0, 1] > 0.5
    # speckle gone: neighbouring voxels along the beam differ far less
    assert (
        np.abs(np.diff(noise_free, axis=0))[fov[1:]].mean()
        < 0.5 * np.abs(np.diff(bmode, axis=0))[fov[1:]].mean()
    )
    for sequence in subject.mr:
        mr = np.asarray(nib.load(layout.subject_file(folder, name, sequence)).dataobj, float)
        path = layout.subject_file(folder, name, layout.clean_kind(sequence))
        mr_clean = np.asarray(nib.load(path).dataobj, float)
        brain = mr_clean > 100
        assert np.corrcoef(mr[brain], mr_clean[brain])[0, 1] > 0.8
