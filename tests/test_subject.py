"""The subject record: one listing, images read and header-checked once, clear errors."""

from __future__ import annotations

import collections
import json
import os
import pathlib
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from iusynth import jobs
from iusynth.core import layout, modalities
from iusynth.core import subject as subject_module
from iusynth.core.subject import SubjectRecord
from iusynth.preprocessing import registration
from iusynth.preprocessing.pipeline import preprocess_subject
from iusynth.preprocessing.registration import (
    RegistrationResult,
    align_subject_sequences,
    register_subject,
)

from .conftest import defaults

SETTINGS = defaults(jobs.preprocessing, spacing_mm=1.0, slice_size=(96, 96))
OPTIONS = defaults(jobs.registration).registration
ORDER = ["T2", "ceT1", "FLAIR"]


@pytest.fixture
def counted(monkeypatch) -> collections.Counter:
    """Counts, by file name, of ``nibabel.load`` and header checks ("load", "check")."""
    counts: collections.Counter = collections.Counter()
    load, check = nib.load, subject_module.check_header

    def counting_load(filename, *args, **kwargs):
        counts["load", pathlib.Path(filename).name] += 1
        return load(filename, *args, **kwargs)

    def counting_check(path):
        counts["check", pathlib.Path(path).name] += 1
        return check(path)

    monkeypatch.setattr(nib, "load", counting_load)
    monkeypatch.setattr(subject_module, "check_header", counting_check)
    return counts


def touch_subject(folder: pathlib.Path, kinds: tuple[str, ...]) -> pathlib.Path:
    """A subject folder with empty files of the given kinds (the folder name is the id)."""
    folder.mkdir(parents=True)
    for kind in kinds:
        layout.subject_file(folder, folder.name, kind).touch()
    return folder


def test_the_record_lists_the_folder_once_and_finds_what_a_scan_finds(generated, monkeypatch):
    calls: collections.Counter = collections.Counter()
    scandir, is_file, stat = os.scandir, pathlib.Path.is_file, pathlib.Path.stat

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    for cohort, (simulated, folder) in generated.items():
        sid = simulated.plan.subject
        scanned = {k for k in layout.KINDS if layout.subject_file(folder, sid, k).is_file()}
        calls.clear()
        monkeypatch.setattr(os, "scandir", counting("listing", scandir))
        monkeypatch.setattr(pathlib.Path, "is_file", counting("probe", is_file))
        monkeypatch.setattr(pathlib.Path, "stat", counting("probe", stat))
        record = SubjectRecord.read(folder)
        monkeypatch.undo()
        assert calls == {"listing": 1}, cohort
        assert record.subject == sid and record.kinds == scanned
        assert record.entry.available == scanned & set(layout.FILE_KINDS)
        assert record.has("truth") and not record.entry.has("truth")  # demo ground truth
        assert record.mr_sequences == tuple(s for s in modalities.MR_SEQUENCES if s in scanned)
        assert record.path("US") == layout.subject_file(folder, sid, "US")


def test_each_image_is_read_and_header_checked_once_per_record(generated, counted):
    _, folder = generated["remind"]
    record = SubjectRecord.read(folder)
    reference = record.reference(ORDER)
    for _ in range(3):
        assert record.ultrasound() is record.image("US")
        assert record.image(reference) is record.image(reference)
    files = {record.path("US").name, record.path(reference).name}
    assert counted == {(what, file): 1 for what in ("load", "check") for file in files}
    assert record.landmarks() is record.landmarks()
    # the cache is no part of what a record is
    assert record == SubjectRecord.read(folder) and hash(record) == hash(SubjectRecord.read(folder))


def test_the_annotation_sequence_comes_from_source_json(tmp_path):
    folder = touch_subject(tmp_path / "Case-1", ("ceT1", "FLAIR", "source"))
    source = layout.subject_file(folder, "Case-1", "source")
    for named, expected in (("FLAIR", "FLAIR"), ("T2", "ceT1"), ("US", "ceT1"), (None, "ceT1")):
        source.write_text(json.dumps({"annotation_sequence": named, "series": {}}))
        assert SubjectRecord.read(folder).annotation_sequence("ceT1") == expected, named
    source.unlink()
    assert SubjectRecord.read(folder).annotation_sequence("ceT1") == "ceT1"
    source.write_text("{not json")
    with pytest.raises(ValueError, match=r"Case-1_source\.json is unreadable or not JSON"):
        SubjectRecord.read(folder)


def test_bad_subjects_are_refused_with_the_file_and_the_fix_named(tmp_path, generated):
    with pytest.raises(FileNotFoundError, match=r"subject folder .*Case-2 of subject Case-2 does"):
        SubjectRecord.read(tmp_path / "Case-2")
    with pytest.raises(ValueError, match="subject id 'a b'"):
        SubjectRecord.read(tmp_path, "a b")
    bare = SubjectRecord.read(touch_subject(tmp_path / "Case-3", ("US",)))
    with pytest.raises(FileNotFoundError, match=r"Case-3 has no reference MR.*Case-3_T2\.nii\.gz"):
        bare.reference(ORDER)
    with pytest.raises(FileNotFoundError, match=r"landmarks: .*Case-3_landmarks\.tag is missing"):
        bare.landmarks()
    with pytest.raises(FileNotFoundError, match=r"Case-3_T2\.nii\.gz does not exist"):
        bare.image("T2")

    simulated, folder = generated["remind"]
    copy = tmp_path / simulated.plan.subject
    shutil.copytree(folder, copy)
    us = layout.subject_file(copy, copy.name, "US")
    image = nib.load(us)
    image.set_sform(np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine, code=1)
    nib.save(image, us)
    with pytest.raises(ValueError, match=r"_US\.nii\.gz: qform and sform disagree.*LPS"):
        SubjectRecord.read(copy).image("US")


def test_a_stage_reads_each_image_file_at_most_once(generated, counted, monkeypatch):
    """align-mr, register-us and preprocess on one record each: no file loaded twice."""

    def fake_reg_aladin(reference, floating, options, reference_mask=None, initial=None):
        return RegistrationResult(matrix=np.eye(4), seconds=0.0)

    monkeypatch.setattr(registration, "reg_aladin", fake_reg_aladin)
    _, folder = generated["remind"]
    stages = {
        "align-mr": lambda record: align_subject_sequences(record, ORDER, OPTIONS),
        "register-us": lambda record: register_subject(record, ORDER, OPTIONS, {}),
        "preprocess": lambda record: preprocess_subject(record, np.eye(4), {}, SETTINGS),
    }
    for name, stage in stages.items():
        counted.clear()
        record = SubjectRecord.read(folder)
        stage(record)
        assert counted and max(counted.values()) == 1, name
        loads = {file for kind, file in counted if kind == "load"}
        assert loads == {file for kind, file in counted if kind == "check"}, name
    kinds = (*modalities.MODALITIES, *layout.LABEL_KINDS, *layout.CLEAN_KINDS)
    images = [kind for kind in kinds if record.has(kind)]
    assert len(counted) == 2 * len(images)  # preprocess reads every image (noise-free too), once


def test_the_record_module_stays_light():
    code = (
        "import sys, iusynth.core.subject\n"
        "print(sorted({'numpy', 'nibabel', 'torch'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
