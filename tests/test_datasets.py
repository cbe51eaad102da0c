"""Real-dataset code against a local server: download, verification, conversion, failures."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from iusynth import layout
from iusynth.datasets import download as dl
from iusynth.datasets import nbia, remind, resect, upenn
from iusynth.datasets.download import DownloadError, Ledger, RetryPolicy
from iusynth.tags import ras_to_lps, read_tag_file

from . import fake_servers as fake

FAST = RetryPolicy(attempts=3, backoff_s=0.01, connect_timeout_s=5, read_timeout_s=10)


@pytest.fixture
def server():
    state = fake.FakeServer()
    httpd = fake.start(state)
    yield state
    httpd.shutdown()


@pytest.fixture(scope="module")
def remind_case():
    return fake.remind_case()


def leftovers(folder: Path) -> list[Path]:
    """Temporary or partial files left anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if ".part" in p.name or p.suffix == ".zip"]


def remind_download(server, remind_case, tmp_path) -> tuple[Path, Path]:
    raw = tmp_path / "raw"
    listing = tmp_path / "series.json"
    remind.write_listing(listing, f"{server.url}/nbia", None, FAST, raw)
    record = tmp_path / "record.json"
    remind.download_subject(
        remind_case.patient, listing, raw, record, base_url=f"{server.url}/nbia", policy=FAST
    )
    return raw, record


def test_remind_download_and_conversion_keep_geometry(server, remind_case, tmp_path):
    fake.serve_remind(server, remind_case)
    raw, record = remind_download(server, remind_case, tmp_path)
    downloaded = json.loads(record.read_text())["series"]
    assert sorted(downloaded) == ["FLAIR", "SEG", "T2", "US", "ceT1"]
    assert len(downloaded["T2"]) == 2  # the pre-op candidates, not the intra-op one
    assert [s["description"] for s in downloaded["US"]] == ["US_pre_dura"]
    assert (raw / "LICENCE.txt").read_text().startswith("ReMIND")

    out = tmp_path / "cohort" / remind_case.patient
    source = remind.convert_subject(record, out)
    assert source["series"]["T2"]["description"] == "3D_AX_T2_SPACE"  # the finer candidate
    for role in ("US", "T2", "ceT1", "FLAIR"):
        image = nib.load(layout.subject_file(out, remind_case.patient, role))
        data = np.asarray(image.dataobj)
        expected = remind_case.expected_ras[role]
        np.testing.assert_allclose(
            sorted(np.linalg.norm(image.affine[:3, :3], axis=0)),
            sorted(np.linalg.norm(expected[:3, :3], axis=0)),
            atol=1e-4,
        )
        peak = np.unravel_index(np.argmax(data), data.shape)
        np.testing.assert_allclose(
            fake.world_of(image.affine, peak),
            fake.world_of(expected, remind_case.markers[role]),
            atol=1e-3,
        )
        # same grid: the eight corners coincide (highdicom may order the axes differently)
        assert corners(image.affine, data.shape) == corners(expected, remind_case.shapes[role])
    mask_image = nib.load(layout.subject_file(out, remind_case.patient, "tumor-MR"))
    mask = np.asarray(mask_image.dataobj)
    got = {tuple(np.round(fake.world_of(mask_image.affine, v), 3)) for v in np.argwhere(mask > 0)}
    want = {
        tuple(np.round(fake.world_of(remind_case.expected_ras["T2"], v), 3))
        for v in np.argwhere(remind_case.seg_mask > 0)
    }
    assert got == want
    assert source["annotation_sequence"] == "T2"
    assert not leftovers(tmp_path)


def corners(affine: np.ndarray, shape) -> set[tuple[float, ...]]:
    """World positions (rounded) of the eight corner voxels of a grid."""
    return {
        tuple(np.round(fake.world_of(affine, (i, j, k)), 3) + 0.0)
        for i in (0, shape[0] - 1)
        for j in (0, shape[1] - 1)
        for k in (0, shape[2] - 1)
    }


def test_rerun_skips_verified_series(server, remind_case, tmp_path):
    fake.serve_remind(server, remind_case)
    remind_download(server, remind_case, tmp_path)
    downloads = sum(n for path, n in server.hits.items() if "getImage" in path)
    remind_download(server, remind_case, tmp_path)
    assert sum(n for path, n in server.hits.items() if "getImage" in path) == downloads
    entries = Ledger(tmp_path / "raw" / "ledger.jsonl").entries()
    assert len(entries) == 6  # 2 T2 + ceT1 + FLAIR + US + SEG


def first_series(server, remind_case, description: str) -> nbia.Series:
    listing = json.loads(
        io.BytesIO(
            server.routes[fake.nbia_path("getSeries", Collection="ReMIND", format="json")][0].body
        ).read()
    )
    row = next(r for r in listing if r["SeriesDescription"] == description)
    return nbia.Series.from_listing(row)


