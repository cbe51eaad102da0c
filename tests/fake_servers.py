"""A local HTTP server (127.0.0.1) that plays TCIA's NBIA API, the NIRD archive and OSF.

Routes map a path (query included, as sent) to a list of responses served in turn, the
last one repeated: so a test can answer 500 first and the real data next.
"""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from iusynth.cohorts.datasets import resect

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


def dicom_bytes(ds) -> bytes:
    """A dataset as the bytes of a DICOM file."""
    import pydicom

    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def series_zip(
    datasets: list, with_md5: bool = True, corrupt_md5: bool = False
) -> tuple[bytes, int]:
    """An NBIA series zip and the DICOM bytes in it, as getImageWithMD5Hash sends it.

    Members are named ``00000001.dcm``, ``00000002.dcm``...; ``md5hashes.csv`` holds a
    ``Filename,MD5Hash`` header and one row per member.
    """
    files = {f"{index:08d}.dcm": dicom_bytes(ds) for index, ds in enumerate(datasets, start=1)}
    size = sum(len(data) for data in files.values())
    if with_md5:
        rows = ["Filename,MD5Hash"]
        for name, data in files.items():
            digest = hashlib.md5(data).hexdigest()
            rows.append(f"{name},{'0' * 32 if corrupt_md5 else digest}")
        files["md5hashes.csv"] = ("\n".join(rows) + "\n").encode()
    return zip_bytes(files), size


@dataclass
class FakeSeries:
    """One series of the fake ReMIND collection, with its IDC index row."""

    key: str  # a name unique within the case (descriptions repeat across studies)
    description: str
    study: str  # "Preop" or "Intraop", as in ReMIND
    datasets: list
    crdc_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def modality(self) -> str:
        return str(self.datasets[0].Modality)

    def files(self) -> dict[str, bytes]:
        """Object name -> bytes, one object per instance, named as IDC names them."""
        return {f"{uuid.uuid5(uuid.NAMESPACE_OID, str(ds.SOPInstanceUID))}.dcm": dicom_bytes(ds)
                for ds in self.datasets}  # fmt: skip

    def index_row(self, patient: str) -> dict:
        """The series' row of IDC's index."""
        size = sum(len(body) for body in self.files().values())
        return {
            "collection_id": "remind",
            "analysis_result_id": None,
            "PatientID": patient,
            "StudyDescription": self.study,
            "Modality": self.modality,
            "SOPClassUID": str(self.datasets[0].SOPClassUID),
            "SeriesDescription": self.description,
            "SeriesInstanceUID": self.uid,
            "instanceCount": len(self.datasets),
            "series_size_MB": size / 1e6,
            "crdc_series_uuid": self.crdc_uuid,
            "series_aws_url": f"s3://idc-open-data/{self.crdc_uuid}/*",
            "license_short_name": "CC BY 4.0",
        }


@dataclass
class RemindCase:
    """One fake ReMIND patient: its series, and the geometry to expect once converted."""

    patient: str
    series: list[FakeSeries]
    expected_ras: dict[str, np.ndarray]  # role -> RAS affine of the planned series
    markers: dict[str, tuple[int, int, int]]  # role -> voxel index (column, row, slice) of the max
    shapes: dict[str, tuple[int, int, int]]  # role -> (columns, rows, slices)
    seg_mask: np.ndarray  # the planned tumour mask, on the grid of ``seg_on``
    seg_on: str  # the key of the series the planned mask was drawn on
    expected_plan: dict[str, str]  # role -> key of the series the plan must choose

    def by_key(self, key: str) -> FakeSeries:
        return next(series for series in self.series if series.key == key)


