"""Real-dataset code against local servers: planning, download, verification, conversion.

ReMIND is planned from IDC's real index (idc-index-data) and from small fake indexes;
IDC downloads run through s5cmd against moto's S3 server on 127.0.0.1 (behind a proxy
that injects faults); NBIA, the NIRD archive and OSF are played by a local HTTP server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from iusynth import jobs
from iusynth.cohorts.datasets import catalog, idc, nbia, remind, resect, upenn
from iusynth.cohorts.datasets import download as dl
from iusynth.cohorts.datasets.dicom import NO_FRAME_OF_REFERENCE, series_volume
from iusynth.cohorts.datasets.download import DownloadError, Ledger, RetryPolicy
from iusynth.core import layout
from iusynth.core.settings import to_json
from iusynth.core.subject import SubjectRecord
from iusynth.core.tags import ras_to_lps, read_tag_file

from . import dicom_factory as factory
from . import fake_servers as fake
from .conftest import defaults

FAST = RetryPolicy(attempts=3, backoff_s=0.01, connect_timeout_s=5, read_timeout_s=30)
ORDER = ["T2", "ceT1", "FLAIR"]
MOVED = np.array(  # the patient moved between the ceT1 and the 2D FLAIR: 10 deg about z + shift
    [
        [np.cos(0.1745), -np.sin(0.1745), 0.0, 4.0],
        [np.sin(0.1745), np.cos(0.1745), 0.0, -3.0],
        [0.0, 0.0, 1.0, 2.5],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


@pytest.fixture
def server():
    state = fake.FakeServer()
    httpd = fake.start(state)
    yield state
    httpd.shutdown()


@pytest.fixture(scope="module")
def cases():
    """Two fake ReMIND patients: every distractor; a mask drawn on another MR."""
    return [
        fake.remind_case("ReMIND-001"),
        fake.remind_case_on_other_mr("ReMIND-002", MOVED),
    ]


@pytest.fixture(scope="module")
def fake_index(cases, tmp_path_factory):
    return fake.write_index(tmp_path_factory.mktemp("idc") / "idc_index.parquet", cases)


@pytest.fixture(scope="module")
def local_bucket():
    from .fake_s3 import LocalBucket

    bucket = LocalBucket()
    yield bucket
    bucket.stop()


@pytest.fixture
def bucket(local_bucket, cases):
    local_bucket.reset()
    fake.publish_on_bucket(local_bucket, cases)
    return local_bucket


def leftovers(folder: Path) -> list[Path]:
    """Temporary or partial files left anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if ".part" in p.name or p.suffix == ".zip"]


def planned_keys(plan, case) -> dict[str, str]:
    """Role -> key of the fake series the plan chose for one case."""
    keys = {series.uid: series.key for series in case.series}
    return {entry.role: keys[entry.series.uid] for entry in plan if entry.subject == case.patient}


# ReMIND: the plan, from fake indexes -----------------------------------------------------


def test_plan_takes_preop_series_and_the_mask_on_the_reference(cases, fake_index):
    plan = remind.plan_cohort([c.patient for c in cases], ORDER, index=fake_index, targets="ours")
    for case in cases:
        assert planned_keys(plan, case) == case.expected_plan, case.patient
    first = {e.role: e for e in plan if e.subject == "ReMIND-001"}
    assert first["T2"].candidates == 2  # axial and sagittal SPACE: the one with more slices
    assert first["SEG"].candidates == 2 and first["SEG"].label_on == "T2"
    second = {e.role: e for e in plan if e.subject == "ReMIND-002"}
    assert second["SEG"].label_on == "SEG_MR"
    assert second["SEG_MR"].series.description == "2D_AX_T2_FLAIR"
    descriptions = [e.series.description for e in plan]
    assert not [d for d in descriptions if "residual" in d or "target" in d or "cerebrum" in d]
    assert {e.series.study_description for e in plan if e.role != "US"} == {"Preop"}
    # with ceT1 first in the reference order, the mask drawn on ceT1 wins
    other = remind.plan_cohort(["ReMIND-001"], ["ceT1", "T2"], index=fake_index, targets="ours")
    assert planned_keys(other, cases[0])["SEG"] == "SEG-ceT1"


def test_plan_tsv_round_trip(cases, fake_index, tmp_path):
    plan = remind.plan_cohort([c.patient for c in cases], ORDER, index=fake_index, targets="ours")
    remind.write_plan(tmp_path / "plan.tsv", plan)
    assert remind.read_plan(tmp_path / "plan.tsv") == plan
    header = (tmp_path / "plan.tsv").read_text().splitlines()[1].split("\t")
    assert header[:6] == [
        "subject", "role", "SeriesInstanceUID", "SeriesDescription", "StudyDescription",
        "size_MB",
    ]  # fmt: skip


def test_plan_refuses_unknown_or_unusable_subjects(cases, fake_index, tmp_path):
    with pytest.raises(idc.IndexProblem, match=r"\['ReMIND-999'\] are not in the IDC index.*"
                       r"remove them from cohorts\.remind\.subjects"):  # fmt: skip
        remind.plan_cohort(["ReMIND-001", "ReMIND-999"], ORDER, index=fake_index, targets="ours")
    no_us = fake.write_index(
        tmp_path / "no_us.parquet",
        [],
        [s.index_row("ReMIND-050") for s in cases[0].series if s.key != "US"],
    )
    with pytest.raises(idc.IndexProblem, match="ReMIND-050 has no pre-dura iUS"):
        remind.plan_cohort(["ReMIND-050"], ORDER, index=no_us, targets="ours")


def test_an_index_older_than_the_ledger_is_refused(tmp_path):
    ledger = Ledger(tmp_path / "raw" / "ledger.jsonl")
    folder = tmp_path / "raw" / "ReMIND-001" / "1.2.3"
    folder.mkdir(parents=True)
    ledger.record("1.2.3", folder, dl.FileRecord(0, "0" * 32), idc_index="99.0.0")
    with pytest.raises(idc.IndexProblem, match=r"IDC index 99\.0\.0.*older.*idc-index-data>=99"):
        remind.check_index_against_ledger(tmp_path / "raw")
    ledger.record("1.2.3", folder, dl.FileRecord(0, "0" * 32), idc_index=idc.index_version())
    remind.check_index_against_ledger(tmp_path / "raw")  # the same version: fine