def test_server_error_then_success_is_retried(server, remind_case, tmp_path):
    zips = fake.serve_remind(server, remind_case)
    series = first_series(server, remind_case, "3D_AX_T1_postcontrast")
    path = fake.nbia_path("getImageWithMD5Hash", SeriesInstanceUID=series.uid)
    server.add(
        path, fake.Reply(b"oops", 500, "text/plain"), fake.Reply(zips["3D_AX_T1_postcontrast"])
    )
    ledger = Ledger(tmp_path / "ledger.jsonl")
    folder = nbia.download_series(
        series, tmp_path, ledger, base_url=f"{server.url}/nbia", policy=FAST
    )
    assert server.hits[path] == 2
    assert len(list(folder.glob("*.dcm"))) == len(remind_case.series["3D_AX_T1_postcontrast"])
    assert ledger.verified(series.uid) is not None


def test_truncated_zip_is_retried(server, remind_case, tmp_path):
    zips = fake.serve_remind(server, remind_case)
    series = first_series(server, remind_case, "3D_SAG_T2_FLAIR")
    body = zips["3D_SAG_T2_FLAIR"]
    path = fake.nbia_path("getImageWithMD5Hash", SeriesInstanceUID=series.uid)
    server.add(path, fake.Reply(body[: len(body) // 2]), fake.Reply(body))
    nbia.download_series(
        series,
        tmp_path,
        Ledger(tmp_path / "ledger.jsonl"),
        base_url=f"{server.url}/nbia",
        policy=FAST,
    )
    assert server.hits[path] == 2
    assert not leftovers(tmp_path)


def test_wrong_md5_is_refused_and_nothing_is_left(server, remind_case, tmp_path):
    fake.serve_remind(server, remind_case)
    series = first_series(server, remind_case, "3D_SAG_T2_FLAIR")
    body, _ = fake.series_zip(remind_case.series["3D_SAG_T2_FLAIR"], corrupt_md5=True)
    path = fake.nbia_path("getImageWithMD5Hash", SeriesInstanceUID=series.uid)
    server.add(path, fake.Reply(body))
    with pytest.raises(DownloadError, match=r"failed verification 3 times.*MD5"):
        nbia.download_series(
            series,
            tmp_path,
            Ledger(tmp_path / "ledger.jsonl"),
            base_url=f"{server.url}/nbia",
            policy=FAST,
        )
    assert server.hits[path] == 3
    assert not (tmp_path / series.patient / series.uid).exists()
    assert not leftovers(tmp_path)
    assert (
        not (tmp_path / "ledger.jsonl").exists() or not Ledger(tmp_path / "ledger.jsonl").entries()
    )


def test_malicious_zip_entry_is_refused(server, remind_case, tmp_path):
    fake.serve_remind(server, remind_case)
    series = first_series(server, remind_case, "3D_SAG_T2_FLAIR")
    evil = fake.zip_bytes({"1-01.dcm": b"x", "../../escaped.txt": b"gotcha"})
    server.add(
        fake.nbia_path("getImageWithMD5Hash", SeriesInstanceUID=series.uid), fake.Reply(evil)
    )
    target = tmp_path / "raw"
    with pytest.raises(DownloadError, match="outside"):
        nbia.download_series(
            series,
            target,
            Ledger(target / "ledger.jsonl"),
            base_url=f"{server.url}/nbia",
            policy=FAST,
        )
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not leftovers(tmp_path)


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


def test_tcia_manifest_and_series_roles(tmp_path):
    manifest = tmp_path / "ReMIND.tcia"
    manifest.write_text(
        "downloadServerUrl=https://nbia.cancerimagingarchive.net/nbia-download/servlet/DownloadServlet\n"
        "includeAnnotation=true\nnoOfrRetry=4\ndatabasketId=manifest-1.tcia\nmanifestVersion=3.0\n"
        "ListOfSeriesToDownload=\n1.2.3.4\n1.2.3.5\n"
    )
    assert nbia.read_tcia_manifest(manifest) == ["1.2.3.4", "1.2.3.5"]
    manifest.write_text("just text\n")
    with pytest.raises(ValueError, match="ListOfSeriesToDownload"):
        nbia.read_tcia_manifest(manifest)

    def role(modality, description, study="preop"):
        return remind.series_role(nbia.Series("1", "P", modality, description, study, 1, None))

    assert role("US", "US_pre_dura") == "US"
    assert role("US", "US_post_dura") is None
    assert role("MR", "3D_AX_T2_SPACE") == "T2"
    assert role("MR", "3D_SAG_T2_FLAIR") == "FLAIR"
    assert role("MR", "3D_AX_T2_FLAIR_SPACE") == "FLAIR"
    assert role("MR", "3D_AX_T1_postcontrast") == "ceT1"
    assert role("MR", "AX_T1_postcontrast") is None  # 2D
    assert role("MR", "3D_AX_T2_SPACE", study="Intraop MRI") is None
    assert role("SEG", "tumor seg - MR ref: 3D_AX_T2_SPACE") == "SEG"


def test_resect_download_conversion_and_landmarks(server, tmp_path):
    mr_voxels, us_voxels = fake.serve_resect_case(server, tmp_path)
    raw = tmp_path / "raw"
    resect.download_subject(
        "Case1", raw, tmp_path / "case1.json", base_url=f"{server.url}/resect", policy=FAST
    )
    resect.download_segmentations(
        raw, tmp_path / "seg.json", url=f"{server.url}/osf/zip", policy=FAST
    )
    assert "CC BY-NC-SA" in (raw / "LICENCE.txt").read_text()
    record = json.loads((tmp_path / "case1.json").read_text())
    out = tmp_path / "cohort" / "Case1"
    resect.convert_subject(record, raw / "RESECT-SEG", out)
    assert layout.scan_subject(out, "Case1").available == {
        "ceT1",
        "FLAIR",
        "US",
        "tumor-MR",
        "tumor-US",
        "landmarks",
    }
    assert layout.annotation_sequence(out, "Case1", "ceT1") == "FLAIR"
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
    resect.download_subject(
        "Case1", raw, tmp_path / "case1.json", base_url=f"{server.url}/resect", policy=FAST
    )
    resect.download_segmentations(
        raw, tmp_path / "seg.json", url=f"{server.url}/osf/zip", policy=FAST
    )
    assert sum(server.hits.values()) == before


def test_resect_wrong_md5_leaves_nothing(server, tmp_path):
    fake.serve_resect_case(server, tmp_path, wrong_md5=True)
    raw = tmp_path / "raw"
    with pytest.raises(DownloadError, match="MD5"):
        resect.download_subject(
            "Case1", raw, tmp_path / "case1.json", base_url=f"{server.url}/resect", policy=FAST
        )
    assert not (raw / resect.case_files(1)["FLAIR"]).exists()
    assert (raw / resect.case_files(1)["ceT1"]).exists()  # verified before the failure: kept
    assert not leftovers(raw)
    assert not (tmp_path / "case1.json").exists()


def make_upenn_package(root: Path, cases: list[str], expert: set[str]) -> Path:
    package = root / "PKG - UPENN-GBM-NIfTI" / "UPENN-GBM" / "NIfTI-files"
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    lines = []
    for case in cases:
        for suffix in ("T1", "T1GD", "T2", "FLAIR"):
            path = package / "images_structural" / case / f"{case}_{suffix}.nii.gz"
            body = fake.write_nifti(path, np.full((8, 8, 6), 100, np.int16), affine)
            lines.append(f"{hashlib.md5(body).hexdigest()}  {path.relative_to(package)}")
        label = np.zeros((8, 8, 6), np.uint8)
        label[2:4, 2:4, 2:4] = 4
        folder = (
            ("images_segm", f"{case}_segm.nii.gz")
            if case in expert
            else ("automated_segm", f"{case}_automated_approx_segm.nii.gz")
        )
        body = fake.write_nifti(package / folder[0] / folder[1], label, affine)
        lines.append(f"{hashlib.md5(body).hexdigest()}  {folder[0]}/{folder[1]}")
    (package / "images_structural" / "UPENN-GBM-00003_21").mkdir()  # a follow-up scan
    (root / "PKG - UPENN-GBM-NIfTI" / "UPENN-GBM_md5.txt").write_text("\n".join(lines) + "\n")
    return root / "PKG - UPENN-GBM-NIfTI"


def test_upenn_package_index_verify_convert(tmp_path):
    cases = ["UPENN-GBM-00001_11", "UPENN-GBM-00002_11"]
    package = make_upenn_package(tmp_path, cases, expert={"UPENN-GBM-00002_11"})
    assert upenn.baseline_cases(package) == tuple(cases)
    summary = upenn.verify_package(
        package, None, cases, tmp_path / "verified.json", tmp_path / "raw"
    )
    assert (
        summary["files_verified"] == 8
    )  # T2, T1GD, FLAIR and the label per case and not summary["files_unlisted"]
    out = tmp_path / "cohort" / cases[1]
    source = upenn.convert_case(package, cases[1], out)
    assert source["label_kind"] == "expert"
    assert layout.scan_subject(out, cases[1]).available == {"T2", "ceT1", "FLAIR", "tumor-MR"}
    # a corrupted file is named
    t2 = upenn.case_files(package, cases[0]).sequences["T2"]
    t2.write_bytes(t2.read_bytes()[:-3] + b"xyz")
    (tmp_path / "raw" / "ledger.jsonl").unlink()
    with pytest.raises(ValueError, match=f"{t2.name} fails its MD5"):
        upenn.verify_package(package, None, cases, tmp_path / "v2.json", tmp_path / "raw")


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
