"""The registration experiment: rigid fit, TRE, simulated displacements, reg_aladin from an
initial transform, synthetic volumes, the per-subject run, its table and figure."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from iusynth import jobs
from iusynth.core import layout
from iusynth.core.fileio import save_nifti
from iusynth.core.geometry import apply_transform, rigid_transform, rotation_matrix
from iusynth.core.settings import ConfigError
from iusynth.core.subject import SubjectRecord, check_header
from iusynth.core.tags import LandmarkPairs, read_tag_file, write_tag_file
from iusynth.experiments.registration_tre import experiment as rx
from iusynth.model.network import MMHVAE
from iusynth.preprocessing.pipeline import (
    fov_grid,
    read_alignment_record,
    resample,
    ultrasound_fov,
)
from iusynth.reporting import PAPER_RESULTS_FILE as PAPER_RESULTS
from iusynth.reporting.tables import (
    read_paper_results,
    registration_latex,
    registration_markdown,
    registration_table,
    tre_table,
)

from .conftest import defaults, merged_config
from .test_model import TINY
from .test_synthesis import write_stack


def experiment(**replace) -> rx.ExperimentSettings:
    """The default config's experiment settings; registration fields replaced by name too."""
    settings = defaults(jobs.registration_experiment)
    nested = {k: replace.pop(k) for k in list(replace) if hasattr(settings.registration, k)}
    registration = dataclasses.replace(settings.registration, **nested)
    return dataclasses.replace(settings, registration=registration, **replace)


def random_rigid(rng: np.random.Generator, degrees: float, shift_mm: float) -> np.ndarray:
    rotation = rotation_matrix(rng.normal(size=3), np.deg2rad(degrees))
    return rigid_transform(rotation, rng.normal(size=3) * shift_mm, np.zeros(3))


def rotation_angle_deg(matrix: np.ndarray) -> float:
    cosine = np.clip((np.trace(matrix[:3, :3]) - 1) / 2, -1, 1)
    return float(np.rad2deg(np.arccos(cosine)))


# --- rigid fit and TRE -----------------------------------------------------------------


def test_tre_of_identity_is_zero_and_kabsch_recovers_a_rigid_transform():
    rng = np.random.default_rng(3)
    us_points = rng.uniform(-30, 30, (8, 3))
    assert rx.tre(np.eye(4), us_points, us_points) == 0
    truth = random_rigid(rng, 25.0, 20.0)
    mr_points = apply_transform(truth, us_points)
    fitted = rx.rigid_fit(us_points, mr_points)
    np.testing.assert_allclose(fitted, truth, atol=1e-9)
    assert rx.tre(fitted, us_points, mr_points) < 1e-9
    errors = rx.target_registration_errors(
        np.eye(4), us_points, us_points + np.array([3.0, 4.0, 0.0])
    )
    np.testing.assert_allclose(errors, 5.0)
    # a reflection fits the points better but is not rigid
    mirrored = us_points * [-1.0, 1.0, 1.0]
    assert np.linalg.det(rx.rigid_fit(us_points, mirrored)[:3, :3]) == pytest.approx(1.0)


def test_rigid_fit_refuses_too_few_or_collinear_points():
    with pytest.raises(ValueError, match="at least 3"):
        rx.rigid_fit(np.zeros((2, 3)), np.zeros((2, 3)))
    line = np.outer(np.arange(5.0), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="one line"):
        rx.rigid_fit(line, line)


# --- simulated displacements -----------------------------------------------------------


def test_displacements_fall_in_their_bin_and_rotate_about_the_landmark_centroid():
    points = np.random.default_rng(0).uniform(-25, 25, (10, 3)) + np.array([40.0, -30.0, 20.0])
    centre = points.mean(axis=0)
    for seed in range(60):
        rng = np.random.default_rng(seed)
        for low, high in [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 16.0)]:
            d = rx.simulate_displacement(points, low, high, 10.0, rng)
            moved = np.linalg.norm(apply_transform(d.matrix, points) - points, axis=1).mean()
            assert low <= moved < high
            assert moved == pytest.approx(d.displacement_mm, abs=1e-9)
            shift = apply_transform(d.matrix, centre)[0] - centre
            assert np.linalg.norm(shift) == pytest.approx(d.translation_mm, abs=1e-6)
            assert rotation_angle_deg(d.matrix) == pytest.approx(d.rotation_deg, abs=1e-6)
            assert d.rotation_deg <= 10.0 + 1e-9
            np.testing.assert_allclose(d.matrix[:3, :3] @ d.matrix[:3, :3].T, np.eye(3), atol=1e-12)


