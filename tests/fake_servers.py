"""A local HTTP server (127.0.0.1) that plays TCIA's NBIA API, the NIRD archive and OSF.

Routes map a path (query included, as sent) to a list of responses served in turn, the
last one repeated: so a test can answer 500 first and the real data next.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from iusynth.datasets import resect
from iusynth.tags import LandmarkPairs, write_tag_file

from . import dicom_factory as factory


@dataclass
class Reply:
    """One HTTP answer."""

    body: bytes
    status: int = 200
    content_type: str = "application/octet-stream"
    length: int | None = None  # Content-Length to announce (default: the body's)


@dataclass
class FakeServer:
    """Routes and request counts of the running server."""

    routes: dict[str, list[Reply]] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    url: str = ""

    def add(self, path: str, *replies: Reply) -> None:
        """Serve ``replies`` in turn at ``path`` (the last one repeats)."""
        self.routes[path] = list(replies)


def start(server_state: FakeServer) -> ThreadingHTTPServer:
    """Start the server in a daemon thread; fill ``server_state.url``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            replies = server_state.routes.get(self.path)
            count = server_state.hits[self.path]
            server_state.hits[self.path] += 1
            if replies is None:
                reply = Reply(b"not found", 404, "text/plain")
            else:
                reply = replies[min(count, len(replies) - 1)]
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header(
                "Content-Length", str(reply.length if reply.length is not None else len(reply.body))
            )
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def nbia_path(endpoint: str, **params: str) -> str:
    """The request path of an NBIA v4 call, as requests encodes it."""
    return f"/nbia/{endpoint}?{urlencode(params)}"


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip archive of ``files`` in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def series_zip(
    datasets: list, with_md5: bool = True, corrupt_md5: bool = False
) -> tuple[bytes, int]:
    """An NBIA series zip (``1-NN.dcm`` + ``md5hashes.csv``) and the DICOM bytes in it."""
    import pydicom

    files = {}
    for index, ds in enumerate(datasets, start=1):
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        files[f"1-{index:02d}.dcm"] = buffer.getvalue()
    size = sum(len(data) for data in files.values())
    if with_md5:
        rows = ["FileName,MD5Hash"]
        for name, data in files.items():
            digest = hashlib.md5(data).hexdigest()
            rows.append(f"{name},{'0' * 32 if corrupt_md5 else digest}")
        files["md5hashes.csv"] = ("\n".join(rows) + "\n").encode()
    return zip_bytes(files), size


@dataclass
class RemindCase:
    """What the fake NBIA server holds for one patient, and the geometry to expect."""

    patient: str
    series: dict[str, list]  # description -> datasets
    uids: dict[str, str]  # description -> SeriesInstanceUID
    expected_ras: dict[str, np.ndarray]  # role -> RAS affine of the chosen series
    markers: dict[str, tuple[int, int, int]]  # role -> voxel index (column, row, slice) of the max
    shapes: dict[str, tuple[int, int, int]]  # role -> (columns, rows, slices)
    seg_mask: np.ndarray