def test_tcia_manifest_restricts_the_plan_and_skips_its_header(cases, fake_index, tmp_path):
    manifest = tmp_path / "ReMIND.tcia"
    wanted = [cases[0].by_key(k).uid for k in ("US", "ceT1", "SEG-ceT1")]
    manifest.write_text(
        "downloadServerUrl=https://nbia.cancerimagingarchive.net/nbia-download/servlet/DownloadServlet\n"
        "includeAnnotation=true\nnoOfrRetry=4\ndatabasketId=manifest-1.tcia\nmanifestVersion=3.0\n"
        "ListOfSeriesToDownload=\nSeries ID\n" + "\n".join(wanted) + "\n"
    )
    assert nbia.read_tcia_manifest(manifest) == wanted
    plan = remind.plan_cohort(
        ["ReMIND-001"], ORDER, index=fake_index, manifest=manifest, targets="ours"
    )
    assert planned_keys(plan, cases[0]) == {"US": "US", "ceT1": "ceT1", "SEG": "SEG-ceT1"}
    manifest.write_text("ListOfSeriesToDownload=\nSeries ID\nnot-a-uid\n")
    with pytest.raises(ValueError, match="'not-a-uid' is not a SeriesInstanceUID"):
        nbia.read_tcia_manifest(manifest)


# ReMIND: the plan, from IDC's real index -------------------------------------------------


def test_real_index_plans_every_shipped_subject():
    """The 103 shipped patients against idc-index-data: the counts stated in issue 15."""
    subjects = catalog.remind_subjects()
    listing = idc.read_collection("ReMIND")
    plan = remind.plan_cohort(subjects, ORDER, targets="ours")
    by_subject = remind.plan_by_subject(plan)
    assert sorted(by_subject) == sorted(subjects)
    counts = Counter(entry.role for entry in plan)
    assert counts == {
        "US": 103, "T2": 66, "ceT1": 97, "FLAIR": 15, "SEG": 103, "SEG_MR": 15,
    }  # fmt: skip
    assert all(entry.candidates == 1 for entry in plan if entry.role != "SEG")
    for subject, entries in by_subject.items():
        roles = {entry.role: entry for entry in entries}
        assert roles["US"].series.description == "US_pre_dura"
        assert roles["US"].series.sop_class == remind.US_SOP_CLASS
        for entry in entries:
            description = entry.series.description.lower()
            assert "residual" not in description and "target" not in description
            if entry.role in ("T2", "ceT1", "FLAIR", "SEG", "SEG_MR"):
                assert entry.series.study_description == "Preop", (subject, entry)
            if entry.role == "T2":
                assert "t2" in description and "space" in description
                assert "flair" not in description
            if entry.role == "ceT1":
                assert "postcontrast" in description and "3d" in description
            if entry.role == "FLAIR":
                assert "flair" in description and "3d" in description
        seg = roles["SEG"]
        assert seg.series.description.startswith("tumor seg - MR ref: ")
        named = remind.seg_reference(seg.series)
        assert roles[seg.label_on].series.description == named, subject
        if seg.label_on != "SEG_MR":  # the reference MR wins when a mask was drawn on it
            assert "SEG_MR" not in roles
    # every pre-op tumour SEG of these patients, by the MR it names (whether chosen or not)
    named_roles = Counter()
    masks = Counter()
    for series in listing:
        if series.patient in by_subject and remind.series_role(series) == "SEG":
            masks[series.patient] += 1
            planned = {e.series.description: e.role for e in by_subject[series.patient]}
            role = planned.get(remind.seg_reference(series))
            named_roles[role if role in ORDER else "other"] += 1
    assert len(masks) == 103 and sum(n > 1 for n in masks.values()) == 13
    assert named_roles == {"ceT1": 61, "T2": 26, "FLAIR": 8, "other": 21}


def test_remind_plan_stage_prints_and_writes_the_plan(tmp_path, capsys, caplog):
    from iusynth.__main__ import main

    output = tmp_path / "plan.tsv"
    main(["remind-plan", "--subjects", "ReMIND-001", "ReMIND-055", "--reference-order", *ORDER,
          "--targets", "ours", "--raw", str(tmp_path / "raw"),
          "--output", str(output)])  # fmt: skip
    printed = capsys.readouterr().out
    plan = remind.read_plan(output)
    assert [entry.role for entry in plan] == ["US", "T2", "ceT1", "SEG", "US", "ceT1", "SEG"]
    for entry in plan:
        assert entry.series.uid in printed
    assert f"IDC index {idc.index_version()}" in printed
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit):
        main(["remind-plan", "--subjects", "ReMIND-001", "--reference-order", *ORDER,
              "--targets", "ours", "--index-version", "0.0.1", "--raw", str(tmp_path / "raw"),
              "--output", str(tmp_path / "p2.tsv")])  # fmt: skip
    assert "planned ReMIND with idc-index-data 0.0.1" in caplog.text
    assert not (tmp_path / "p2.tsv").exists()


# ReMIND: downloads from IDC's bucket (s5cmd against moto on 127.0.0.1) ---------------


def download_all(plan, raw: Path, records: Path, endpoint: str, policy=FAST) -> dict[str, list]:
    """Download every planned series; return each subject's records."""
    by_subject: dict[str, list] = {}
    for entry in plan:
        output = records / entry.subject / f"{entry.series.uid}.json"
        remind.download_series(entry, raw, output, api="idc", url=endpoint, policy=policy)
        by_subject.setdefault(entry.subject, []).append(json.loads(output.read_text()))
    return by_subject