def test_displacements_are_seeded_per_subject_and_shared_by_methods():
    points = np.random.default_rng(1).uniform(-20, 20, (6, 3))
    settings = experiment(bins_mm=(0.0, 5.0, 10.0), per_bin=4, seed=7)
    first = rx.simulate_displacements(points, settings, "Case-1")
    again = rx.simulate_displacements(points, settings, "Case-1")
    other = rx.simulate_displacements(points, settings, "Case-2")
    assert len(first) == 8
    assert [d.bin_label for d in first] == ["0-5"] * 4 + ["5-10"] * 4
    assert [d.repeat for d in first] == [0, 1, 2, 3] * 2
    assert all(np.array_equal(a.matrix, b.matrix) for a, b in zip(first, again, strict=True))
    assert not np.allclose(first[0].matrix, other[0].matrix)


# --- settings --------------------------------------------------------------------------


def test_settings_come_from_the_config_and_bad_values_name_their_key():
    section = {"per_bin": 3, "registration": {"levels": 2, "levels_performed": 1}}
    config = merged_config({"registration_experiment": {"experiment": section}})
    settings = jobs.registration_experiment(config, threads=2)
    assert settings.per_bin == 3 and settings.bins_mm == (0.0, 4.0, 8.0, 12.0, 16.0)
    assert settings.bins == [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 16.0)]
    direct = settings.registration.options("direct")
    assert (direct.levels, direct.levels_performed, direct.threads) == (2, 1, 2)
    assert direct.transform == "rigid" and direct.reference_smoothing_mm == 2.0
    assert settings.registration.options("synthesis").reference_smoothing_mm == 0.0
    key = "registration_experiment.experiment"
    for bad, word in (({"bins_mm": [12, 8]}, "bins_mm"), ({"sequences": ["T1"]}, "sequences")):
        config = merged_config({"registration_experiment": {"experiment": bad}})
        with pytest.raises(ConfigError, match=rf"config key '{key}\.{word}'"):
            jobs.registration_experiment(config)


# --- reg_aladin from an initial transform ----------------------------------------------


def smooth_volume(shape=(48, 48, 48), seed=0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=shape)
    volume = ndimage.gaussian_filter(noise, 3.0)
    return ((volume - volume.min()) / np.ptp(volume) * 1000).astype(np.int16)


def test_reg_aladin_from_an_initial_transform_recovers_a_displacement(tmp_path):
    from iusynth.preprocessing.registration import reg_aladin

    # the floating copy sits far (25 mm, 12 degrees) from the reference: only an initial
    # transform with the right convention (reference world -> floating world) leaves
    # block matching a few mm to recover
    rng = np.random.default_rng(2)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = -36.0
    volume = smooth_volume()
    truth = rigid_transform(
        rotation_matrix([1.0, 2.0, 0.5], np.deg2rad(12)), [25, -10, 5], np.zeros(3)
    )
    save_nifti(tmp_path / "reference.nii.gz", volume, affine)
    save_nifti(tmp_path / "floating.nii.gz", volume, truth @ affine)
    points = rng.uniform(-15, 15, (8, 3))
    mr_points = apply_transform(truth, points)
    perturbation = rx.simulate_displacement(points, 5.0, 8.0, 5.0, rng)
    start = truth @ perturbation.matrix
    assert 5.0 <= rx.tre(start, points, mr_points) < 8.0
    options = experiment(levels=2).registration.options("synthesis")
    result = reg_aladin(
        tmp_path / "reference.nii.gz", tmp_path / "floating.nii.gz", options, initial=start
    )
    print(f"reg_aladin (48^3 voxels): {result.seconds:.2f} s")
    assert rx.tre(result.matrix, points, mr_points) < 1.0


# --- synthetic volumes -----------------------------------------------------------------


def test_synthetic_volume_fills_the_field_of_view_of_the_stack_grid(tmp_path):
    stack_dir = write_stack(tmp_path / "stacks" / "Case-x", 4, present=(True, False, True, True))
    fov = np.load(stack_dir / "fov.npy")
    fov[:, :8] = False  # part of every slice outside the view
    np.save(stack_dir / "fov.npy", fov)
    model_path = tmp_path / "model.pt"
    torch.manual_seed(0)
    model = MMHVAE(TINY)
    torch.save({"model_config": dataclasses.asdict(TINY), "model": model.state_dict()}, model_path)
    output = tmp_path / "synthetic" / "Case-x_ceT1.nii.gz"
    rx.synthesise_volumes(model_path, stack_dir, {"ceT1": output}, 0.0, device="cpu")
    image = nib.load(output)
    data = np.asarray(image.dataobj)
    assert image.shape == (32, 32, 10) and data.dtype == np.uint8
    np.testing.assert_allclose(image.affine, np.diag([0.5, 0.5, 0.5, 1.0]))
    assert data[:, :, [0, 1, 8, 9]].max() == 0  # grid slices without a view
    assert data[:8].max() == 0 and data[8:, :, 2:8].max() > 0
    again = tmp_path / "again.nii.gz"
    rx.synthesise_volumes(model_path, stack_dir, {"ceT1": again}, 0.0, device="cpu")
    assert np.array_equal(np.asarray(nib.load(again).dataobj), data)  # tau 0: deterministic
    no_us = write_stack(tmp_path / "stacks" / "Case-y", 5, present=(False, True, True, True))
    with pytest.raises(ValueError, match="Case-y has no iUS"):
        rx.synthesise_volumes(model_path, no_us, {"ceT1": tmp_path / "y.nii.gz"}, 0.0, "cpu")


