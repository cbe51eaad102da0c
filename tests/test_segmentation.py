"""nnU-Net segmentation: metrics, dataset export, grouped splits, one tiny fold end to end."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from iusynth import jobs
from iusynth.core.settings import ConfigError
from iusynth.experiments.segmentation import nnunet as seg
from iusynth.experiments.segmentation import nnunet_prediction, scoring
from iusynth.experiments.segmentation import planes as plane_data
from iusynth.reporting import PAPER_RESULTS_FILE as PAPER_RESULTS

from .conftest import defaults, merged_config

NNUNET_VARIABLES = (
    "nnUNet_raw",
    "nnUNet_preprocessed",
    "nnUNet_results",
    "OMP_NUM_THREADS",
    "nnUNet_n_proc_DA",
    "nnUNet_def_n_proc",
)


def box(shape: tuple[int, ...], start: tuple[int, ...], stop: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))] = True
    return mask


def brute_force_assd(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> float:
    """ASSD from all pairwise distances between the two boundaries (same definition)."""
    edges = [np.argwhere(scoring._boundary(m)) * np.asarray(spacing) for m in (a, b)]
    distances = cdist(edges[0], edges[1])
    return float((distances.min(axis=1).sum() + distances.min(axis=0).sum()) / sum(map(len, edges)))


def test_dice_of_overlapping_rectangles() -> None:
    a = box((50, 60), (10, 10), (30, 30))  # 20 x 20 = 400
    b = box((50, 60), (20, 15), (45, 31))  # 25 x 16 = 400
    overlap = (30 - 20) * (30 - 15)  # rows 20..29, columns 15..29
    assert scoring.dice(a, b) == pytest.approx(2 * overlap / 800)
    assert scoring.dice(a, a) == 1.0


def test_dice_of_empty_masks() -> None:
    empty = np.zeros((8, 8), bool)
    assert scoring.dice(empty, empty) == 1.0
    assert scoring.dice(empty, box((8, 8), (2, 2), (4, 4))) == 0.0
    assert scoring.dice(box((8, 8), (2, 2), (4, 4)), empty) == 0.0


def test_assd_of_a_plate_shifted_along_its_normal() -> None:
    # one-voxel plates spanning the array: every voxel is surface, every distance is k * s
    spacing = (0.5, 0.8, 2.0)
    for axis in range(3):
        for k in (1, 3):
            a = np.zeros((12, 10, 9), bool)
            b = np.zeros_like(a)
            a[(slice(None),) * axis + (4,)] = True
            b[(slice(None),) * axis + (4 + k,)] = True
            assert scoring.assd(a, b, spacing) == pytest.approx(k * spacing[axis])
            assert scoring.assd(b, a, spacing) == pytest.approx(k * spacing[axis])


def test_assd_of_a_shifted_box_matches_brute_force() -> None:
    spacing = (0.5, 0.5, 2.0)
    a = box((20, 20, 12), (4, 5, 2), (14, 13, 8))
    b = box((20, 20, 12), (4, 5, 4), (14, 13, 10))  # shifted by 2 slices
    value = scoring.assd(a, b, spacing)
    assert value == pytest.approx(brute_force_assd(a, b, spacing))
    # the shift is 4 mm; side faces within the overlap are at distance 0
    assert 0 < value < 4.0
    assert scoring.assd(a, a, spacing) == 0.0


def test_assd_of_empty_masks() -> None:
    empty = np.zeros((6, 6, 6), bool)
    assert scoring.assd(empty, empty, (1, 1, 1)) == 0.0
    assert math.isnan(scoring.assd(empty, box((6, 6, 6), (1, 1, 1), (3, 3, 3)), (1, 1, 1)))
    with pytest.raises(ValueError, match="spacing"):
        scoring.assd(empty, empty, (1, 1))


def test_case_metrics_row() -> None:
    truth = box((10, 10, 4), (2, 2, 1), (6, 6, 3))
    row = scoring.case_metrics("s1", "mmhvae", "resect", truth, truth, (1.0, 1.0, 1.0))
    assert row.to_dict() == {
        "subject": "s1",
        "method": "mmhvae",
        "set": "resect",
        "dice": 1.0,
        "assd_mm": 0.0,
        "truth_voxels": 32,
        "prediction_voxels": 32,
    }


def test_to_intensity_scales_and_masks() -> None:
    floats = np.array([[[-1.0, 0.0, 1.0, 2.0]]], np.float16)
    assert plane_data.to_intensity(floats).tolist() == [[[0.0, 127.5, 255.0, 255.0]]]
    fov = np.array([[[True, False, True, True]]])
    assert plane_data.to_intensity(np.full((1, 1, 4), 200, np.uint8), fov).tolist() == [
        [[200.0, 0.0, 200.0, 200.0]]
    ]
    with pytest.raises(TypeError):
        plane_data.to_intensity(np.zeros((1, 2, 2), np.int16))


def test_grouped_splits_keep_subjects_together() -> None:
    cases = [f"sub-{s}_{p:04d}" for s in "abcdefg" for p in range(ord(s) % 3 + 2)]
    splits = seg.grouped_splits(cases, folds=3, seed=7)
    assert splits == seg.grouped_splits(list(reversed(cases)), folds=3, seed=7)
    assert len(splits) == 3
    validated = [c for split in splits for c in split["val"]]
    assert sorted(validated) == sorted(cases)  # every case validated exactly once
    for split in splits:
        assert sorted(split["train"] + split["val"]) == sorted(cases)
        train_subjects = {plane_data.subject_of(c) for c in split["train"]}
        assert train_subjects.isdisjoint(plane_data.subject_of(c) for c in split["val"])
    assert plane_data.subject_of("sub_01_0012") == "sub_01"


def test_grouped_splits_need_enough_subjects() -> None:
    cases = [f"s{s}_{p:04d}" for s in range(3) for p in range(5)]
    with pytest.raises(ValueError, match="5 folds need at least 5 subjects"):
        seg.grouped_splits(cases, folds=5, seed=0)


def test_settings_come_from_the_config_and_bad_values_name_their_key() -> None:
    config = merged_config({"segmentation": {"nnunet": {"epochs": 3}}})
    assert jobs.segmenter(config, threads=2).epochs == 3
    key = r"config key 'segmentation\.nnunet\.folds'"
    with pytest.raises(ConfigError, match=rf"{key}: segmentation folds"):
        jobs.segmenter(merged_config({"segmentation": {"nnunet": {"folds": 1}}}))


def disc_planes(
    subject: str, n: int, rng: np.random.Generator, size: int = 64
) -> plane_data.SubjectPlanes:
    """Bright discs (the tumour) on Rayleigh speckle, uint8, 0.5 mm pixels."""
    rows, columns = np.mgrid[:size, :size]
    images = np.empty((n, size, size), np.uint8)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        centre = rng.integers(size // 4, 3 * size // 4, 2)
        radius = rng.integers(size // 10, size // 5)
        disc = (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius**2
        images[i] = np.clip(rng.rayleigh(40, (size, size)) + 120 * disc, 0, 255).astype(np.uint8)
        labels[i] = disc
    return plane_data.SubjectPlanes(subject, images, labels, (0.5, 0.5))


def write_stack(folder: Path, planes: plane_data.SubjectPlanes, slice_indices: list[int]) -> None:
    """A slice stack (see iusynth.preprocessing.slices) holding ``planes`` as its US channel."""
    n, height, width = planes.images.shape
    images = np.full((n, 4, height, width), -1.0, np.float16)
    images[:, 0] = planes.images / 127.5 - 1.0
    folder.mkdir(parents=True)
    np.save(folder / "images.npy", images)
    np.save(folder / "fov.npy", np.ones((n, height, width), bool))
    np.save(folder / "tumor-US.npy", planes.labels)
    meta = {
        "subject": planes.subject,
        "modalities": ["US", "T2", "ceT1", "FLAIR"],
        "present": [True, True, False, False],
        "slice_axis": 2,
        "slice_indices": slice_indices,
        "grid_shape": [height, width, max(slice_indices) + 2],
        "grid_affine": np.diag([0.5, 0.5, 1.5, 1.0]).tolist(),
        "labels": ["tumor-US"],
    }
    (folder / "meta.json").write_text(json.dumps(meta))


def test_export_dataset_writes_fov_planes(tmp_path: Path) -> None:
    import SimpleITK as sitk

    rng = np.random.default_rng(1)
    planes = disc_planes("sub-1", 3, rng, size=32)
    planes.fov = np.ones(planes.images.shape, bool)
    planes.fov[1] = False  # no field of view: not exported
    planes.fov[2, :, :16] = False  # labels outside the field of view are dropped
    planes.labels[2] = 1
    planes.planes = np.array([5, 6, 7])
    folder = seg.export_dataset(tmp_path, 7, "Toy", [planes])
    assert folder == tmp_path / "Dataset007_Toy"
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        "sub-1_0005_0000.nii.gz",
        "sub-1_0007_0000.nii.gz",
    ]
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "US"}
    assert dataset["labels"] == {"background": 0, "tumour": 1}
    assert dataset["numTraining"] == 2
    label = sitk.ReadImage(str(folder / "labelsTr" / "sub-1_0007.nii.gz"))
    assert label.GetSize() == (32, 32)
    assert label.GetSpacing() == (0.5, 0.5)
    label_array = sitk.GetArrayFromImage(label)
    assert label_array[:, :16].max() == 0 and label_array[:, 16:].min() == 1
    image = sitk.GetArrayFromImage(
        sitk.ReadImage(str(folder / "imagesTr" / "sub-1_0005_0000.nii.gz"))
    )
    np.testing.assert_array_equal(image, planes.images[0].astype(np.float32))


def test_planes_from_stack_and_grid(tmp_path: Path) -> None:
    planes = disc_planes("remind-3", 3, np.random.default_rng(2), size=32)
    write_stack(tmp_path / "remind-3", planes, [4, 5, 6])
    loaded = plane_data.planes_from_stack(tmp_path / "remind-3")
    assert loaded.subject == "remind-3"
    assert loaded.spacing == (0.5, 0.5)
    assert loaded.case_id(0) == "remind-3_0004"
    np.testing.assert_allclose(plane_data.to_intensity(loaded.images), planes.images, atol=1.0)
    meta = json.loads((tmp_path / "remind-3" / "meta.json").read_text())
    grid = plane_data.stack_to_grid(planes.labels, meta)
    assert grid.shape == (32, 32, 8)
    np.testing.assert_array_equal(grid[:, :, 5], planes.labels[1])
    assert grid[:, :, [0, 1, 2, 3, 7]].max() == 0
    row = scoring.score_stack(tmp_path / "remind-3", planes.labels, "truth", "remind")
    assert row["dice"] == 1.0 and row["assd_mm"] == 0.0


@pytest.fixture
def restore_nnunet_environment():
    saved = {name: os.environ.get(name) for name in NNUNET_VARIABLES}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_tiny_fold_end_to_end(tmp_path: Path, restore_nnunet_environment) -> None:
    environment = {name: os.environ.get(name) for name in NNUNET_VARIABLES}
    rng = np.random.default_rng(0)
    paths = seg.NnunetPaths.under(tmp_path / "nnunet")
    settings = defaults(
        jobs.segmenter,
        folds=5,
        epochs=1,
        iterations_per_epoch=2,
        val_iterations_per_epoch=1,
        initial_lr=1e-2,
        batch_size=None,
        device="cpu",
        threads=1,
        tile_step_size=0.5,
        mirroring=True,
    )
    subjects = (disc_planes(f"synth{s:02d}", 4, rng) for s in range(8))
    seg.export_dataset(paths.raw, 501, "TinyUS", subjects)
    plans = seg.plan_and_preprocess(paths, 501, settings)
    assert plans == paths.preprocessed / "Dataset501_TinyUS" / "nnUNetPlans.json"
    assert json.loads(plans.read_text())["configurations"]["2d"]["patch_size"] == [64, 64]

    splits_file = tmp_path / "splits.json"
    with pytest.raises(FileNotFoundError, match="write_splits"):
        seg.train_fold(paths, 501, 0, settings, splits_file)
    assert seg.write_splits(paths, 501, settings, splits_file) == splits_file
    splits = json.loads(splits_file.read_text())
    assert len(splits) == 5
    assert sorted(c for s in splits for c in s["val"]) == sorted(
        f"synth{s:02d}_{p:04d}" for s in range(8) for p in range(4)
    )

    checkpoint = seg.train_fold(paths, 501, 0, settings, splits_file)
    # the trainer took its folds from our file; nnU-Net wrote none of its own
    assert not (paths.preprocessed / "Dataset501_TinyUS" / "splits_final.json").exists()
    assert checkpoint == (
        paths.results
        / "Dataset501_TinyUS"
        / "IusynthTrainer__nnUNetPlans__2d"
        / "fold_0"
        / "checkpoint_final.pth"
    )
    assert checkpoint.is_file()
    # the fold's digest is recorded; nnU-Net removed its checkpoint_latest when it finished
    assert len((checkpoint.parent / "data_digest.txt").read_text().strip()) == 64
    assert not (checkpoint.parent / "checkpoint_latest.pth").exists()
    # the variables are set for the calls only
    assert {name: os.environ.get(name) for name in NNUNET_VARIABLES} == environment

    held_out = disc_planes("real01", 3, rng)
    write_stack(tmp_path / "stacks" / "real01", held_out, [2, 3, 4])
    planes = plane_data.planes_from_stack(tmp_path / "stacks" / "real01")
    masks = nnunet_prediction.predict_cases(paths, 501, [planes], settings, folds=[0])
    # the batched ensemble gives nnU-Net's own per-plane prediction (two folds: averaged),
    # but for voxels at a tie, where batched tiles' rounding may tip the tumour probability
    predictor = nnunet_prediction.load_predictor(paths, 501, [0, 0], settings)
    with seg.nnunet_environment(paths, settings.threads):
        batched = nnunet_prediction.predict_planes(predictor, planes)
        intensity = plane_data.to_intensity(planes.images, planes.fov)
        spacing = [999 * max(planes.spacing), *planes.spacing]
        for index, plane in enumerate(intensity):
            own, probability = predictor.predict_single_npy_array(
                plane[None, None], {"spacing": spacing}, save_or_return_probabilities=True
            )
            expected = (np.asarray(own)[0] > 0) & planes.fov[index]
            for result in (batched[index], masks["real01"][index]):
                ties = np.abs(np.asarray(probability)[1, 0] - 0.5) < 1e-3
                np.testing.assert_array_equal(result.astype(bool) & ~ties, expected & ~ties)
    assert masks["real01"].shape == (3, 64, 64)
    assert masks["real01"].dtype == np.uint8
    assert set(np.unique(masks["real01"])) <= {0, 1}
    row = scoring.score_stack(tmp_path / "stacks" / "real01", masks["real01"], "toy", "test")
    assert 0.0 <= row["dice"] <= 1.0
    assert row["truth_voxels"] == int(held_out.labels.sum())


def test_table4_reads_the_cases_with_the_papers_dice_beside_ours(tmp_path):
    from iusynth.reporting.figures import plot_segmentation_boxplot
    from iusynth.reporting.tables import (
        read_paper_results,
        segmentation_latex,
        segmentation_markdown,
        segmentation_table,
    )

    rows = [
        ("Case-a", "mmhvae", "resect", 0.8, 2.0),
        ("Case-b", "mmhvae", "resect", 0.6, float("nan")),
        ("Case-a", "supervised", "resect", 0.5, 3.0),
        ("ReMIND-a", "mmhvae", "remind", 0.7, 1.0),
    ]
    per_case = pd.DataFrame(rows, columns=["subject", "method", "set", "dice", "assd_mm"])
    methods = {"mmhvae": "MMHVAE", "mmgan": "MM-GAN", "supervised": "Supervised"}
    paper = read_paper_results(PAPER_RESULTS)
    table = segmentation_table(per_case, methods, paper)
    assert list(table["method"]) == list(methods) * 2  # per set, in the config's order
    row = table[(table.set == "resect") & (table.method == "mmhvae")].iloc[0]
    assert row["dice"] == pytest.approx(70.0) and row["subjects"] == 2
    assert row["dice_std"] == pytest.approx(np.std([80.0, 60.0], ddof=1))
    assert row["assd_mm"] == 2.0 and row["assd_undefined"] == 1
    assert row["paper_dice"] == 73.6 and row["gap_dice"] == pytest.approx(70.0 - 73.6)
    absent = table[(table.set == "remind") & (table.method == "mmgan")].iloc[0]
    assert absent["subjects"] == 0 and np.isnan(absent["dice"]) and absent["paper_dice"] == 57.9
    markdown = segmentation_markdown(table)
    assert "| MMHVAE | 2 | 70.0 ± 14.1 | 2.00 (1 undefined) | 73.6 | -3.6 |" in markdown
    latex = segmentation_latex(table)
    assert "MMHVAE & 2 & 70.0 ± 14.1 & 2.00 (1 undefined) & 73.6 & -3.6 \\\\" in latex
    plot_segmentation_boxplot(per_case, methods, tmp_path / "dice.png")
    assert (tmp_path / "dice.png").read_bytes()[:4] == b"\x89PNG"


def test_nnunet_workers_start_from_a_fork_server(tmp_path: Path) -> None:
    """Inside nnU-Net calls, a default Pool does not fork this multithreaded process."""
    import multiprocessing

    before = multiprocessing.get_start_method(allow_none=True)
    with seg.nnunet_environment(seg.NnunetPaths.under(tmp_path), 1):
        assert multiprocessing.get_start_method() == "forkserver"
        with multiprocessing.Pool(2) as pool:
            assert pool.map(abs, [-1, -2]) == [1, 2]
    assert multiprocessing.get_start_method(allow_none=True) == before
