"""Generate one demo subject, end to end, into the canonical layout.

Per subject: a random smooth deformation of the MNI anatomy with the mass effect of a
glioma; the glioma's tissues; the MR sequences of the subject's plan; for cohorts with
ultrasound, a simulated iUS acquisition over a craniotomy near the tumour, stored in its
own grid whose header is misaligned from the MR by a known rigid transform (as tracking
error and brain shift do); landmark pairs and tumour labels in both spaces; every image
also without its noise (``<kind>-clean``: MR before bias and noise, iUS before speckle),
the target of the skill measure; the true registration as an ITK transform
(``<subject>_US-to-MR.tfm``); and a ``truth.json`` with everything the simulation knows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from iusynth.cohorts.demo.anatomy import (
    Anatomy,
    load_mni_anatomy,
    mass_effect_displacement,
    random_displacement,
    warp,
)
from iusynth.cohorts.demo.mri import clean_mr, synthesize_mr
from iusynth.cohorts.demo.plan import DemoSubjectPlan
from iusynth.cohorts.demo.settings import DemoSettings
from iusynth.cohorts.demo.tumour import (
    brain_depth,
    brats_labels,
    choose_tumour,
    tumour_core_mask,
    tumour_maps,
)
from iusynth.cohorts.demo.ultrasound import (
    ProbeGeometry,
    UltrasoundVolume,
    acoustic_maps,
    place_probe,
    sector_grid,
    simulate_ultrasound,
)
from iusynth.core import layout
from iusynth.core.fileio import atomic_directory, save_nifti, write_json
from iusynth.core.geometry import (
    apply_transform,
    rigid_transform,
    rotation_matrix,
    unit,
    voxel_to_world,
)
from iusynth.core.itk_transforms import write_itk_affine
from iusynth.core.tags import LandmarkPairs, write_tag_file

DEMO_MR_WORLD = "MR"  # the name of the world a demo subject's MR sequences share


@dataclass
class SimulatedSubject:
    """Everything generated for one subject, in memory."""

    plan: DemoSubjectPlan
    mr_affine: np.ndarray
    tissues: dict[str, np.ndarray]
    brats: np.ndarray
    mr: dict[str, np.ndarray]
    mr_clean: dict[str, np.ndarray]  # the sequences before bias and noise
    truth: dict[str, Any]
    ultrasound: UltrasoundVolume | None = None
    us_header_affine: np.ndarray | None = None
    us_tumour: np.ndarray | None = None
    landmarks: LandmarkPairs | None = None


@functools.lru_cache(maxsize=2)
def _template(spacing_mm: float) -> Anatomy:
    """The MNI anatomy, loaded once per process and spacing."""
    return load_mni_anatomy(spacing_mm)


def random_misalignment(
    rng: np.random.Generator,
    centre: np.ndarray,
    max_rotation_deg: float,
    translation_mm: tuple[float, float],
) -> np.ndarray:
    """A random rigid map: rotation up to ``max_rotation_deg`` about ``centre``, then a shift."""
    rotation = rotation_matrix(
        unit(rng.standard_normal(3)), np.radians(rng.uniform(0, max_rotation_deg))
    )
    shift = unit(rng.standard_normal(3)) * rng.uniform(*translation_mm)
    return rigid_transform(rotation, shift, centre)


def choose_landmarks(
    saliency: np.ndarray,
    affine: np.ndarray,
    geometry: ProbeGeometry,
    rng: np.random.Generator,
    count: int,
    min_distance_mm: float = 6.0,
) -> np.ndarray:
    """Pick up to ``count`` salient voxel centres inside the sector, spread apart (N x 3 world)."""
    sector_affine, sector_shape = sector_grid(geometry, float(np.linalg.norm(affine[:3, 0])))
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * (
        np.array(sector_shape) - 1
    )
    box = apply_transform(np.linalg.inv(affine) @ sector_affine, corners)
    lo = np.clip(np.floor(box.min(axis=0)).astype(int), 0, saliency.shape)
    hi = np.clip(np.ceil(box.max(axis=0)).astype(int) + 1, 0, saliency.shape)
    indices = np.argwhere(np.ones(tuple(hi - lo), bool)) + lo
    world = voxel_to_world(affine, indices)
    inside = geometry.contains(world, margin_mm=5.0, angle_fraction=0.8)
    values = saliency[tuple(indices[inside].T)]
    if values.size == 0:
        raise ValueError("the ultrasound sector holds no voxel of the MR grid")
    candidates = world[inside][values >= np.percentile(values, 90)]
    chosen: list[np.ndarray] = []
    for point in candidates[rng.permutation(len(candidates))]:
        if all(np.linalg.norm(point - other) >= min_distance_mm for other in chosen):
            chosen.append(point)
            if len(chosen) == count:
                break
    if len(chosen) < 3:
        raise ValueError(f"only {len(chosen)} landmarks could be placed in the sector")
    return np.array(chosen)


def simulate_subject(
    plan: DemoSubjectPlan, settings: DemoSettings, template: Anatomy | None = None
) -> SimulatedSubject:
    """Simulate one subject in memory (see the module docstring).

    ``template``: the MNI anatomy at ``settings.mr_spacing_mm`` (the workflow reads it from
    the file the rule prepare_demo_template wrote once); None builds it in this process.
    """
    rng = np.random.default_rng(np.random.SeedSequence(plan.seed_words(settings.seed)))
    if template is None:
        template = _template(settings.mr_spacing_mm)
    elif not np.isclose(template.spacing, settings.mr_spacing_mm):
        raise ValueError(
            f"the template anatomy has {template.spacing} mm voxels, demo.mr_spacing_mm is "
            f"{settings.mr_spacing_mm}: re-run the rule prepare_demo_template"
        )
    spacing, shape, affine = template.spacing, template.shape, template.affine

    spec = choose_tumour(
        brain_depth(template.brain_mask, spacing), template.tissues["wm"], affine, rng, plan.grade
    )
    displacement = random_displacement(
        shape, spacing, rng, settings.deformation_mm, correlation_mm=40.0
    )
    displacement += mass_effect_displacement(
        shape, spacing, np.array(spec.centre_voxel), spec.radius_mm, push_mm=0.35 * spec.radius_mm
    )
    warped = warp(
        {**template.tissues, "brain": template.brain_mask.astype(np.float32)}, displacement
    )
    brain = warped.pop("brain") > 0.5
    tumour = tumour_maps(spec, shape, spacing, brain, warped["wm"], rng)
    remaining = 1.0 - sum(tumour.values())
    tissues = {name: values * remaining for name, values in warped.items()} | tumour
    brats = brats_labels(tumour)

    mr = {
        sequence: synthesize_mr(
            tissues, sequence, spacing, rng, settings.bias_strength, settings.noise_fraction
        )
        for sequence in plan.modalities
        if sequence != "US"
    }
    mr_clean = {sequence: clean_mr(tissues, sequence) for sequence in mr}
    truth: dict[str, Any] = {
        "cohort": plan.cohort,
        "subject": plan.subject,
        "grade": plan.grade,
        "modalities": list(plan.modalities),
        "tumour": {
            "centre_ras_mm": voxel_to_world(affine, np.array(spec.centre_voxel))[0].tolist(),
            "radius_mm": spec.radius_mm,
            "oedema_extent": spec.oedema_extent,
            "calcifications": len(spec.calcifications),
        },
    }
    subject = SimulatedSubject(plan, affine, tissues, brats, mr, mr_clean, truth)
    if "US" in plan.modalities:
        _add_ultrasound(subject, settings, rng, brain)
    return subject


def _add_ultrasound(
    subject: SimulatedSubject, settings: DemoSettings, rng: np.random.Generator, brain: np.ndarray
) -> None:
    """Simulate the iUS acquisition, its misaligned header, US labels and landmarks."""
    affine = subject.mr_affine
    spacing = float(np.linalg.norm(affine[:3, 0]))
    core = tumour_core_mask(subject.brats)
    centroid = voxel_to_world(affine, np.argwhere(core).mean(axis=0))[0]
    geometry = place_probe(brain, affine, centroid, rng, settings.ultrasound)
    echo, attenuation = acoustic_maps(subject.tissues, spacing)
    us = simulate_ultrasound(echo, attenuation, affine, geometry, settings.ultrasound, rng)

    fov_centre = voxel_to_world(us.affine, (np.array(us.bmode.shape) - 1) / 2.0)[0]
    misalignment = random_misalignment(
        rng,
        fov_centre,
        settings.misalignment.max_rotation_deg,
        settings.misalignment.translation_mm,
    )
    header_affine = misalignment @ us.affine

    us_world = voxel_to_world(us.affine, np.indices(us.bmode.shape).reshape(3, -1).T)
    mr_voxels = apply_transform(np.linalg.inv(affine), us_world).T
    us_core = ndimage.map_coordinates(core.astype(np.uint8), mr_voxels, order=0, mode="constant")
    us_tumour = (us_core.reshape(us.bmode.shape) > 0) & us.fov

    mr_points = choose_landmarks(echo, affine, geometry, rng, settings.landmarks_per_subject)
    us_points = apply_transform(misalignment, mr_points)
    labels = tuple(f"L{i + 1}" for i in range(len(mr_points)))

    subject.ultrasound = us
    subject.us_header_affine = header_affine
    subject.us_tumour = us_tumour
    subject.landmarks = LandmarkPairs(mr_points, us_points, labels)
    subject.truth |= {
        "probe": geometry.as_dict(),
        "us_true_affine": us.affine.tolist(),
        "us_header_affine": header_affine.tolist(),
        "us_to_mr_world": np.linalg.inv(misalignment).tolist(),
        "initial_landmark_error_mm": float(
            np.median(np.linalg.norm(us_points - mr_points, axis=1))
        ),
    }


def write_subject(subject: SimulatedSubject, subject_dir: Path) -> None:
    """Write a simulated subject into its folder of the canonical layout, atomically."""
    plan = subject.plan
    role = plan.role

    def path(folder: Path, kind: str) -> Path:
        return layout.subject_file(folder, plan.subject, kind)

    with atomic_directory(subject_dir) as folder:
        for sequence, volume in subject.mr.items():
            save_nifti(path(folder, sequence), volume, subject.mr_affine)
        for sequence, volume in subject.mr_clean.items():
            save_nifti(path(folder, layout.clean_kind(sequence)), volume, subject.mr_affine)
        mr_labels = subject.brats if role.mr_labels == "brats" else tumour_core_mask(subject.brats)
        save_nifti(path(folder, "tumor-MR"), mr_labels.astype(np.uint8), subject.mr_affine)
        if subject.ultrasound is not None:
            save_nifti(path(folder, "US"), subject.ultrasound.bmode, subject.us_header_affine)
            save_nifti(
                path(folder, layout.clean_kind("US")),
                subject.ultrasound.clean,
                subject.us_header_affine,
            )
            # the true registration as an ITK file (iUS onto the MR world every sequence
            # shares), for the given-transforms path (transforms: subject_folders)
            write_itk_affine(
                layout.transform_file(folder, plan.subject, "US", DEMO_MR_WORLD),
                np.linalg.inv(np.asarray(subject.truth["us_to_mr_world"])),
            )
            if role.has_ultrasound_labels:
                save_nifti(
                    path(folder, "tumor-US"),
                    subject.us_tumour.astype(np.uint8),
                    subject.us_header_affine,
                )
            if role.has_landmarks:
                write_tag_file(
                    path(folder, "landmarks"),
                    subject.landmarks,
                    comment=f"{plan.subject}: demo landmarks, MR (first) and US (second), RAS mm",
                )
        write_json(path(folder, "truth"), subject.truth)


def generate_subject(
    plan: DemoSubjectPlan,
    settings: DemoSettings,
    subject_dir: Path,
    template: Anatomy | None = None,
) -> SimulatedSubject:
    """Simulate one subject and write it to ``subject_dir``; returns the in-memory subject."""
    subject = simulate_subject(plan, settings, template)
    write_subject(subject, Path(subject_dir))
    return subject
