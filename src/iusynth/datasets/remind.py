"""ReMIND from TCIA: choose each patient's series, download them, convert to the layout.

Series choice (as the papers did), on lower-case SeriesDescription:

- iUS: an US series whose description names the pre-dura stage (``US_pre_dura``);
- T2: ``t2`` and ``space``, not ``flair``;  FLAIR: ``flair`` and ``3d``;
- ceT1: ``postcontrast`` and ``3d``;  tumour: a SEG series naming ``tumor``.

MR series from an intra-operative study (study description naming ``intra``) are left
out. When several series qualify for one role, all are downloaded and the finest voxel
spacing wins at conversion (ties: the larger field of view).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from iusynth import layout
from iusynth.datasets.catalog import REMIND
from iusynth.datasets.dicom import (
    DicomConversionError,
    compact,
    segmentation_volume,
    series_volume,
    voxel_volume_mm3,
)
from iusynth.datasets.download import Ledger, RetryPolicy, announce_licence
from iusynth.datasets.nbia import Series, download_series, list_series, read_tcia_manifest
from iusynth.fileio import atomic_directory, save_nifti, write_json

log = logging.getLogger(__name__)

COLLECTION = "ReMIND"
ROLES: tuple[str, ...] = ("US", "T2", "ceT1", "FLAIR", "SEG")


def _normalised(text: str) -> str:
    """Lower case with '-' and spaces as '_', for description matching."""
    return text.lower().replace("-", "_").replace(" ", "_")


def series_role(series: Series) -> str | None:
    """The role a series plays for the workflow (a modality, ``SEG``) or None."""
    description = _normalised(series.description)
    modality = series.modality.upper()
    if modality == "US":
        return "US" if "pre_dura" in description or "predura" in description else None
    if modality == "SEG":
        return "SEG" if "tumor" in description or "tumour" in description else None
    if modality != "MR" or "intra" in _normalised(series.study_description):
        return None
    if "t2" in description and "space" in description and "flair" not in description:
        return "T2"
    if "flair" in description and "3d" in description:
        return "FLAIR"
    if "postcontrast" in description and "3d" in description:
        return "ceT1"
    return None


def select_series(listing: list[Series], patient: str) -> dict[str, list[Series]]:
    """The candidate series of one patient, by role."""
    chosen: dict[str, list[Series]] = {}
    for series in listing:
        if series.patient != patient:
            continue
        role = series_role(series)
        if role is not None:
            chosen.setdefault(role, []).append(series)
    return chosen


def write_listing(
    output: Path, base_url: str, manifest: Path | None, policy: RetryPolicy, raw_dir: Path
) -> None:
    """List the collection (restricted to a ``.tcia`` manifest if given) into ``output``."""
    announce_licence(raw_dir, REMIND.name, REMIND.licence)
    listing = list_series(COLLECTION, base_url=base_url, policy=policy)
    if manifest is not None:
        wanted = set(read_tcia_manifest(manifest))
        listing = [series for series in listing if series.uid in wanted]
        missing = wanted - {series.uid for series in listing}
        if missing:
            log.warning("%d series of %s are not in the ReMIND listing", len(missing), manifest)
    write_json(output, {"collection": COLLECTION, "series": [s.to_json() for s in listing]})
    log.info("listed %d series", len(listing))


def download_subject(
    patient: str,
    listing_path: Path,
    raw_dir: Path,
    output: Path,
    *,
    base_url: str,
    policy: RetryPolicy,
) -> None:
    """Download and verify every candidate series of one patient; write a record of them."""
    listing = [
        Series.from_json(row) for row in json.loads(Path(listing_path).read_text())["series"]
    ]
    candidates = select_series(listing, patient)
    if "US" not in candidates or not set(candidates) & set(layout.MR_SEQUENCES):
        found = sorted({s.description for s in listing if s.patient == patient})
        raise ValueError(
            f"ReMIND patient {patient} has no pre-dura iUS and MR series in {listing_path} "
            f"(series found: {found or 'none'}); remove it from cohorts.remind.subjects"
        )
    ledger = Ledger(Path(raw_dir) / "ledger.jsonl")
    record: dict[str, Any] = {"patient": patient, "series": {}}
    for role in ROLES:
        for series in candidates.get(role, []):
            folder = download_series(series, raw_dir, ledger, base_url=base_url, policy=policy)
            record["series"].setdefault(role, []).append(
                {**series.to_json(), "folder": str(folder.resolve())}
            )
    write_json(output, record)


def _finest(volumes: list[tuple[dict[str, Any], np.ndarray, np.ndarray]]) -> int:
    """Index of the finest-spaced volume (ties: most voxels)."""
    keys = [(voxel_volume_mm3(affine), -data.size) for _, data, affine in volumes]
    return min(range(len(keys)), key=keys.__getitem__)


def convert_subject(record_path: Path, output: Path) -> dict[str, Any]:
    """Convert one downloaded patient into the canonical layout; return its provenance."""
    record = json.loads(Path(record_path).read_text())
    subject = layout.check_subject_id(record["patient"])
    source: dict[str, Any] = {"dataset": REMIND.name, "series": {}}
    chosen_uids = {}
    with atomic_directory(output) as tmp:
        for role in ("US", *layout.MR_SEQUENCES):
            converted = []
            for series in record["series"].get(role, []):
                try:
                    data, affine = series_volume(Path(series["folder"]))
                except DicomConversionError as error:
                    log.warning("%s %s skipped: %s", subject, role, error)
                    continue
                converted.append((series, data, affine))
            if not converted:
                continue
            best = _finest(converted)
            series, data, affine = converted[best]
            save_nifti(layout.subject_file(tmp, subject, role), compact(data), affine)
            chosen_uids[series["uid"]] = role
            source["series"][role] = {
                "uid": series["uid"],
                "description": series["description"],
                "candidates": len(converted),
            }
        if "US" not in source["series"]:
            raise DicomConversionError(f"{record_path}: no pre-dura iUS series could be converted")
        segmentations = record["series"].get("SEG", [])
        if segmentations:
            annotation = _convert_segmentation(segmentations, chosen_uids, tmp, subject, source)
            if annotation is not None:
                source["annotation_sequence"] = annotation
        write_json(layout.subject_file(tmp, subject, "source"), source)
    return source


def _convert_segmentation(
    segmentations: list[dict[str, Any]],
    chosen_uids: dict[str, str],
    folder: Path,
    subject: str,
    source: dict[str, Any],
) -> str | None:
    """Write the tumour SEG (preferring one drawn on a chosen MR); return that sequence."""
    results = []
    for series in segmentations:
        files = sorted(p for p in Path(series["folder"]).rglob("*") if p.suffix.lower() == ".dcm")
        if not files:
            continue
        mask, affine, referenced = segmentation_volume(files[0])
        results.append((series, mask, affine, referenced))
    if not results:
        return None
    results.sort(key=lambda item: item[3] not in chosen_uids)
    series, mask, affine, referenced = results[0]
    save_nifti(layout.subject_file(folder, subject, "tumor-MR"), mask, affine)
    source["series"]["tumor-MR"] = {"uid": series["uid"], "description": series["description"]}
    return chosen_uids.get(referenced or "")