def corners(affine: np.ndarray, shape) -> set[tuple[float, ...]]:
    """World positions (rounded) of the eight corner voxels of a grid."""
    return {
        tuple(np.round(fake.world_of(affine, (i, j, k)), 3) + 0.0)
        for i in (0, shape[0] - 1)
        for j in (0, shape[1] - 1)
        for k in (0, shape[2] - 1)
    }


def mask_world(image) -> set[tuple[float, ...]]:
    """World positions (rounded) of a mask's voxels."""
    data = np.asarray(image.dataobj)
    return {tuple(np.round(fake.world_of(image.affine, v), 3)) for v in np.argwhere(data > 0)}


def test_idc_download_and_conversion_keep_geometry(cases, fake_index, bucket, tmp_path):
    plan = remind.plan_cohort(["ReMIND-001"], ORDER, index=fake_index, targets="ours")
    raw = tmp_path / "raw"
    records = download_all(plan, raw, tmp_path / "records", bucket.endpoint)["ReMIND-001"]
    assert (raw / "LICENCE.txt").read_text().startswith("ReMIND")
    entries = Ledger(raw / "ledger.jsonl").entries()
    assert len(entries) == 5
    for entry in entries.values():
        assert entry["source"] == "idc" and entry["idc_index"] == idc.index_version()
        assert "ETag" in entry["checksum"]
    case = cases[0]
    out = tmp_path / "cohort" / case.patient
    source = remind.convert_subject(records, out, reference_order=ORDER, alignment=None)
    assert source["series"]["T2"]["description"] == "3D_AX_T2_SPACE"
    assert not source["notes"]  # the iUS has its frame of reference: highdicom built it
    for role in ("US", "T2", "ceT1", "FLAIR"):
        image = nib.load(layout.subject_file(out, case.patient, role))
        data = np.asarray(image.dataobj)
        expected = case.expected_ras[role]
        peak = np.unravel_index(np.argmax(data), data.shape)
        np.testing.assert_allclose(
            fake.world_of(image.affine, peak),
            fake.world_of(expected, case.markers[role]),
            atol=1e-3,
        )
        # same grid: the eight corners coincide (highdicom may order the axes differently)
        assert corners(image.affine, data.shape) == corners(expected, case.shapes[role])
    want = {
        tuple(np.round(fake.world_of(case.expected_ras["T2"], v), 3))
        for v in np.argwhere(case.seg_mask > 0)
    }
    assert mask_world(nib.load(layout.subject_file(out, case.patient, "tumor-MR"))) == want
    assert source["annotation_sequence"] == "T2"
    assert source["series"]["tumor-MR"]["drawn_on"] == "T2"
    assert not leftovers(tmp_path)
    # a rerun: everything verified, nothing fetched
    before = sum(bucket.proxy.gets.values())
    download_all(plan, raw, tmp_path / "records", bucket.endpoint)
    assert sum(bucket.proxy.gets.values()) == before


def objects_of(series: fake.FakeSeries) -> list[str]:
    return [f"{series.crdc_uuid}/{name}" for name in series.files()]


def single_series(plan, cases, key: str):
    uid = cases[0].by_key(key).uid
    return next(entry for entry in plan if entry.series.uid == uid)


def test_idc_interrupted_series_resumes_where_it_stopped(cases, fake_index, bucket, tmp_path):
    plan = remind.plan_cohort(["ReMIND-001"], ORDER, index=fake_index, targets="ours")
    entry = single_series(plan, cases, "T2")
    keys = objects_of(cases[0].by_key("T2"))
    bucket.proxy.fail(keys[4], *["truncate"] * 20)  # the connection drops, every time
    raw, output = tmp_path / "raw", tmp_path / "t2.json"
    once = RetryPolicy(attempts=1, backoff_s=0.01, connect_timeout_s=5, read_timeout_s=30)
    with pytest.raises(DownloadError, match=r"1 of 9 objects could not be downloaded.*The 8 "
                       r"verified ones are kept.*only the rest is fetched"):  # fmt: skip
        remind.download_series(entry, raw, output, api="idc", url=bucket.endpoint, policy=once)
    series_folder = raw / "ReMIND-001" / entry.series.uid
    assert not series_folder.exists() and not output.exists()
    assert not Ledger(raw / "ledger.jsonl").entries()
    staging = raw / "ReMIND-001" / f".{entry.series.uid}.partial"
    assert len([p for p in staging.glob("*.dcm")]) == 8
    gets = {key: bucket.proxy.object_gets(key) for key in keys}
    bucket.proxy.faults.clear()
    remind.download_series(entry, raw, output, api="idc", url=bucket.endpoint, policy=once)
    for key in keys:  # only the missing object was fetched again
        assert bucket.proxy.object_gets(key) == gets[key] + (key == keys[4]), key
    assert len(list(series_folder.glob("*.dcm"))) == 9 and not staging.exists()
    assert Ledger(raw / "ledger.jsonl").verified(entry.series.uid)["objects"] == 9


def test_idc_corrupted_object_is_refused_and_fetched_again(cases, fake_index, bucket, tmp_path):
    plan = remind.plan_cohort(["ReMIND-001"], ORDER, index=fake_index, targets="ours")
    entry = single_series(plan, cases, "US")
    (key,) = objects_of(cases[0].by_key("US"))
    bucket.proxy.fail(key, "corrupt")
    raw = tmp_path / "raw"
    remind.download_series(entry, raw, tmp_path / "us.json", api="idc", url=bucket.endpoint,
                           policy=FAST)  # fmt: skip
    assert bucket.proxy.object_gets(key) == 2
    (path,) = (raw / "ReMIND-001" / entry.series.uid).glob("*.dcm")
    assert path.read_bytes() == next(iter(cases[0].by_key("US").files().values()))
    # corrupted every time: refused, nothing in place
    bucket.proxy.fail(key, *["corrupt"] * 10)
    with pytest.raises(DownloadError, match="fails its ETag check"):
        remind.download_series(entry, tmp_path / "raw2", tmp_path / "us2.json", api="idc",
                               url=bucket.endpoint, policy=FAST)  # fmt: skip
    assert not (tmp_path / "raw2" / "ReMIND-001" / entry.series.uid).exists()