# --- the per-subject experiment --------------------------------------------------------


def write_alignment(path: Path, subject: str, reference: str, transforms: dict) -> Path:
    record = {"subject": subject, "reference_sequence": reference, "transforms": transforms}
    path.write_text(json.dumps(record | {"seconds": {}}))
    return path


def perfect_synthesis(subject_dir: Path, subject: str, sequence: str, output: Path) -> Path:
    """The real MR resampled into a 1 mm iUS field-of-view grid through the landmark fit:
    a stand-in for a perfect synthesizer (only the plumbing is tested with it)."""
    us_image = check_header(layout.subject_file(subject_dir, subject, "US"))
    fov = ultrasound_fov(np.asarray(us_image.dataobj))
    grid = fov_grid(us_image.affine, fov, 1.0, (96, 96))
    pairs = read_tag_file(layout.subject_file(subject_dir, subject, "landmarks"))
    truth = rx.rigid_fit(pairs.second, pairs.first)
    mr = check_header(layout.subject_file(subject_dir, subject, sequence))
    volume = resample(np.asarray(mr.dataobj), mr.affine, grid, truth, order=1)
    in_view = resample(fov, us_image.affine, grid, np.eye(4), order=1) > 0.5
    scaled = np.clip(volume / np.percentile(volume[in_view], 99.5), 0, 1) * 255
    save_nifti(output, np.where(in_view, scaled, 0).astype(np.uint8), grid.affine)
    return output


def test_subject_experiment_runs_both_methods_from_the_same_starts(generated, tmp_path):
    _, folder = generated["resect"]
    subject = folder.name
    alignment = write_alignment(tmp_path / "align.json", subject, "ceT1", {})
    synthetic = {"ceT1": perfect_synthesis(folder, subject, "ceT1", tmp_path / "syn.nii.gz")}
    settings = experiment(
        bins_mm=(6.0, 8.0), per_bin=1, sequences=("T2", "ceT1"), levels=3, levels_performed=2
    )
    frame = rx.run_subject(SubjectRecord.read(folder), alignment, synthetic, settings)
    print(frame[["method", "initial_tre_mm", "final_tre_mm", "seconds"]].to_string())
    assert list(frame.columns) == list(rx.CASE_COLUMNS)
    assert len(frame) == 2 and set(frame["sequence"]) == {"ceT1"}  # no T2 in RESECT
    assert sorted(frame["method"]) == ["direct", "synthesis"]
    assert frame["initial_tre_mm"].nunique() == 1 and frame["rotation_deg"].nunique() == 1
    assert frame["displacement_mm"].between(6.0, 8.0).all()
    numbers = frame.select_dtypes("number")
    assert np.isfinite(numbers.to_numpy()).all()
    assert (frame["ground_truth_tre_mm"] < 1e-3).all()  # demo landmarks are exact
    assert (frame["final_tre_mm"] < frame["initial_tre_mm"]).all()

    table = tre_table(frame)
    assert set(table["method"]) == {"direct", "synthesis"} and (table["n"] == 1).all()
    rx.plot_tre(frame, tmp_path / "tre.png")
    assert (tmp_path / "tre.png").stat().st_size > 1000


def fake_subject(folder: Path, subject: str, points: int, annotated: str | None) -> Path:
    """A subject folder with empty MR files, landmarks and maybe an annotation sequence."""
    folder.mkdir(parents=True)
    for sequence in ("ceT1", "FLAIR"):
        layout.subject_file(folder, subject, sequence).touch()
    rng = np.random.default_rng(0)
    first = rng.uniform(-20, 20, (points, 3))
    labels = tuple(f"L{i}" for i in range(points))
    write_tag_file(
        layout.subject_file(folder, subject, "landmarks"),
        LandmarkPairs(first, first + 2.0, labels),
    )
    if annotated:
        layout.subject_file(folder, subject, "source").write_text(
            json.dumps({"annotation_sequence": annotated})
        )
    return folder


