"""Atomic writes and NIfTI reading with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from iusynth.core.fileio import atomic_directory, atomic_path, load_nifti, save_nifti


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_old_file_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "table.tsv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("new, partial")
        raise RuntimeError
    assert target.read_text() == "old"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["table.tsv"]


def test_atomic_directory_replaces_only_on_success(tmp_path):
    target = tmp_path / "subject"
    with atomic_directory(target) as folder:
        (folder / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic_directory(target) as folder:
        (folder / "b.txt").write_text("2")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["subject"]
    assert [p.name for p in target.iterdir()] == ["a.txt"]


def test_nifti_round_trip_keeps_data_type_and_affine(tmp_path):
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    save_nifti(tmp_path / "x.nii.gz", data, affine)
    image = load_nifti(tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(np.asarray(image.dataobj), data)
    np.testing.assert_allclose(image.affine, affine)
    assert image.get_data_dtype() == np.uint8


def test_missing_empty_and_corrupt_images_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gone\.nii\.gz"):
        load_nifti(tmp_path / "gone.nii.gz")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.nii.gz is empty"):
        load_nifti(tmp_path / "empty.nii.gz")
    save_nifti(tmp_path / "cut.nii.gz", np.zeros((20, 20, 20), np.int16), np.eye(4))
    raw = (tmp_path / "cut.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cut\.nii\.gz is not a readable NIfTI"):
        load_nifti(tmp_path / "cut.nii.gz")