def test_idc_vanished_objects_are_a_clear_error(cases, fake_index, bucket, tmp_path):
    plan = remind.plan_cohort(["ReMIND-001"], ORDER, index=fake_index, targets="ours")
    entry = single_series(plan, cases, "ceT1")
    keys = objects_of(cases[0].by_key("ceT1"))
    bucket.delete(keys[0])
    advice = r"ReMIND-001: series .*3D_AX_T1_postcontrast.*Upgrade idc-index-data.*api: nbia"
    with pytest.raises(idc.VanishedSeries, match=advice):
        remind.download_series(entry, tmp_path / "raw", tmp_path / "o.json", api="idc",
                               url=bucket.endpoint, policy=FAST)  # fmt: skip
    for key in keys[1:]:
        bucket.delete(key)
    with pytest.raises(idc.VanishedSeries, match=advice):
        remind.download_series(entry, tmp_path / "raw", tmp_path / "o.json", api="idc",
                               url=bucket.endpoint, policy=FAST)  # fmt: skip
    # an object gone between the listing and the copy
    entry = single_series(plan, cases, "FLAIR")
    bucket.proxy.fail(objects_of(cases[0].by_key("FLAIR"))[2], "missing")
    with pytest.raises(idc.VanishedSeries, match="objects missing"):
        remind.download_series(entry, tmp_path / "raw", tmp_path / "o.json", api="idc",
                               url=bucket.endpoint, policy=FAST)  # fmt: skip
    assert not Ledger(tmp_path / "raw" / "ledger.jsonl").entries()


def test_multipart_etags_are_checked(tmp_path):
    body = np.random.default_rng(3).integers(0, 255, 12 * 2**20 + 7, dtype=np.uint8).tobytes()
    path = tmp_path / "object.dcm"
    path.write_bytes(body)
    parts = [body[i : i + 5 * 2**20] for i in range(0, len(body), 5 * 2**20)]
    combined = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert idc.etag_matches(path, f'"{combined}-3"')[0]
    assert idc.etag_matches(path, hashlib.md5(body).hexdigest())[0]
    assert not idc.etag_matches(path, f"{'0' * 32}-3")[0]
    assert not idc.etag_matches(path, "0" * 32)[0]


# ReMIND: conversion of the real shapes --------------------------------------------------


def test_ius_without_frame_of_reference_is_built_from_frame_positions(tmp_path):
    volume = np.random.default_rng(4).integers(0, 255, (14, 11, 10)).astype(float)
    origin = np.array([-10.0, -5.0, 30.0])
    kwargs = dict(frame_order=[3, 0, 9, 1, 2, 8, 4, 5, 7, 6])
    for frame_of_reference in ("generate", None):
        ds = factory.us_secondary_capture(
            volume, fake.ORIENTATION_OBLIQUE, (0.5, 0.5, 0.6), origin,
            frame_of_reference=frame_of_reference, **kwargs,
        )  # fmt: skip
        assert ds.SOPClassUID == remind.US_SOP_CLASS
        folder = tmp_path / str(frame_of_reference)
        factory.write_datasets([ds], folder)
        data, affine, notes = series_volume(folder)
        assert notes == ([] if frame_of_reference else [NO_FRAME_OF_REFERENCE])
        expected = fake.LPS_TO_RAS @ factory.lps_affine(
            fake.ORIENTATION_OBLIQUE, (0.5, 0.5, 0.6), origin
        )
        assert corners(affine, data.shape) == corners(expected, volume.shape)
        for index in [(0, 0, 0), (13, 10, 9), (5, 2, 6), (7, 3, 1)]:
            world = fake.world_of(expected, index)
            voxel = np.round(np.linalg.solve(affine, [*world, 1.0])[:3]).astype(int)
            assert data[tuple(voxel)] == volume[index], index


def test_mask_drawn_on_another_mr_follows_the_patient(cases, fake_index, bucket, tmp_path,
                                                      monkeypatch):  # fmt: skip
    from iusynth.preprocessing import registration

    case = cases[1]
    plan = remind.plan_cohort([case.patient], ORDER, index=fake_index, targets="ours")
    records = download_all(plan, tmp_path / "raw", tmp_path / "records", bucket.endpoint)
    records = records[case.patient]
    calls = []

    def aligned(reference, moving, options):
        calls.append((Path(reference).name, sorted(nib.load(moving).shape)))
        return registration.RegistrationResult(MOVED, 0.1)

    monkeypatch.setattr(registration, "align_mr_sequence", aligned)
    options = defaults(jobs.registration).registration
    out = tmp_path / "cohort" / case.patient
    source = remind.convert_subject(records, out, reference_order=ORDER, alignment=options)
    assert calls == [(f"{case.patient}_ceT1.nii.gz", [9, 10, 12])]
    assert source["annotation_sequence"] == "ceT1"
    mask_source = source["series"]["tumor-MR"]
    assert mask_source["drawn_on"] == "SEG_MR" and mask_source["aligned_to"] == "ceT1"
    assert mask_source["mr"]["description"] == "2D_AX_T2_FLAIR"
    assert any(NO_FRAME_OF_REFERENCE in note for note in source["notes"])  # its iUS has none
    assert any("2D_AX_T2_FLAIR" in note for note in source["notes"])
    # the mask lands on the tumour in the ceT1's world, not where the 2D FLAIR's header says
    want = {
        tuple(np.round(fake.world_of(case.expected_ras["ceT1"], v), 3))
        for v in np.argwhere(case.seg_mask > 0)
    }
    assert mask_world(nib.load(layout.subject_file(out, case.patient, "tumor-MR"))) == want
    # trusting the headers (align_mr_sequences: false): the mask stays in the FLAIR's world
    trusted = remind.convert_subject(
        records, tmp_path / "trusted" / case.patient, reference_order=ORDER, alignment=None
    )
    assert trusted["series"]["tumor-MR"]["alignment"] == "headers (identity)"
    moved_want = {
        tuple(np.round(fake.world_of(MOVED @ case.expected_ras["ceT1"], v), 3))
        for v in np.argwhere(case.seg_mask > 0)
    }
    got = mask_world(nib.load(layout.subject_file(tmp_path / "trusted" / case.patient,
                                                  case.patient, "tumor-MR")))  # fmt: skip
    assert got == moved_want