def test_landmarks_reach_each_sequence_through_the_mr_alignment(tmp_path):
    folder = fake_subject(tmp_path / "Case-a", "Case-a", 5, annotated="FLAIR")
    to_flair = random_rigid(np.random.default_rng(4), 5.0, 3.0)
    us_points, mr_points = rx.sequence_landmarks(
        SubjectRecord.read(folder), "ceT1", {"FLAIR": to_flair}
    )
    pairs_first = us_points - 2.0
    np.testing.assert_allclose(mr_points["FLAIR"], pairs_first, atol=1e-4)
    np.testing.assert_allclose(
        mr_points["ceT1"], apply_transform(np.linalg.inv(to_flair), pairs_first), atol=1e-4
    )


def test_bad_inputs_are_refused_with_the_file_named(generated, tmp_path):
    few = fake_subject(tmp_path / "Case-b", "Case-b", 2, annotated=None)
    with pytest.raises(ValueError, match=r"Case-b_landmarks\.tag: 2 landmark pairs"):
        rx.sequence_landmarks(SubjectRecord.read(few), "ceT1", {})
    bare = tmp_path / "Case-c"
    bare.mkdir()
    with pytest.raises(FileNotFoundError, match=r"Case-c_landmarks\.tag is missing"):
        rx.sequence_landmarks(SubjectRecord.read(bare), "ceT1", {})

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is unreadable"):
        read_alignment_record(bad, "Case-b")
    other = write_alignment(tmp_path / "other.json", "Case-z", "ceT1", {})
    with pytest.raises(ValueError, match=r"other\.json is for 'Case-z'"):
        read_alignment_record(other, "Case-b")
    broken = write_alignment(tmp_path / "broken.json", "Case-b", "ceT1", {"FLAIR": [[1, 0]]})
    with pytest.raises(ValueError, match=r"broken\.json: transform 'FLAIR'"):
        read_alignment_record(broken, "Case-b")

    _, folder = generated["resect"]
    subject = folder.name
    alignment = write_alignment(tmp_path / "align.json", subject, "ceT1", {})
    only_t2 = experiment(sequences=("T2",))
    with pytest.raises(FileNotFoundError, match=f"{subject}_T2.nii.gz"):
        rx.run_subject(SubjectRecord.read(folder), alignment, {}, only_t2)
    with pytest.raises(FileNotFoundError, match="no synthetic ceT1 volume"):
        rx.run_subject(SubjectRecord.read(folder), alignment, {}, experiment())


# --- table and figure ------------------------------------------------------------------


def test_tre_table_aggregates_per_sequence_method_and_bin_with_paper_numbers(tmp_path):
    rows = []
    for method, final in (("direct", [3.0, 5.0, 10.0]), ("synthesis", [1.0, 2.0, 3.0])):
        for repeat, value in enumerate(final):
            rows.append(
                {
                    "subject": f"S{repeat % 2}",
                    "sequence": "ceT1",
                    "method": method,
                    "bin": "8-12",
                    "bin_low_mm": 8.0,
                    "bin_high_mm": 12.0,
                    "repeat": repeat,
                    "initial_tre_mm": 9.0 + repeat,
                    "final_tre_mm": value,
                    "seconds": 2.0,
                }
            )
    frame = pd.DataFrame(rows)
    paper = pd.DataFrame(
        {
            "sequence": ["ceT1"] * 2,
            "method": list(rx.METHODS),
            "bin": "8-12",
            "paper_tre_mm": [14.6, 3.2],
        }
    )
    table = tre_table(frame, paper)
    direct = table.set_index("method").loc["direct"]
    assert direct["n"] == 3 and direct["subjects"] == 2
    assert direct["final_tre_mean_mm"] == pytest.approx(6.0)
    assert direct["final_tre_median_mm"] == 5.0
    assert direct["initial_tre_mean_mm"] == pytest.approx(10.0)
    assert direct["final_tre_std_mm"] == pytest.approx(np.std([3, 5, 10], ddof=1))
    assert table.set_index("method").loc["synthesis", "paper_tre_mm"] == 3.2
    rx.plot_tre(frame, tmp_path / "tre.png")
    assert (tmp_path / "tre.png").stat().st_size > 1000

    # Table 3 reads the paper's numbers from the shipped table, with the gap to ours
    shipped = read_paper_results(PAPER_RESULTS)
    table3 = registration_table(frame, shipped)
    direct = table3.set_index("method").loc["direct"]
    assert direct["paper_tre_mm"] == 14.6 and direct["gap_tre_mm"] == pytest.approx(6.0 - 14.6)
    markdown = registration_markdown(table3)
    assert "| 8-12 mm | 3 | 10.00 | 6.00 (5.00) | 2.00 (2.00) | 14.6 → 3.2 |" in markdown
    latex = registration_latex(table3)
    assert "8-12 mm & 3 & 10.00 & 6.00 (5.00) & 2.00 (2.00) & 14.6 $\\rightarrow$ 3.2 \\\\" in latex
    assert "No subject" in registration_markdown(registration_table(frame.iloc[:0], shipped))
