"""The authors' ReMIND preparation: ITK transforms, their files, given registrations, folds,
their iUS grid, and their weights scored only where it is fair."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from iusynth import jobs
from iusynth.cli import main
from iusynth.cohorts.datasets import remind
from iusynth.cohorts.datasets.authors import (
    RELEASE,
    check_fair_scoring,
    load_release,
)
from iusynth.cohorts.datasets.catalog import remind_subjects
from iusynth.core.geometry import rigid_transform, rotation_matrix
from iusynth.core.itk_transforms import lps_to_ras, read_itk_affine, write_itk_affine
from iusynth.core.settings import to_json
from iusynth.core.splits import authors_folds, make_splits
from iusynth.core.subject import SubjectRecord
from iusynth.preprocessing.checks import ImplausibleRegistration
from iusynth.preprocessing.given_transforms import given_registration, import_registration
from iusynth.preprocessing.pipeline import _centre_crop_or_pad, authors_grid, authors_spacing

from .conftest import defaults
from .test_authors_checkpoint import needs_reference, reference, source
from .test_synthesis import write_stack

AFFINE = RELEASE / "registration" / "affine" / "Case001"
FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_points(seed: int, count: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-80, 80, (count, 3))


def through_sitk(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """RAS points mapped by an ITK transform (which acts on LPS points)."""
    lps = points * [-1, -1, 1]
    return np.array([transform.TransformPoint(tuple(map(float, p))) for p in lps]) * [-1, -1, 1]


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def test_an_itk_file_maps_ras_points_as_simpleitk_maps_their_lps_twins():
    path = next(AFFINE.glob("*.tfm"))
    points = ras_points(0)
    expected = through_sitk(sitk.ReadTransform(str(path)), points)
    assert np.abs(apply(read_itk_affine(path), points) - expected).max() < 1e-9


def test_centred_rigid_and_composite_transforms_read_as_their_point_maps(tmp_path):
    euler = sitk.Euler3DTransform((10.0, -20.0, 30.0), 0.1, -0.2, 0.3, (4.0, 5.0, -6.0))
    sitk.WriteTransform(euler, str(tmp_path / "euler.tfm"))
    points = ras_points(1)
    read = read_itk_affine(tmp_path / "euler.tfm")
    assert np.abs(apply(read, points) - through_sitk(euler, points)).max() < 1e-9
    # the authors compose CompositeTransform([rigid^-1, affine^-1]): the affine's applies first
    rigid = sitk.ReadTransform(
        str(next((RELEASE / "registration" / "rigid" / "Case001").glob("*")))
    )
    affine = sitk.ReadTransform(str(next(AFFINE.glob("*.tfm"))))
    composite = sitk.CompositeTransform([rigid.GetInverse(), affine.GetInverse()])
    ours = np.linalg.inv(lps_to_ras(_lps(rigid))) @ np.linalg.inv(lps_to_ras(_lps(affine)))
    assert np.abs(apply(ours, points) - through_sitk(composite, points)).max() < 1e-9


def _lps(transform: sitk.Transform) -> np.ndarray:
    affine = sitk.AffineTransform(transform)  # the composite's parts are affine
    matrix = np.eye(4)
    matrix[:3, :3] = np.reshape(affine.GetMatrix(), (3, 3))
    centre = np.array(affine.GetCenter())
    matrix[:3, 3] = np.array(affine.GetTranslation()) + centre - matrix[:3, :3] @ centre
    return matrix


def test_a_written_transform_reads_back_in_simpleitk_and_here(tmp_path):
    matrix = rigid_transform(rotation_matrix(np.array([1.0, 2.0, 3.0]), 0.4), [3, -4, 5], [0, 0, 0])
    path = tmp_path / "written.tfm"
    write_itk_affine(path, matrix)
    points = ras_points(2)
    assert np.abs(apply(read_itk_affine(path), points) - apply(matrix, points)).max() < 1e-9
    assert (
        np.abs(through_sitk(sitk.ReadTransform(str(path)), points) - apply(matrix, points)).max()
        < 1e-9
    )


def test_unreadable_and_deformable_transforms_name_the_file(tmp_path):
    bad = tmp_path / "bad.tfm"
    bad.write_text("#Insight Transform File V1.0\nnot a transform\n")
    with pytest.raises(ValueError, match=r"bad.tfm is unreadable"):
        read_itk_affine(bad)
    field = sitk.Image([4, 4, 4], sitk.sitkVectorFloat64, 3)
    field.SetPixel([1, 1, 1], (5.0, 0.0, 0.0))
    warp = tmp_path / "warp.h5"
    sitk.WriteTransform(sitk.DisplacementFieldTransform(field), str(warp))
    with pytest.raises(ValueError, match=r"warp.h5 is not an affine map"):
        read_itk_affine(warp)
    with pytest.raises(FileNotFoundError, match=r"missing.tfm does not exist"):
        read_itk_affine(tmp_path / "missing.tfm")


def test_the_authors_files_are_parsed_whole_with_their_oddities():
    release = load_release()
    assert len(release.cases) == 103 and release.affines == 104 and release.rigids == 231
    assert sum(len(case.rigid) for case in release.cases.values()) == 231
    assert len(release.folds) == 3
    sizes = [(len(f.train), len(f.val), len(f.test)) for f in release.folds]
    assert sizes == [(70, 1, 33), (69, 1, 33), (69, 1, 33)]
    assert all(f.without_data == ("ReMIND-032",) for f in release.folds)
    assert release.folds[0].val == ("ReMIND-067",) and "ReMIND-067" in release.folds[0].test
    notes = "\n".join(release.notes)
    for expected in (
        "Case032 has an affine but no row in refs_files.csv",
        "fold 0 lists Case067 2 times (validation, inference)",
        "Case021's iUS file is named",
        "Case013 is in the test list of folds 0, 2",
        "Case069 is in the test list of folds 0, 1",
        "Case065, Case091, Case096, Case108, Case111, Case113 are in no fold's test list",
    ):
        assert expected in notes
    case = release.case("ReMIND-012")
    assert case.reference == "3D_AX_T2_SPACE" and case.target_on == "3D_SAG_T2_FLAIR"
    assert case.target_description == "tumor seg - MR ref: 3D_SAG_T2_FLAIR"
    assert release.case("ReMIND-003").mr_name("3D_AX_T2_SPACE") == "3D_AX_T2_SPACE-r"
    assert sum(c.target_kind == "tumor_target" for c in release.cases.values()) == 3
    with pytest.raises(KeyError, match=r"ReMIND-032 .Case032. is not a case"):
        release.case("ReMIND-032")


def test_the_shipped_subjects_are_the_authors_cases():
    assert set(remind_subjects()) == set(load_release().cases)


def test_the_plan_takes_the_authors_targets_from_the_real_index():
    plan = remind.plan_by_subject(
        remind.plan_cohort(list(remind_subjects()), ["T2", "ceT1", "FLAIR"])
    )
    assert len(plan) == 103
    masks = {s: next(e for e in entries if e.role == "SEG") for s, entries in plan.items()}
    release = load_release()
    for subject, mask in masks.items():
        assert mask.series.description == release.case(subject).target_description
    assert not any(e.role == "SEG_MR" for entries in plan.values() for e in entries)
    carried = [s for s, mask in masks.items() if mask.label_on == remind.AUTHORS_LABEL]
    assert len(carried) == 20  # drawn on an MR that is none of the three sequences
    ours = remind.plan_by_subject(
        remind.plan_cohort(list(remind_subjects()), ["T2", "ceT1", "FLAIR"], targets="ours")
    )
    differ = [
        s
        for s in plan
        if {e.series.uid for e in ours[s] if e.role == "SEG"} != {masks[s].series.uid}
    ]
    assert len(differ) == 9 and "ReMIND-012" in differ


def test_the_authors_folds_restricted_to_a_cohort():
    folds = authors_folds(["ReMIND-001", "ReMIND-013", "ReMIND-067", "ReMIND-035"])
    assert folds[0]["test"] == ["ReMIND-001", "ReMIND-013", "ReMIND-067"]
    assert folds[0]["val"] == ["ReMIND-067"] and folds[0]["train"] == ["ReMIND-035"]
    assert "ReMIND-013" in folds[1]["val"] and "ReMIND-013" in folds[2]["test"]
    with pytest.raises(ValueError, match=r"ReMIND-demo001'\] are not cases of the authors"):
        authors_folds(["ReMIND-001", "ReMIND-demo001"])
    splits = make_splits("remind", ["ReMIND-001", "ReMIND-035"], "resect", [], "seeded", 2, 0)
    assert all(fold["val"] == fold["test"] for fold in splits["folds"])


def test_the_demo_truth_through_the_given_transforms_lands_on_its_landmarks(
    generated, micro_config
):
    _, folder = generated["remind"]
    record = SubjectRecord.read(folder)
    given = given_registration("subject_folders", record)
    assert given.reference == "MR" and given.files[0].name.endswith("_US-to-MR.tfm")
    registration, alignment = import_registration(
        record, given, jobs.registration(micro_config), "subject_folders"
    )
    assert registration["before_median_mm"] > 2.0
    assert registration["after_max_mm"] < 0.5
    assert registration["checks"]["nmi_given"] > registration["checks"]["nmi_headers"]
    assert set(alignment["transforms"]) == set(record.mr_sequences) - {"T2"}


def test_a_given_transform_written_the_wrong_way_is_refused_naming_it(
    generated, micro_config, tmp_path
):
    _, folder = generated["remind"]
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    path = next(copy.glob("*_US-to-MR.tfm"))
    true = read_itk_affine(path)
    settings = jobs.registration(micro_config)
    write_itk_affine(path, np.linalg.inv(true))  # the other way round: caught by landmarks
    record = SubjectRecord.read(copy)
    with pytest.raises(ImplausibleRegistration, match=rf"given transform {path}.*landmarks"):
        import_registration(record, given_registration("subject_folders", record), settings, "x")
    turned = np.eye(4)
    turned[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    write_itk_affine(path, true @ turned)  # a transform for other images: worse similarity
    record = SubjectRecord.read(copy)
    with pytest.raises(ImplausibleRegistration, match=rf"{path} makes the iUS .* match worse"):
        import_registration(record, given_registration("subject_folders", record), settings, "x")
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"expected one iUS transform"):
        given_registration("subject_folders", SubjectRecord.read(copy))


def test_the_authors_spacing_and_crop_or_pad_follow_their_code():
    assert authors_spacing(np.array([0.3, 0.3, 0.8]), 0.5, Path("x")).tolist() == [0.5, 0.5, 0.8]
    # their get_spacing gives the odd spacing to axis 2, whichever axis it came from
    assert authors_spacing(np.array([0.8, 0.3, 0.3]), 0.5, Path("x")).tolist() == [0.5, 0.5, 0.8]
    assert authors_spacing(np.array([0.49, 0.5, 0.52]), 0.5, Path("x")).tolist() == [0.5] * 3
    with pytest.raises(ValueError, match=r"us.nii.gz: no two of its voxel spacings"):
        authors_spacing(np.array([0.2, 0.5, 1.0]), 0.5, Path("us.nii.gz"))
    # torchio's CropOrPad: ceil(difference / 2) first, at either end
    assert _centre_crop_or_pad(7, 3) == 2 and _centre_crop_or_pad(3, 7) == -2
    assert _centre_crop_or_pad(8, 3) == 3 and _centre_crop_or_pad(5, 5) == 0


def test_the_authors_grid_crops_resamples_and_pads_the_ius():
    data = np.zeros((40, 30, 20), np.float32)
    data[5:35, 4:26, 3:18] = 1.0 + np.arange(15)[None, None, :]
    affine = np.diag([0.25, 0.25, 0.25, 1.0])
    affine[:3, 3] = [10.0, -5.0, 2.0]
    grid, us = authors_grid(affine, data, 0.5, (12, 16), Path("us.nii.gz"))
    spacing = np.linalg.norm(grid.affine[:3, :3], axis=0)
    assert np.allclose(spacing, 0.5) and grid.shape[:2] == (12, 16) and us.shape == grid.shape
    # the crop (30 x 22 x 15 voxels of 0.25 mm) at 0.5 mm: 15 x 11 x 8 (their rounding);
    # x: 15 -> 12, 2 planes cropped first; y: 11 -> 16, 3 planes padded first, 2 last
    assert grid.shape[2] == 8
    assert (us[:, :3] == 0).all() and (us[:, 14:] == 0).all() and (us[:, 3:14] > 0).all()
    assert np.allclose(
        grid.affine[:3, 3], [10.0 + (5 + 2 * 2) * 0.25, -5.0 + (4 - 3 * 2) * 0.25, 2.0 + 3 * 0.25]
    )
    assert np.allclose(us[0, 3], data[9, 4, 3:18:2])


def test_a_pretrained_variant_is_refused_subjects_of_its_training_list(tmp_path):
    fold = load_release().folds[0]
    trained = fold.train[0]
    check_fair_scoring([fold.test[0], "Case-demo001"], 0, False, "key")
    with pytest.raises(
        ValueError, match=rf"config key 'key': 1 of the 2 subjects to score \({trained}\)"
    ):
        check_fair_scoring([trained, fold.test[0]], 0, False, "key")
    assert check_fair_scoring([trained], 0, True, "key") == [trained]


@needs_reference
def test_the_synthesis_stage_refuses_the_authors_weights_on_their_training_subjects(
    tmp_path, caplog
):
    from iusynth.training.pretrained import install_pretrained

    from .conftest import policy

    checkpoint = tmp_path / "CP_main_1000.pth"
    torch.save(reference("small")["state_dict"], checkpoint)
    model = tmp_path / "model.pt"
    install_pretrained(source(path=checkpoint), "key", tmp_path, policy(), model, None)
    trained = load_release().folds[0].train[0]
    stack = write_stack(tmp_path / "slices" / trained, seed=0)
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"folds": [{"train": [], "val": [], "test": [trained]}]}))
    settings = to_json(defaults(jobs.sweep, "mmhvae", slice_step=1, device="cpu"))
    command = [
        "synthesise", "--method", "authors", "--models", str(model), "--slices", str(stack),
        "--splits", str(splits), "--fold", "0", "--settings", settings,
        "--output", str(tmp_path / "out"),
    ]  # fmt: skip
    with pytest.raises(SystemExit):
        main(command)
    assert "not in the test list of the authors' fold-0 weights" in caplog.text
    assert "models.variants.authors.pretrained.score_training_subjects: true" in caplog.text
    assert not (tmp_path / "out").exists()


def authors_subject(folder: Path, subject: str, series: dict[str, str]) -> SubjectRecord:
    """A converted ReMIND subject as the given-transforms path reads it (names, source.json)."""
    folder.mkdir(parents=True)
    for role in series:
        layout_path = folder / f"{subject}_{role}.nii.gz"
        layout_path.write_bytes(b"")
    source = {"series": {role: {"description": d} for role, d in series.items()}}
    (folder / f"{subject}_source.json").write_text(json.dumps(source))
    return SubjectRecord.read(folder)


@pytest.mark.parametrize(
    ("subject", "series", "label_on"),
    [
        # target on an MR none of the sequences, the reference a sequence
        ("ReMIND-055", {"ceT1": "3D_AX_T1_postcontrast"}, "authors"),
        # target on the authors' reference (3D_SAG_T2), which is none of the sequences
        ("ReMIND-058", {"ceT1": "3D_AX_T1_postcontrast"}, "authors"),
        # target on a sequence (FLAIR) other than the reference sequence (T2)
        ("ReMIND-012", {"T2": "3D_AX_T2_SPACE", "FLAIR": "3D_SAG_T2_FLAIR"}, "FLAIR"),
    ],
)
def test_the_target_reaches_the_ius_through_the_same_maps_as_their_script(
    subject, series, label_on, tmp_path
):
    release = load_release()
    case = release.case(subject)
    record = authors_subject(tmp_path / subject, subject, series)
    given = given_registration("authors", record)
    sequence = next(s for s in ("T2", "ceT1", "FLAIR") if s in series)
    us_to_sequence = given.to(sequence).matrix @ given.us.matrix
    if label_on == "authors":  # the converter carried the mask into the sequence's world
        drawn_to_sequence = remind._authors_mask_map(subject, {"series": {
            role: {"description": d} for role, d in series.items()}}, sequence)  # fmt: skip
        ours = np.linalg.inv(drawn_to_sequence) @ us_to_sequence
    else:  # the mask stays in its sequence's world, reached by the MR -> MR alignment
        ours = given.to(label_on).matrix @ np.linalg.inv(given.to(sequence).matrix) @ us_to_sequence
    # their create_dataset_us-space.py: CompositeTransform([rigid^-1, affine^-1])
    affine = sitk.ReadTransform(str(case.affine)).GetInverse()
    rigid = (
        sitk.ReadTransform(str(case.rigid[case.target_on])).GetInverse()
        if case.target_on != case.reference
        else sitk.Transform(3, sitk.sitkIdentity)
    )
    theirs = sitk.CompositeTransform([rigid, affine])
    points = ras_points(3)
    assert np.abs(apply(ours, points) - through_sitk(theirs, points)).max() < 1e-6