# ReMIND: the NBIA alternative ---------------------------------------------------------


def nbia_series(case, key: str) -> nbia.Series:
    series = case.by_key(key)
    return nbia.Series(series.uid, case.patient, series.modality, series.description,
                       series.study, len(series.datasets), None)  # fmt: skip


def test_nbia_download_is_checked_against_its_md5_list(cases, fake_index, server, tmp_path):
    zips = fake.serve_nbia(server, cases[:1])
    members = zipfile.ZipFile(io.BytesIO(zips[cases[0].by_key("T2").uid]))
    assert members.namelist()[:2] == ["00000001.dcm", "00000002.dcm"]
    assert members.read("md5hashes.csv").decode().startswith("Filename,MD5Hash\n")
    plan = remind.plan_cohort(["ReMIND-001"], ORDER, index=fake_index, targets="ours")
    entry = single_series(plan, cases, "T2")
    raw = tmp_path / "raw"
    remind.download_series(entry, raw, tmp_path / "t2.json", api="nbia",
                           url=f"{server.url}/nbia/", policy=FAST)  # fmt: skip
    record = json.loads((tmp_path / "t2.json").read_text())
    assert len(list(Path(record["folder"]).glob("*.dcm"))) == 9
    ledger_entry = Ledger(raw / "ledger.jsonl").verified(entry.series.uid)
    assert ledger_entry["source"] == "nbia" and ledger_entry["idc_index"] == idc.index_version()
    data, _, _ = series_volume(Path(record["folder"]))
    assert sorted(data.shape) == [9, 10, 12]


def test_server_error_then_success_is_retried(cases, server, tmp_path):
    zips = fake.serve_nbia(server, cases[:1])
    series = nbia_series(cases[0], "ceT1")
    path = fake.nbia_path("getImageWithMD5Hash", SeriesInstanceUID=series.uid)
    server.add(path, fake.Reply(b"oops", 500, "text/plain"), fake.Reply(zips[series.uid]))
    ledger = Ledger(tmp_path / "ledger.jsonl")
    folder = nbia.download_series(
        series, tmp_path, ledger, base_url=f"{server.url}/nbia", policy=FAST
    )
    assert server.hits[path] == 2
    assert len(list(folder.glob("*.dcm"))) == len(cases[0].by_key("ceT1").datasets)
    assert ledger.verified(series.uid) is not None