ORIENTATION_AX = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
ORIENTATION_SAG = np.array([0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
ORIENTATION_OBLIQUE = np.array([0.8, 0.6, 0.0, 0.0, 0.0, -1.0])


def _marked(shape: tuple[int, int, int], marker: tuple[int, int, int], peak: float) -> np.ndarray:
    volume = np.tile(np.arange(shape[0], dtype=float)[:, None, None], (1, shape[1], shape[2]))
    volume[marker] = peak
    return volume


def remind_case(patient: str = "ReMIND-001") -> RemindCase:
    """One ReMIND-like patient: T2 (two candidates), ceT1, FLAIR, iUS, SEG and distractors."""
    frame = "1.2.3.4.5"
    geometry = {
        "3D_AX_T2_SPACE": (
            ORIENTATION_AX,
            (1.0, 1.0, 1.2),
            np.array([-20.0, -30.0, 10.0]),
            (3, 5, 7),
        ),
        "3D_AX_T2_SPACE-r": (
            ORIENTATION_AX,
            (2.0, 2.0, 2.0),
            np.array([-20.0, -30.0, 10.0]),
            (2, 2, 3),
        ),
        "3D_AX_T1_postcontrast": (
            ORIENTATION_AX,
            (0.9, 0.9, 1.0),
            np.array([-21.0, -31.0, 9.0]),
            (4, 6, 2),
        ),
        "3D_SAG_T2_FLAIR": (
            ORIENTATION_SAG,
            (1.0, 1.0, 1.0),
            np.array([5.0, -30.0, 40.0]),
            (6, 3, 4),
        ),
    }
    series, uids, expected, markers = {}, {}, {}, {}
    roles = {"3D_AX_T2_SPACE": "T2", "3D_AX_T1_postcontrast": "ceT1", "3D_SAG_T2_FLAIR": "FLAIR"}
    for description, (orientation, spacing, origin, marker) in geometry.items():
        shape = (12, 10, 9) if "-r" not in description else (6, 5, 5)
        datasets = factory.mr_series(
            _marked(shape, marker, 3000.0),
            orientation,
            spacing,
            origin,
            patient=patient,
            description=description,
            frame_of_reference=frame,
        )
        series[description] = datasets
        uids[description] = str(datasets[0].SeriesInstanceUID)
        if description in roles:
            expected[roles[description]] = np.diag([-1.0, -1.0, 1.0, 1.0]) @ factory.lps_affine(
                orientation, spacing, origin
            )
            markers[roles[description]] = marker
    us_marker = (5, 2, 6)
    us = factory.us_volume(
        _marked((14, 11, 10), us_marker, 255.0).clip(0, 255),
        ORIENTATION_OBLIQUE,
        (0.5, 0.5, 0.6),
        np.array([-10.0, -5.0, 30.0]),
        patient=patient,
    )
    series["US_pre_dura"] = [us]
    uids["US_pre_dura"] = str(us.SeriesInstanceUID)
    expected["US"] = np.diag([-1.0, -1.0, 1.0, 1.0]) @ factory.lps_affine(
        ORIENTATION_OBLIQUE, (0.5, 0.5, 0.6), np.array([-10.0, -5.0, 30.0])
    )
    markers["US"] = us_marker
    post = factory.us_volume(
        np.zeros((4, 4, 3)),
        ORIENTATION_AX,
        (1.0, 1.0, 1.0),
        np.zeros(3),
        patient=patient,
        description="US_post_dura",
    )
    series["US_post_dura"] = [post]
    uids["US_post_dura"] = str(post.SeriesInstanceUID)
    mask = np.zeros((12, 10, 9), np.uint8)
    mask[2:6, 3:7, 4:8] = 1
    seg = factory.segmentation(series["3D_AX_T2_SPACE"], mask, "tumor seg - MR ref: 3D_AX_T2_SPACE")
    series["tumor seg - MR ref: 3D_AX_T2_SPACE"] = [seg]
    uids["tumor seg - MR ref: 3D_AX_T2_SPACE"] = str(seg.SeriesInstanceUID)
    shapes = {"T2": (12, 10, 9), "ceT1": (12, 10, 9), "FLAIR": (12, 10, 9), "US": (14, 11, 10)}
    return RemindCase(patient, series, uids, expected, markers, shapes, mask)


def serve_remind(server: FakeServer, case: RemindCase, **zip_options: bool) -> dict[str, bytes]:
    """Publish a ReMIND case: the collection listing and one zip per series."""
    listing, zips = [], {}
    for description, datasets in case.series.items():
        body, size = series_zip(datasets, **zip_options)
        zips[description] = body
        modality = str(datasets[0].Modality)
        listing.append(
            {
                "SeriesInstanceUID": case.uids[description],
                "PatientID": case.patient,
                "Modality": modality,
                "SeriesDescription": description,
                "StudyDesc": "preop",
                "ImageCount": len(datasets),
                "FileSize": size,
                "Collection": "ReMIND",
            }
        )
        server.add(
            nbia_path("getImageWithMD5Hash", SeriesInstanceUID=case.uids[description]),
            Reply(body, content_type="application/zip"),
        )
    intraop = factory.mr_series(
        np.ones((4, 4, 3)),
        ORIENTATION_AX,
        (1.0, 1.0, 1.0),
        np.zeros(3),
        patient=case.patient,
        description="3D_AX_T2_SPACE",
    )
    listing.append(
        {
            "SeriesInstanceUID": str(intraop[0].SeriesInstanceUID),
            "PatientID": case.patient,
            "Modality": "MR",
            "SeriesDescription": "3D_AX_T2_SPACE",
            "StudyDesc": "Intraop iMRI",
            "ImageCount": 3,
            "FileSize": 1,
        }
    )
    server.add(
        nbia_path("getSeries", Collection="ReMIND", format="json"),
        Reply(json.dumps(listing).encode(), content_type="application/json"),
    )
    return zips


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> bytes:
    """Save a NIfTI file and return its bytes."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path.read_bytes()


def world_of(affine: np.ndarray, index) -> np.ndarray:
    """World position of a voxel index under an affine."""
    return (affine @ np.array([*index, 1.0]))[:3]


def nifti_route(server, tmp_path, relative: str, data, affine, md5: str | None = "right") -> bytes:
    body = write_nifti(tmp_path / "src" / relative, data, affine)
    server.add("/resect/" + relative, Reply(body))
    if md5 is not None:
        digest = hashlib.md5(body).hexdigest() if md5 == "right" else "f" * 32
        server.add(
            "/resect/" + relative + ".md5",
            Reply(f"{digest}  {Path(relative).name}\n".encode(), content_type="text/plain"),
        )
    return body


def serve_resect_case(server, tmp_path, wrong_md5: bool = False):
    """RESECT Case1 on the fake NIRD archive and RESECT-SEG on the fake OSF."""
    flair_affine = np.array(
        [[-0.9, 0, 0, 60.0], [0, 0.9, 0, -80.0], [0, 0, 1.1, -20.0], [0, 0, 0, 1]]
    )
    us_affine = np.array(
        [[0.3, 0, 0, -5.0], [0, 0.3, 0.1, -10.0], [0, -0.1, 0.3, 15.0], [0, 0, 0, 1]]
    )
    flair = np.zeros((20, 22, 18), np.int16)
    us = np.zeros((16, 15, 14), np.uint8)
    mr_voxels = [(3, 4, 5), (10, 12, 8), (15, 2, 14)]
    us_voxels = [(2, 3, 4), (9, 11, 7), (13, 1, 12)]
    for v in mr_voxels:
        flair[v] = 1000
    for v in us_voxels:
        us[v] = 200
    files = resect.case_files(1)
    nifti_route(server, tmp_path, files["ceT1"][len("") :], flair, flair_affine)
    nifti_route(
        server, tmp_path, files["FLAIR"], flair, flair_affine, md5="wrong" if wrong_md5 else "right"
    )
    nifti_route(server, tmp_path, files["US"], us, us_affine)
    pairs = LandmarkPairs(
        np.array([world_of(flair_affine, v) for v in mr_voxels]),
        np.array([world_of(us_affine, v) for v in us_voxels]),
        ("a", "b", "c"),
    )
    tag = tmp_path / "src" / files["landmarks"]
    tag.parent.mkdir(parents=True, exist_ok=True)
    write_tag_file(tag, pairs)
    server.add("/resect/" + files["landmarks"], Reply(tag.read_bytes(), content_type="text/plain"))
    mask_us = (us > 0).astype(np.uint8)
    mask_mr = (flair > 0).astype(np.uint8)
    seg_zip = zip_bytes(
        {
            "RESECT-SEG/Case1/Case1-US-before-tumor.nii.gz": write_nifti(
                tmp_path / "m1.nii.gz", mask_us, us_affine
            ),
            "RESECT-SEG/Case1/Case1-FLAIR-tumor.nii.gz": write_nifti(
                tmp_path / "m2.nii.gz", mask_mr, flair_affine
            ),
        }
    )
    server.add("/osf/zip", Reply(seg_zip, content_type="application/zip"))
    return mr_voxels, us_voxels