ORIENTATION_AX = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
ORIENTATION_SAG = np.array([0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
ORIENTATION_OBLIQUE = np.array([0.8, 0.6, 0.0, 0.0, 0.0, -1.0])
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _marked(shape: tuple[int, int, int], marker: tuple[int, int, int], peak: float) -> np.ndarray:
    volume = np.tile(np.arange(shape[0], dtype=float)[:, None, None], (1, shape[1], shape[2]))
    volume[marker] = peak
    return volume


def _mr(patient, key, description, study, orientation, spacing, origin, marker, shape):
    datasets = factory.mr_series(
        _marked(shape, marker, 3000.0), orientation, spacing, origin,
        patient=patient, description=description, frame_of_reference="1.2.3.4.5",
    )  # fmt: skip
    return FakeSeries(key, description, study, datasets)


def remind_case(patient: str = "ReMIND-001", *, us_frame_of_reference: bool = True) -> RemindCase:
    """A ReMIND-like patient with every distractor the real collection has.

    Pre-op: T2 SPACE (two candidates, the axial one has more slices), 3D post-contrast T1,
    3D FLAIR, a 2D FLAIR; tumour SEGs drawn on the T2 (the reference, to be chosen) and on
    the ceT1; ``tumor_target`` and ``cerebrum`` SEGs. Intra-op: the pre-dura iUS (PixelMed
    multi-frame grayscale byte SC), the post-dura iUS, an intra-op T2 SPACE, a
    ``tumor_residual`` SEG and an intra-op ``tumor seg``. No SEG references its series.
    """
    shape = (12, 10, 9)
    series = [
        _mr(patient, "T2", "3D_AX_T2_SPACE", "Preop", ORIENTATION_AX, (1.0, 1.0, 1.2),
            np.array([-20.0, -30.0, 10.0]), (3, 5, 7), shape),
        _mr(patient, "T2-sag", "3D_SAG_T2_SPACE", "Preop", ORIENTATION_SAG, (2.0, 2.0, 2.0),
            np.array([5.0, -30.0, 40.0]), (2, 2, 3), (6, 5, 5)),
        _mr(patient, "ceT1", "3D_AX_T1_postcontrast", "Preop", ORIENTATION_AX, (0.9, 0.9, 1.0),
            np.array([-21.0, -31.0, 9.0]), (4, 6, 2), shape),
        _mr(patient, "FLAIR", "3D_SAG_T2_FLAIR", "Preop", ORIENTATION_SAG, (1.0, 1.0, 1.0),
            np.array([5.0, -30.0, 40.0]), (6, 3, 4), shape),
        _mr(patient, "FLAIR-2D", "2D_AX_T2_FLAIR", "Preop", ORIENTATION_AX, (1.0, 1.0, 5.0),
            np.array([-20.0, -30.0, 10.0]), (1, 1, 1), (12, 10, 3)),
        _mr(patient, "T2-intraop", "3D_AX_T2_SPACE", "Intraop", ORIENTATION_AX, (1.0, 1.0, 1.0),
            np.zeros(3), (1, 1, 1), (12, 10, 12)),
    ]  # fmt: skip
    mr = {s.key: s for s in series}
    roles = {"T2": "T2", "ceT1": "ceT1", "FLAIR": "FLAIR"}
    geometry = {
        "T2": (ORIENTATION_AX, (1.0, 1.0, 1.2), np.array([-20.0, -30.0, 10.0]), (3, 5, 7)),
        "ceT1": (ORIENTATION_AX, (0.9, 0.9, 1.0), np.array([-21.0, -31.0, 9.0]), (4, 6, 2)),
        "FLAIR": (ORIENTATION_SAG, (1.0, 1.0, 1.0), np.array([5.0, -30.0, 40.0]), (6, 3, 4)),
    }
    expected, markers = {}, {}
    for role, (orientation, spacing, origin, marker) in geometry.items():
        expected[roles[role]] = LPS_TO_RAS @ factory.lps_affine(orientation, spacing, origin)
        markers[roles[role]] = marker
    us_marker = (5, 2, 6)
    us_origin = np.array([-10.0, -5.0, 30.0])
    us = factory.us_secondary_capture(
        _marked((14, 11, 10), us_marker, 255.0).clip(0, 255),
        ORIENTATION_OBLIQUE, (0.5, 0.5, 0.6), us_origin, patient=patient,
        frame_of_reference="generate" if us_frame_of_reference else None,
        frame_order=[3, 0, 9, 1, 2, 8, 4, 5, 7, 6],
    )  # fmt: skip
    series.append(FakeSeries("US", "US_pre_dura", "Intraop", [us]))
    expected["US"] = LPS_TO_RAS @ factory.lps_affine(
        ORIENTATION_OBLIQUE, (0.5, 0.5, 0.6), us_origin
    )
    markers["US"] = us_marker
    post = factory.us_secondary_capture(
        np.zeros((4, 4, 3)), ORIENTATION_AX, (1.0, 1.0, 1.0), np.zeros(3), patient=patient,
        description="US_post_dura",
    )  # fmt: skip
    series.append(FakeSeries("US-post", "US_post_dura", "Intraop", [post]))
    mask = np.zeros(shape, np.uint8)
    mask[2:6, 3:7, 4:8] = 1
    other = np.zeros(shape, np.uint8)
    other[0:2, 0:2, 0:2] = 1
    segs = [
        ("SEG", "tumor seg - MR ref: 3D_AX_T2_SPACE", "Preop", "T2", mask),
        ("SEG-ceT1", "tumor seg - MR ref: 3D_AX_T1_postcontrast", "Preop", "ceT1", other),
        ("SEG-target", "tumor_target seg - MR ref: 3D_AX_T2_SPACE", "Preop", "T2", other),
        ("SEG-cerebrum", "cerebrum seg - MR ref: 3D_AX_T1_postcontrast", "Preop", "ceT1", other),
        ("SEG-residual", "tumor_residual seg - MR ref: 3D_AX_T2_SPACE", "Intraop", "T2-intraop",
         np.ones((12, 10, 12), np.uint8)),
        ("SEG-intraop", "tumor seg - MR ref: 3D_AX_T2_SPACE", "Intraop", "T2-intraop",
         np.ones((12, 10, 12), np.uint8)),
    ]  # fmt: skip
    for key, description, study, on, drawn in segs:
        seg = factory.segmentation(mr[on].datasets, drawn, description, referenced=False)
        series.append(FakeSeries(key, description, study, [seg]))
    shapes = {"T2": shape, "ceT1": shape, "FLAIR": shape, "US": (14, 11, 10)}
    plan = {"US": "US", "T2": "T2", "ceT1": "ceT1", "FLAIR": "FLAIR", "SEG": "SEG"}
    return RemindCase(patient, series, expected, markers, shapes, mask, "T2", plan)


def remind_case_on_other_mr(
    patient: str, moved: np.ndarray, anatomy: np.ndarray | None = None
) -> RemindCase:
    """A patient whose only tumour mask was drawn on a 2D FLAIR (none of our sequences).

    The 2D FLAIR was acquired after the patient moved: its world is the ceT1's mapped by
    ``moved`` (RAS, ceT1 world -> 2D FLAIR world). The iUS lacks FrameOfReferenceUID.
    With ``anatomy``, both MR show that volume (so a registration can find ``moved``).
    """
    shape = (12, 10, 9) if anatomy is None else anatomy.shape
    ce_origin = np.array([-21.0, -31.0, 9.0])
    flair_ras = moved @ LPS_TO_RAS @ factory.lps_affine(ORIENTATION_AX, (1.0, 1.0, 1.0), ce_origin)
    flair_lps = LPS_TO_RAS @ flair_ras
    rotation = flair_lps[:3, :3]
    orientation = np.concatenate([rotation[:, 0], rotation[:, 1]])
    if anatomy is None:
        ce = _mr(patient, "ceT1", "3D_AX_T1_postcontrast", "Preop", ORIENTATION_AX,
                 (1.0, 1.0, 1.0), ce_origin, (4, 6, 2), shape)  # fmt: skip
        flair = _mr(patient, "FLAIR-2D", "2D_AX_T2_FLAIR", "Preop", orientation, (1.0, 1.0, 1.0),
                    flair_lps[:3, 3], (1, 1, 1), shape)  # fmt: skip
    else:
        ce, flair = (
            FakeSeries(key, description, "Preop", factory.mr_series(
                anatomy, axes, (1.0, 1.0, 1.0), origin, patient=patient, description=description,
            ))
            for key, description, axes, origin in (
                ("ceT1", "3D_AX_T1_postcontrast", ORIENTATION_AX, ce_origin),
                ("FLAIR-2D", "2D_AX_T2_FLAIR", orientation, flair_lps[:3, 3]),
            )
        )  # fmt: skip
    us = factory.us_secondary_capture(
        _marked((14, 11, 10), (5, 2, 6), 255.0).clip(0, 255), ORIENTATION_OBLIQUE,
        (0.5, 0.5, 0.6), np.array([-10.0, -5.0, 30.0]), patient=patient, frame_of_reference=None,
    )  # fmt: skip
    mask = np.zeros(shape, np.uint8)
    centre = [n // 2 for n in shape]
    mask[
        centre[0] - 2 : centre[0] + 1, centre[1] - 2 : centre[1] + 1, centre[2] - 1 : centre[2] + 2
    ] = 1
    seg = factory.segmentation(
        flair.datasets, mask, "tumor seg - MR ref: 2D_AX_T2_FLAIR", referenced=False
    )
    series = [ce, flair, FakeSeries("US", "US_pre_dura", "Intraop", [us]),
              FakeSeries("SEG", "tumor seg - MR ref: 2D_AX_T2_FLAIR", "Preop", [seg])]  # fmt: skip
    expected = {"ceT1": LPS_TO_RAS @ factory.lps_affine(ORIENTATION_AX, (1.0, 1.0, 1.0), ce_origin)}
    plan = {"US": "US", "ceT1": "ceT1", "SEG": "SEG", "SEG_MR": "FLAIR-2D"}
    return RemindCase(patient, series, expected, {}, {"ceT1": shape}, mask, "FLAIR-2D", plan)


def write_index(path: Path, cases: list[RemindCase], extra_rows: list[dict] | None = None) -> Path:
    """A parquet file shaped like idc-index-data's index, holding the fake cases' series."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [series.index_row(case.patient) for case in cases for series in case.series]
    rows += extra_rows or []
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def publish_on_bucket(bucket, cases: list[RemindCase]) -> None:
    """Put every series of the cases in the local bucket, one object per instance."""
    for case in cases:
        for series in case.series:
            for name, body in series.files().items():
                bucket.put(f"{series.crdc_uuid}/{name}", body)


def serve_nbia(
    server: FakeServer, cases: list[RemindCase], **zip_options: bool
) -> dict[str, bytes]:
    """Publish the cases' series on the fake NBIA API: one zip per series, by UID."""
    zips = {}
    for case in cases:
        for series in case.series:
            body, _ = series_zip(series.datasets, **zip_options)
            zips[series.uid] = body
            server.add(
                nbia_path("getImageWithMD5Hash", SeriesInstanceUID=series.uid),
                Reply(body, content_type="application/zip"),
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


RESECT_HOSTS = ("/nird-download", "/nird-s3")  # the archive's two addresses on the fake


def provider_tag_text(mr_points: np.ndarray, us_points: np.ndarray) -> str:
    """A tag file in RESECT's own layout: 6 decimals, empty labels, ';' after the last label,
    no newline at the end."""
    lines = ["MNI Tag Point File", "Volumes = 2;", "% Volume 1: MRI FLAIR", "% Volume 2: US", ""]
    lines.append("Points =")
    for index, (a, b) in enumerate(zip(mr_points, us_points, strict=True)):
        end = ";" if index == len(mr_points) - 1 else ""
        lines.append(" " + " ".join(f"{v:.6f}" for v in (*a, *b)) + f' ""{end}')
    return "\n".join(lines)


def nifti_route(server, tmp_path, relative: str, data, affine, md5: str | None = "right",
                host: str = RESECT_HOSTS[1]) -> bytes:  # fmt: skip
    body = write_nifti(tmp_path / "src" / relative, data, affine)
    server.add(f"{host}/{relative}", Reply(body))
    if md5 is not None:
        digest = hashlib.md5(body).hexdigest() if md5 == "right" else "f" * 32
        server.add(
            f"{host}/{relative}.md5",
            Reply(f"{digest}  {Path(relative).name}\n".encode(), content_type="text/plain"),
        )
    return body


def serve_resect_case(server, tmp_path, wrong_md5: bool = False, cases: tuple[int, ...] = (1,),
                      landmarks: bool = True):  # fmt: skip
    """RESECT cases on the fake NIRD archive (second address; the first answers 404) and
    RESECT-SEG on the fake OSF. Only the iUS has an ``.md5`` sidecar, as documented."""
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
    mask_us = (us > 0).astype(np.uint8)
    mask_mr = (flair > 0).astype(np.uint8)
    segmentations = {}
    for case in cases:
        files = resect.case_files(case)
        nifti_route(server, tmp_path, files["ceT1"], flair, flair_affine, md5=None)
        nifti_route(server, tmp_path, files["FLAIR"], flair, flair_affine, md5=None)
        md5 = "wrong" if wrong_md5 else "right"
        nifti_route(server, tmp_path, files["US"], us, us_affine, md5=md5)
        if landmarks:
            text = provider_tag_text(
                np.array([world_of(flair_affine, v) for v in mr_voxels]),
                np.array([world_of(us_affine, v) for v in us_voxels]),
            )
            server.add(
                f"{RESECT_HOSTS[1]}/{files['landmarks']}",
                Reply(text.encode(), content_type="text/plain"),
            )
        folder = f"RESECT-SEG/Case{case}/Case{case}"
        segmentations[f"{folder}-US-before-tumor.nii.gz"] = write_nifti(
            tmp_path / "m1.nii.gz", mask_us, us_affine
        )
        segmentations[f"{folder}-FLAIR-tumor.nii.gz"] = write_nifti(
            tmp_path / "m2.nii.gz", mask_mr, flair_affine
        )
    server.add("/osf/zip", Reply(zip_bytes(segmentations), content_type="application/zip"))
    return mr_voxels, us_voxels


def resect_urls(server) -> list[str]:
    """The two archive addresses on the fake server, in the order the workflow tries them."""
    return [f"{server.url}{host}" for host in RESECT_HOSTS]