def test_truncated_zip_is_retried(cases, server, tmp_path):
    zips = fake.serve_nbia(server, cases[:1])
    series = nbia_series(cases[0], "FLAIR")
    body = zips[series.uid]
    path = fake.nbia_path("getImageWithMD5Hash", SeriesInstanceUID=series.uid)
    server.add(path, fake.Reply(body[: len(body) // 2]), fake.Reply(body))
    nbia.download_series(
        series, tmp_path, Ledger(tmp_path / "ledger.jsonl"), base_url=f"{server.url}/nbia",
        policy=FAST,
    )  # fmt: skip
    assert server.hits[path] == 2
    assert not leftovers(tmp_path)


def test_wrong_md5_is_refused_and_nothing_is_left(cases, server, tmp_path):
    series = nbia_series(cases[0], "FLAIR")
    body, _ = fake.series_zip(cases[0].by_key("FLAIR").datasets, corrupt_md5=True)
    path = fake.nbia_path("getImageWithMD5Hash", SeriesInstanceUID=series.uid)
    server.add(path, fake.Reply(body))
    with pytest.raises(DownloadError, match=r"failed verification 3 times.*MD5"):
        nbia.download_series(
            series, tmp_path, Ledger(tmp_path / "ledger.jsonl"), base_url=f"{server.url}/nbia",
            policy=FAST,
        )  # fmt: skip
    assert server.hits[path] == 3
    assert not (tmp_path / series.patient / series.uid).exists()
    assert not leftovers(tmp_path)
    assert (
        not (tmp_path / "ledger.jsonl").exists() or not Ledger(tmp_path / "ledger.jsonl").entries()
    )
    body, _ = fake.series_zip(cases[0].by_key("FLAIR").datasets, with_md5=False)
    server.add(path, fake.Reply(body))
    with pytest.raises(DownloadError, match=r"no md5hashes\.csv in the zip"):
        nbia.download_series(
            series, tmp_path, Ledger(tmp_path / "ledger.jsonl"), base_url=f"{server.url}/nbia",
            policy=FAST,
        )  # fmt: skip


def test_malicious_zip_entry_is_refused(cases, server, tmp_path):
    series = nbia_series(cases[0], "FLAIR")
    evil = fake.zip_bytes({"00000001.dcm": b"x", "../../escaped.txt": b"gotcha"})
    server.add(
        fake.nbia_path("getImageWithMD5Hash", SeriesInstanceUID=series.uid), fake.Reply(evil)
    )
    target = tmp_path / "raw"
    with pytest.raises(DownloadError, match="outside"):
        nbia.download_series(
            series, target, Ledger(target / "ledger.jsonl"), base_url=f"{server.url}/nbia",
            policy=FAST,
        )  # fmt: skip
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not leftovers(tmp_path)


def test_series_roles_follow_the_real_descriptions():
    def role(modality, description, study="Preop"):
        series = idc.IndexedSeries(
            "1", "P", study, modality, "", description, 1, 1.0, "u", "s3://b/u/*"
        )
        return remind.series_role(series)

    assert role("US", "US_pre_dura", "Intraop") == "US"
    assert role("US", "US_post_dura", "Intraop") is None
    assert role("US", "US_pre_imri", "Intraop") is None
    assert role("MR", "3D_AX_T2_SPACE") == "T2"
    assert role("MR", "3D_SAG_T2_SPACE") == "T2"
    assert role("MR", "3D_SAG_T2_FLAIR") == "FLAIR"
    assert role("MR", "3D_AX_T1_postcontrast") == "ceT1"
    assert role("MR", "2D_AX_T2_FLAIR") is None  # 2D
    assert role("MR", "3D_AX_T2_SPACE", study="Intraop") is None
    assert role("SEG", "tumor seg - MR ref: 3D_AX_T2_SPACE") == "SEG"
    assert role("SEG", "tumor seg - MR ref: 2D_AX_T2_FLAIR") == "SEG"
    for other in ("tumor_residual seg - MR ref: 3D_AX_T2_SPACE",
                  "tumor_target seg - MR ref: 3D_SAG_T2_FLAIR",
                  "cerebrum seg - MR ref: 3D_AX_T1_postcontrast",
                  "ventricles seg - MR ref: 3D_AX_T1_postcontrast",
                  "previous_resection_cavity seg - MR ref: 3D_AX_T1_postcontrast"):  # fmt: skip
        assert role("SEG", other) is None, other
    assert role("SEG", "tumor seg - MR ref: 3D_AX_T1_postcontrast", study="Intraop") is None


# Downloads in general --------------------------------------------------------------------


def test_html_page_instead_of_data_is_a_clear_error(server, tmp_path):
    server.add(
        "/file.nii.gz",
        fake.Reply(b"<!DOCTYPE html><html>maintenance</html>", content_type="text/html"),
    )
    with pytest.raises(DownloadError, match="HTML page instead of data"):
        dl.fetch(f"{server.url}/file.nii.gz", tmp_path / "file.nii.gz", policy=FAST)
    assert not list(tmp_path.iterdir())


def test_missing_file_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        dl.fetch(f"{server.url}/absent.nii.gz", tmp_path / "absent.nii.gz", policy=FAST)
    assert server.hits["/absent.nii.gz"] == 1


def test_disk_full_is_a_clear_error(server, tmp_path, monkeypatch):
    server.add("/big.bin", fake.Reply(b"0" * 1000))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dl, "_stream_to", full)
    with pytest.raises(DownloadError, match="disk full while writing"):
        dl.fetch(f"{server.url}/big.bin", tmp_path / "big.bin", policy=FAST)
    assert not list(tmp_path.iterdir())


def test_persistent_outage_gives_up_with_advice(server, tmp_path):
    server.add("/x.bin", fake.Reply(b"down", 503, "text/plain"))
    with pytest.raises(DownloadError, match=r"after 3 attempts.*rerun later"):
        dl.fetch(f"{server.url}/x.bin", tmp_path / "x.bin", policy=FAST)
    assert server.hits["/x.bin"] == 3


def test_safe_extract_refuses_escapes_links_and_overwrites(tmp_path):
    for name in ("../up.txt", "/abs/path.txt", "a/../../up.txt"):
        archive = tmp_path / "bad.zip"
        archive.write_bytes(fake.zip_bytes({"ok.txt": b"1", name: b"2"}))
        with pytest.raises(DownloadError, match="outside"):
            dl.safe_extract(archive, tmp_path / "out")
        assert not (tmp_path / "out" / "ok.txt").exists()  # checked before writing anything
    tar_path = tmp_path / "link.tar"
    with tarfile.open(tar_path, "w") as bundle:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        bundle.addfile(info)
    with pytest.raises(DownloadError, match="link"):
        dl.safe_extract(tar_path, tmp_path / "out")
    good = tmp_path / "good.zip"
    good.write_bytes(fake.zip_bytes({"d/f.txt": b"new"}))
    (tmp_path / "out2" / "d").mkdir(parents=True)
    (tmp_path / "out2" / "d" / "f.txt").write_bytes(b"verified")
    with pytest.raises(DownloadError, match="refusing to overwrite"):
        dl.safe_extract(good, tmp_path / "out2")
    assert (tmp_path / "out2" / "d" / "f.txt").read_bytes() == b"verified"
    (tmp_path / "out2" / "d" / "f.txt").write_bytes(b"new")
    assert dl.safe_extract(good, tmp_path / "out2")  # identical content: kept, no error


# RESECT ---------------------------------------------------------------------------------


def test_resect_download_conversion_and_landmarks(server, tmp_path):
    mr_voxels, us_voxels = fake.serve_resect_case(server, tmp_path)
    raw = tmp_path / "raw"
    urls = fake.resect_urls(server)  # the first address answers 404: the second is used
    resect.download_subject("Case1", raw, tmp_path / "case1.json", base_urls=urls, policy=FAST)
    resect.download_segmentations(
        raw, tmp_path / "seg.json", url=f"{server.url}/osf/zip", policy=FAST
    )
    assert "CC BY-NC-SA" in (raw / "LICENCE.txt").read_text()
    record = json.loads((tmp_path / "case1.json").read_text())
    checks = record["checksums"]
    assert checks["US"]["checksum"] == resect.PUBLISHED
    for kind in ("ceT1", "FLAIR", "landmarks"):  # no sidecar documented: SHA-256 recorded
        assert checks[kind]["checksum"] == resect.COMPUTED
        assert checks[kind]["sha256"] == resect.sha256_of(Path(record["files"][kind]))
    ledger = Ledger(raw / "ledger.jsonl").entries()
    assert {e["url"].split("/")[3] for e in ledger.values() if "url" in e} == {"nird-s3"}
    out = tmp_path / "cohort" / "Case1"
    source = resect.convert_subject(record, raw / "RESECT-SEG", out)
    assert source["checksums"]["ceT1"]["checksum"] == resect.COMPUTED
    assert SubjectRecord.read(out, "Case1").entry.available == {
        "ceT1", "FLAIR", "US", "tumor-MR", "tumor-US", "landmarks",
    }  # fmt: skip
    assert SubjectRecord.read(out).annotation_sequence("ceT1") == "FLAIR"
    pairs = read_tag_file(layout.subject_file(out, "Case1", "landmarks"))
    flair = nib.load(layout.subject_file(out, "Case1", "FLAIR"))
    us = nib.load(layout.subject_file(out, "Case1", "US"))
    for point, voxel in zip(pairs.first, mr_voxels, strict=True):
        index = np.linalg.inv(flair.affine) @ np.array([*point, 1.0])
        np.testing.assert_allclose(index[:3], voxel, atol=1e-3)
    # the same points through SimpleITK, which works in LPS
    image = sitk.ReadImage(str(layout.subject_file(out, "Case1", "US")))
    for point, voxel in zip(pairs.second, us_voxels, strict=True):
        assert image.TransformPhysicalPointToIndex(tuple(ras_to_lps(point[None])[0])) == voxel
        assert np.asarray(us.dataobj)[voxel] == 200
    # rerun: everything verified, nothing fetched again
    before = sum(server.hits.values())
    resect.download_subject("Case1", raw, tmp_path / "case1.json", base_urls=urls, policy=FAST)
    resect.download_segmentations(
        raw, tmp_path / "seg.json", url=f"{server.url}/osf/zip", policy=FAST
    )
    assert sum(server.hits.values()) == before


def test_resect_tag_file_in_the_providers_layout_is_read():
    text = fake.provider_tag_text(np.array([[1.5, -2.25, 3.0], [4.0, 5.0, -6.125]]),
                                  np.array([[1.0, 2.0, 3.0], [-4.0, 5.5, 6.0]]))  # fmt: skip
    assert not text.endswith("\n") and text.endswith('"";') and "1.500000 -2.250000" in text


def test_resect_case_without_landmarks_is_converted_without_them(server, tmp_path, caplog):
    fake.serve_resect_case(server, tmp_path, cases=(11,), landmarks=False)
    raw = tmp_path / "raw"
    with caplog.at_level(logging.WARNING):
        resect.download_subject(
            "Case11", raw, tmp_path / "case11.json", base_urls=fake.resect_urls(server),
            policy=FAST,
        )  # fmt: skip
    assert "converted without landmarks" in caplog.text
    record = json.loads((tmp_path / "case11.json").read_text())
    assert "landmarks" not in record["files"]
    resect.download_segmentations(
        raw, tmp_path / "seg.json", url=f"{server.url}/osf/zip", policy=FAST
    )
    out = tmp_path / "cohort" / "Case11"
    source = resect.convert_subject(record, raw / "RESECT-SEG", out)
    assert "landmarks" not in SubjectRecord.read(out, "Case11").entry.available
    assert "no landmark errors" in source["notes"][0]


def test_resect_wrong_md5_leaves_nothing(server, tmp_path):
    fake.serve_resect_case(server, tmp_path, wrong_md5=True)
    raw = tmp_path / "raw"
    with pytest.raises(DownloadError, match=r"MD5.*set cohorts\.resect\.url"):
        resect.download_subject(
            "Case1", raw, tmp_path / "case1.json", base_urls=fake.resect_urls(server),
            policy=FAST,
        )  # fmt: skip
    assert not (raw / resect.case_files(1)["US"]).exists()
    assert (raw / resect.case_files(1)["ceT1"]).exists()  # verified before the failure: kept
    assert not leftovers(raw)
    assert not (tmp_path / "case1.json").exists()


def test_resect_defaults_are_the_two_documented_addresses():
    assert catalog.RESECT_URLS == (
        "https://data.archive.sigma2.no/dataset/5686d8fa-2003-4837-8e66-8e887fabe21e/download/RESECT",
        "https://s3.nird.sigma2.no/archive-ro/5686d8fa-2003-4837-8e66-8e887fabe21e/RESECT",
    )
    assert resect.case_files(11)["US"] == "NIFTI/Case11/US/Case11-US-before.nii.gz"
    assert catalog.REMIND_APIS["nbia"] == (
        "https://nbia.cancerimagingarchive.net/nbia-api/services/v4/"
    )


# UPenn-GBM -------------------------------------------------------------------------------


def make_upenn_package(root: Path, cases: list[str], expert: set[str]) -> Path:
    """A package as TCIA's Aspera download lays it out, with UPENN-GBM.sums at its top.

    The first case also holds an ``old/`` folder with same-named files of other content.
    """
    top = root / "PKG - UPENN-GBM-NIfTI"
    package = top / "UPENN-GBM" / "NIfTI-files"
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    lines = []

    def add(relative: str, data) -> None:
        body = fake.write_nifti(package / relative, data, affine)
        lines.append(f"{hashlib.md5(body).hexdigest()}  UPENN-GBM/NIfTI-files/{relative}")

    for case in cases:
        for suffix in ("T1", "T1GD", "T2", "FLAIR"):
            add(f"images_structural/{case}/{case}_{suffix}.nii.gz",
                np.full((8, 8, 6), 100, np.int16))  # fmt: skip
        label = np.zeros((8, 8, 6), np.uint8)
        label[2:4, 2:4, 2:4] = 4
        if case in expert:
            add(f"images_segm/{case}_segm.nii.gz", label)
        else:
            add(f"automated_segm/{case}_automated_approx_segm.nii.gz", label)
    for suffix in ("T2", "FLAIR"):  # superseded copies, listed with their own MD5s
        add(f"images_structural/{cases[0]}/old/{cases[0]}_{suffix}.nii.gz",
            np.full((8, 8, 6), 7, np.int16))  # fmt: skip
    (package / "images_structural" / "UPENN-GBM-00003_21").mkdir()  # a follow-up scan
    (top / "UPENN-GBM.sums").write_text("\n".join(lines) + "\n")
    return top


def test_upenn_package_index_verify_convert(tmp_path):
    cases = ["UPENN-GBM-00001_11", "UPENN-GBM-00002_11"]
    package = make_upenn_package(tmp_path, cases, expert={"UPENN-GBM-00002_11"})
    assert upenn.find_checksum_list(package).name == "UPENN-GBM.sums"
    assert upenn.baseline_cases(package) == tuple(cases)
    summary = upenn.verify_package(
        package, None, cases, tmp_path / "verified.json", tmp_path / "raw"
    )
    # T2, T1GD, FLAIR and the label per case, the old/ copies left out
    assert summary["files_verified"] == 8 and not summary["files_unlisted"]
    assert summary["old_lines_ignored"] == 2
    out = tmp_path / "cohort" / cases[1]
    source = upenn.convert_case(package, cases[1], out)
    assert source["label_kind"] == "expert"
    assert SubjectRecord.read(out, cases[1]).entry.available == {"T2", "ceT1", "FLAIR", "tumor-MR"}
    # a corrupted file is named
    t2 = upenn.case_files(package, cases[0]).sequences["T2"]
    t2.write_bytes(t2.read_bytes()[:-3] + b"xyz")
    (tmp_path / "raw" / "ledger.jsonl").unlink()
    with pytest.raises(ValueError, match=f"{t2.name} fails its MD5"):
        upenn.verify_package(package, None, cases, tmp_path / "v2.json", tmp_path / "raw")


def test_upenn_sums_line_for_a_file_not_in_the_package_is_named(tmp_path):
    cases = ["UPENN-GBM-00001_11"]
    package = make_upenn_package(tmp_path, cases, expert=set())
    t1 = upenn.find_structural(package) / cases[0] / f"{cases[0]}_T1.nii.gz"
    t1.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(
        f"lists UPENN-GBM/NIfTI-files/images_structural/{cases[0]}/{cases[0]}_T1.nii.gz (case "
        f"{cases[0]}), which is not in the package")
        + ".*download that file.*again with Aspera"):  # fmt: skip
        upenn.verify_package(package, None, cases, tmp_path / "v.json", tmp_path / "raw")


def test_upenn_archive_is_indexed_without_extraction_and_spacing_checked(tmp_path):
    cases = ["UPENN-GBM-00007_11"]
    package = make_upenn_package(tmp_path / "pkg", cases, expert=set())
    archive = tmp_path / "upenn.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in package.rglob("*"):
            if path.is_file():
                bundle.write(path, path.relative_to(package.parent))
    assert upenn.baseline_cases(archive) == tuple(cases)
    extracted = tmp_path / "extracted"
    dl.safe_extract(archive, extracted)
    flair = upenn.case_files(extracted, cases[0]).sequences["FLAIR"]
    fake.write_nifti(flair, np.zeros((8, 8, 6), np.int16), np.diag([-2.0, -2.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="voxel spacing"):
        upenn.convert_case(extracted, cases[0], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_remind_download_and_convert_stages(cases, fake_index, bucket, tmp_path):
    """The command-line stages the rules run, on one subject, against the local bucket."""
    from iusynth.__main__ import main

    plan = remind.plan_cohort(["ReMIND-002"], ORDER, index=fake_index, targets="ours")
    settings = {"attempts": 2, "backoff_s": 0.01, "connect_timeout_s": 5, "read_timeout_s": 30}
    records = []
    for entry in plan:
        records.append(tmp_path / "downloads" / f"{entry.series.uid}.json")
        main(["remind-download", "--series", json.dumps(entry.row()), "--api", "idc",
              "--raw", str(tmp_path / "raw"), "--url", bucket.endpoint,
              "--download", json.dumps(settings), "--output", str(records[-1])])  # fmt: skip
    conversion = to_json(defaults(jobs.registration, align_mr_sequences=False))
    out = tmp_path / "cohort" / "ReMIND-002"
    main(["remind-convert", "--records", *map(str, records), "--settings",
          conversion, "--output", str(out)])  # fmt: skip
    assert SubjectRecord.read(out, "ReMIND-002").entry.available == {"US", "ceT1", "tumor-MR"}
    source = json.loads(layout.subject_file(out, "ReMIND-002", "source").read_text())
    assert source["series"]["tumor-MR"]["mr"]["description"] == "2D_AX_T2_FLAIR"
    assert source["series"]["US"]["notes"] == [NO_FRAME_OF_REFERENCE]


def test_mask_on_another_mr_is_aligned_by_niftyreg(bucket, tmp_path):
    """The same, with reg_aladin finding how the patient moved (no stand-in)."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    anatomy = ndimage.gaussian_filter(rng.normal(size=(48, 48, 36)), 3)
    anatomy = (anatomy - anatomy.min()) / np.ptp(anatomy) * 2000
    case = fake.remind_case_on_other_mr("ReMIND-003", MOVED, anatomy)
    index = fake.write_index(tmp_path / "index.parquet", [case])
    fake.publish_on_bucket(bucket, [case])
    plan = remind.plan_cohort([case.patient], ORDER, index=index, targets="ours")
    records = download_all(plan, tmp_path / "raw", tmp_path / "records", bucket.endpoint)
    out = tmp_path / "cohort" / case.patient
    source = remind.convert_subject(
        records[case.patient], out, reference_order=ORDER,
        alignment=dataclasses.replace(defaults(jobs.registration, 2).registration, levels=3),
    )  # fmt: skip
    found = np.asarray(source["series"]["tumor-MR"]["reference_to_mr"])
    np.testing.assert_allclose(found[:3, :3], MOVED[:3, :3], atol=0.02)
    np.testing.assert_allclose(found[:3, 3], MOVED[:3, 3], atol=1.0)
    image = nib.load(layout.subject_file(out, case.patient, "tumor-MR"))
    got = np.array(sorted(mask_world(image)))
    want = np.array(sorted(
        tuple(fake.world_of(case.expected_ras["ceT1"], v)) for v in np.argwhere(case.seg_mask)
    ))  # fmt: skip
    assert np.abs(got.mean(axis=0) - want.mean(axis=0)).max() < 1.0  # within a voxel
