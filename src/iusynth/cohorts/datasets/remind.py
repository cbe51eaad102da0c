"""ReMIND: plan each patient's series from IDC's index, download them, convert to the layout.

The plan is made offline from IDC's series index (``idc-index-data``), before anything is
downloaded, on SeriesDescription (lower case, ``-`` and spaces as ``_``):

- ``US``: the pre-dura iUS (``US_pre_dura``; a Multi-frame Grayscale Byte Secondary
  Capture in the ``Intraop`` study);
- pre-operative MR only (the ``Preop`` study): ``T2`` = ``t2`` and ``space``, not
  ``flair``; ``FLAIR`` = ``flair`` and ``3d``; ``ceT1`` = ``postcontrast`` and ``3d``;
- ``SEG``: exactly a pre-operative ``tumor seg - MR ref: <MR SeriesDescription>`` (never
  ``tumor_residual``, ``tumor_target``, ``cerebrum``, ``ventricles``... nor anything of the
  ``Intraop`` study, which lives in another world frame). ReMIND's SEGs reference no
  source series: the MR a mask was drawn on is read from its description. Several masks:
  the one on the subject's reference MR (``preprocessing.reference_order``) wins, then one
  on another planned sequence, then one on another MR;
- ``SEG_MR``: that other MR (e.g. ``2D_AX_T2_FLAIR``), when the chosen mask was drawn on
  none of the three sequences. It is downloaded too and rigidly aligned to the reference MR
  at conversion, like the sequences are, so the mask follows the patient.

Several candidates for one role (none among the 103 shipped subjects): the one with the
most instances, then the largest, wins; the plan says how many there were.
"""

from __future__ import annotations

import csv
import logging
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iusynth.cohorts.datasets.authors import description_of, load_release
from iusynth.cohorts.datasets.catalog import REMIND
from iusynth.cohorts.datasets.idc import (
    IndexedSeries,
    IndexProblem,
    check_ledger_version,
    index_file,
    index_version,
    read_collection,
)
from iusynth.core import layout, modalities

log = logging.getLogger(__name__)

COLLECTION = "ReMIND"
SEQUENCE_ROLES: tuple[str, ...] = modalities.MR_SEQUENCES
ROLES: tuple[str, ...] = ("US", *SEQUENCE_ROLES, "SEG", "SEG_MR")
US_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte Secondary Capture
TUMOR_SEG = re.compile(r"^\s*tumor\s+seg\s*-\s*MR\s+ref:\s*(?P<mr>\S.*?)\s*$", re.IGNORECASE)
AUTHORS_LABEL = "authors"  # label_on of a target carried by the authors' rigid transforms
PLAN_COLUMNS: tuple[str, ...] = (
    "subject",
    "role",
    "SeriesInstanceUID",
    "SeriesDescription",
    "StudyDescription",
    "size_MB",
    "Modality",
    "SOPClassUID",
    "instanceCount",
    "crdc_series_uuid",
    "series_aws_url",
    "candidates",
    "label_on",
)


def _normalised(text: str) -> str:
    """Lower case with '-' and spaces as '_', for description matching."""
    return text.lower().replace("-", "_").replace(" ", "_")


def is_preoperative(series: IndexedSeries) -> bool:
    """Whether a series belongs to the pre-operative study (``Preop``)."""
    study = _normalised(series.study_description).replace("_", "")
    return "preop" in study and "intra" not in study


def seg_reference(series: IndexedSeries) -> str | None:
    """The MR SeriesDescription a pre-op tumour SEG names, or None for any other series."""
    if series.modality.upper() != "SEG" or not is_preoperative(series):
        return None
    match = TUMOR_SEG.match(series.description)
    return match.group("mr") if match else None


def series_role(series: IndexedSeries) -> str | None:
    """The role a series can play (``US``, a sequence, ``SEG``) or None."""
    description = _normalised(series.description)
    modality = series.modality.upper()
    if modality == "US":
        return "US" if "pre_dura" in description or "predura" in description else None
    if modality == "SEG":
        return "SEG" if seg_reference(series) is not None else None
    if modality != "MR" or not is_preoperative(series):
        return None
    if "t2" in description and "space" in description and "flair" not in description:
        return "T2"
    if "flair" in description and "3d" in description:
        return "FLAIR"
    if "postcontrast" in description and "3d" in description:
        return "ceT1"
    return None


@dataclass(frozen=True)
class PlannedSeries:
    """One series the workflow will download for a subject, and why."""

    subject: str
    role: str
    series: IndexedSeries
    candidates: int = 1  # series that qualified for this role
    label_on: str = ""  # SEG only: the role of the MR the mask was drawn on

    def row(self) -> dict[str, str]:
        """The plan.tsv row."""
        s = self.series
        return {
            "subject": self.subject,
            "role": self.role,
            "SeriesInstanceUID": s.uid,
            "SeriesDescription": s.description,
            "StudyDescription": s.study_description,
            "size_MB": f"{s.size_mb:.6f}",
            "Modality": s.modality,
            "SOPClassUID": s.sop_class,
            "instanceCount": str(s.instances),
            "crdc_series_uuid": s.crdc_uuid,
            "series_aws_url": s.bucket_url,
            "candidates": str(self.candidates),
            "label_on": self.label_on,
        }

    @classmethod
    def from_row(cls, row: dict[str, str]) -> PlannedSeries:
        """Rebuild from a plan.tsv row."""
        series = IndexedSeries(
            uid=row["SeriesInstanceUID"],
            patient=row["subject"],
            study_description=row["StudyDescription"],
            modality=row["Modality"],
            sop_class=row["SOPClassUID"],
            description=row["SeriesDescription"],
            instances=int(row["instanceCount"]),
            size_mb=float(row["size_MB"]),
            crdc_uuid=row["crdc_series_uuid"],
            bucket_url=row["series_aws_url"],
        )
        return cls(row["subject"], row["role"], series, int(row["candidates"]), row["label_on"])


def _best(candidates: list[IndexedSeries]) -> IndexedSeries:
    """The candidate with the most instances, then the largest, then the first UID."""
    return min(candidates, key=lambda s: (-s.instances, -s.size_mb, s.uid))


def _plan_mask(
    subject: str,
    series: list[IndexedSeries],
    masks: list[IndexedSeries],
    planned: list[PlannedSeries],
    order: list[str],
) -> list[PlannedSeries]:
    """The tumour SEG to plan (the one on the earliest reference MR), with its MR if new."""
    on_role = {entry.series.description: entry.role for entry in planned[1:]}

    def rank(mask: IndexedSeries) -> tuple[int, str]:
        role = on_role.get(seg_reference(mask) or "")
        return (order.index(role) if role in order else len(order), mask.uid)

    preop_mr = [s for s in series if s.modality.upper() == "MR" and is_preoperative(s)]
    for mask in sorted(masks, key=rank):
        reference = seg_reference(mask) or ""
        if reference in on_role:
            return [PlannedSeries(subject, "SEG", mask, len(masks), on_role[reference])]
        named = [s for s in preop_mr if s.description == reference]
        if named:
            return [
                PlannedSeries(subject, "SEG", mask, len(masks), "SEG_MR"),
                PlannedSeries(subject, "SEG_MR", _best(named), len(named)),
            ]
        log.warning(
            "%s: tumour SEG %s names MR %r, which is not in the pre-operative study",
            subject,
            mask.uid,
            reference,
        )
    log.warning("%s: no tumour SEG names an MR of the subject; no tumor-MR label", subject)
    return []


def _plan_authors_target(
    subject: str, series: list[IndexedSeries], planned: list[PlannedSeries]
) -> list[PlannedSeries]:
    """The authors' tumour target of a subject (their choice_target.csv), or a clear error.

    Drawn on a planned sequence, the mask is in that sequence's world; drawn on another MR,
    it is carried into the reference sequence's world at conversion by the authors' own
    rigid transform (``label_on`` :data:`AUTHORS_LABEL`), so that MR is not downloaded.
    """
    case = load_release().case(subject)
    wanted = case.target_description
    masks = [
        s
        for s in series
        if s.modality.upper() == "SEG" and s.description == wanted and is_preoperative(s)
    ]
    if len(masks) != 1:
        raise IndexProblem(
            f"ReMIND subject {subject}: the authors' target {case.target_kind} on "
            f"{case.target_on} ({load_release().root / 'choice_target.csv'}) should be one "
            f"pre-operative SEG {wanted!r} in the IDC index, found {len(masks)}; set "
            "cohorts.remind.targets: ours to choose the tumour SEG by our rule"
        )
    drawn_on = description_of(case.target_on)
    on_role = {entry.series.description: entry.role for entry in planned[1:]}
    return [PlannedSeries(subject, "SEG", masks[0], 1, on_role.get(drawn_on, AUTHORS_LABEL))]


def plan_subject(
    subject: str,
    series: list[IndexedSeries],
    reference_order: list[str],
    targets: str = "authors",
) -> list[PlannedSeries]:
    """The exact series of each role for one subject (raises when it cannot be used).

    ``targets``: ``authors`` takes the tumour SEG the authors chose; ``ours`` the one on
    the reference MR, else another (see the module docstring).
    """
    by_role: dict[str, list[IndexedSeries]] = defaultdict(list)
    for item in series:
        role = series_role(item)
        if role is not None:
            by_role[role].append(item)
    sequences = [role for role in SEQUENCE_ROLES if by_role.get(role)]
    if not by_role.get("US") or not sequences:
        found = sorted({f"{s.study_description}/{s.description}" for s in series})
        raise IndexProblem(
            f"ReMIND subject {subject} has no pre-dura iUS or no pre-operative T2 SPACE, 3D "
            f"post-contrast T1 or 3D FLAIR in the IDC index (its series: {found}); remove it "
            "from cohorts.remind.subjects"
        )
    planned = [
        PlannedSeries(subject, role, _best(by_role[role]), len(by_role[role]))
        for role in ("US", *sequences)
    ]
    for entry in planned:
        if entry.candidates > 1:
            log.warning(
                "%s: %d series qualify as %s; planned %s (%d instances)",
                subject,
                entry.candidates,
                entry.role,
                entry.series.description,
                entry.series.instances,
            )
    if targets == "authors":
        return planned + _plan_authors_target(subject, series, planned)
    masks = by_role.get("SEG", [])
    if not masks:
        log.warning("%s: no pre-operative tumour SEG in the index; no tumor-MR label", subject)
        return planned
    order = [role for role in reference_order if role in sequences]
    order += [role for role in sequences if role not in order]
    return planned + _plan_mask(subject, series, masks, planned, order)


def plan_cohort(
    subjects: list[str] | tuple[str, ...],
    reference_order: list[str],
    *,
    index: Path | None = None,
    manifest: Path | None = None,
    targets: str = "authors",
) -> list[PlannedSeries]:
    """The plan of every subject, from IDC's index (restricted to a ``.tcia`` manifest).

    ``targets``: whose choice of tumour segmentation, ``authors`` or ``ours``.
    """
    listing = read_collection(COLLECTION, index)
    if manifest is not None:
        from iusynth.cohorts.datasets.nbia import read_tcia_manifest

        wanted = set(read_tcia_manifest(manifest))
        listing = [item for item in listing if item.uid in wanted]
    by_patient: dict[str, list[IndexedSeries]] = defaultdict(list)
    for item in listing:
        by_patient[item.patient].append(item)
    missing = [subject for subject in subjects if subject not in by_patient]
    if missing:
        where = f"the series of {manifest}" if manifest is not None else "the IDC index"
        raise IndexProblem(
            f"ReMIND subjects {missing[:5]}{' ...' if len(missing) > 5 else ''} are not in "
            f"{where} ({index or index_file()}, idc-index-data {index_version()}): remove "
            "them from cohorts.remind.subjects (or the shipped iusynth/cohorts/datasets/data/"
            "remind_subjects.txt), or upgrade idc-index-data if IDC added them since"
        )
    plan = []
    for subject in subjects:
        plan += plan_subject(subject, by_patient[subject], reference_order, targets)
    return plan


def plan_by_subject(plan: list[PlannedSeries]) -> dict[str, list[PlannedSeries]]:
    """The plan grouped by subject."""
    grouped: dict[str, list[PlannedSeries]] = defaultdict(list)
    for entry in plan:
        grouped[entry.subject].append(entry)
    return dict(grouped)


def write_plan(path: Path, plan: list[PlannedSeries]) -> None:
    """Write plan.tsv (one row per planned series; a first comment line names the index)."""
    from iusynth.core.fileio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        handle.write(f"# ReMIND plan from IDC's index, idc-index-data {index_version()}\n")
        writer = csv.DictWriter(
            handle, fieldnames=list(PLAN_COLUMNS), delimiter="\t", lineterminator="\n"
        )
        writer.writeheader()
        for entry in plan:
            writer.writerow(entry.row())


def read_plan(path: Path) -> list[PlannedSeries]:
    """Read plan.tsv back."""
    lines = [line for line in Path(path).read_text().splitlines() if not line.startswith("#")]
    return [PlannedSeries.from_row(row) for row in csv.DictReader(lines, delimiter="\t")]


def format_plan(plan: list[PlannedSeries]) -> str:
    """The plan as an aligned text table (what ``remind-plan`` prints)."""
    columns = ("subject", "role", "SeriesInstanceUID", "SeriesDescription", "StudyDescription")
    rows = [[entry.row()[c] for c in columns] + [f"{entry.series.size_mb:.1f}"] for entry in plan]
    header = [*columns, "size_MB"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    total = sum(entry.series.size_mb for entry in plan)
    subjects = len({entry.subject for entry in plan})
    return "\n".join(
        [
            "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
            *lines,
            f"{len(plan)} series of {subjects} subjects, {total / 1000:.1f} GB "
            f"(IDC index {index_version()})",
        ]
    )


def role_counts(plan: list[PlannedSeries]) -> dict[str, Any]:
    """Counts per role of a plan (and of the masks by the MR they were drawn on)."""
    counts: dict[str, Any] = {role: 0 for role in ROLES}
    for entry in plan:
        counts[entry.role] += 1
    labels: dict[str, int] = defaultdict(int)
    for entry in plan:
        if entry.role == "SEG":
            labels[entry.label_on] += 1
    counts["SEG by the MR it is drawn on"] = dict(labels)
    return counts


def check_index_against_ledger(raw_dir: Path) -> None:
    """Refuse an installed index older than the one the downloads in ``raw_dir`` came from."""
    from iusynth.cohorts.datasets.download import Ledger

    ledger = Ledger(Path(raw_dir) / "ledger.jsonl")
    if ledger.path.is_file():
        check_ledger_version(ledger, index_version())


def download_series(
    entry: PlannedSeries,
    raw_dir: Path,
    output: Path,
    *,
    api: str,
    url: str,
    policy: Any,
) -> None:
    """Download and verify one planned series (IDC's bucket, or NBIA); write its record."""
    from iusynth.cohorts.datasets import idc, nbia
    from iusynth.cohorts.datasets.download import Ledger, announce_licence
    from iusynth.core.fileio import write_json

    raw_dir = Path(raw_dir)
    announce_licence(raw_dir, REMIND.name, REMIND.licence)
    ledger = Ledger(raw_dir / "ledger.jsonl")
    extra = {"role": entry.role, "subject": entry.subject}
    if api == "idc":
        folder = idc.download_series(
            entry.series, entry.subject, raw_dir, ledger, endpoint=url, policy=policy, extra=extra
        )
    elif api == "nbia":
        check_ledger_version(ledger, index_version())
        series = nbia.Series(
            uid=entry.series.uid,
            patient=entry.series.patient,
            modality=entry.series.modality,
            description=entry.series.description,
            study_description=entry.series.study_description,
            image_count=entry.series.instances,
            file_size=None,
        )
        folder = nbia.download_series(
            series,
            raw_dir,
            ledger,
            base_url=url,
            policy=policy,
            extra={**extra, "idc_index": index_version()},
        )
    else:
        raise ValueError(f"cohorts.remind.api must be 'idc' or 'nbia', not {api!r}")
    write_json(output, {**entry.row(), "api": api, "folder": str(folder.resolve())})


def _reference_of(available: set[str], reference_order: list[str]) -> str:
    """The subject's reference MR: the first of the order it has."""
    for sequence in [*reference_order, *SEQUENCE_ROLES]:
        if sequence in available:
            return sequence
    raise ValueError(f"no MR sequence among {sorted(available)}")


def convert_subject(
    records: list[dict[str, Any]],
    output: Path,
    *,
    reference_order: list[str],
    alignment: Any = None,
) -> dict[str, Any]:
    """Convert one downloaded patient into the canonical layout; return its provenance.

    ``records`` are the download records of its planned series. ``alignment`` holds the
    reg_aladin options used to align an ``SEG_MR`` to the reference MR (None: trust the
    headers, as with ``preprocessing.align_mr_sequences: false``).
    """
    from iusynth.cohorts.datasets.dicom import compact, series_volume
    from iusynth.core.fileio import atomic_directory, save_nifti, write_json

    by_role = {record["role"]: record for record in records}
    subjects = {record["subject"] for record in records}
    if len(subjects) != 1 or "US" not in by_role:
        raise ValueError(
            f"the download records {sorted(subjects)} are not one subject's with its iUS"
        )
    subject = layout.check_subject_id(subjects.pop())
    source: dict[str, Any] = {
        "dataset": REMIND.name,
        "idc_index": index_version(),
        "series": {},
        "notes": [],
    }
    with atomic_directory(output) as tmp:
        for role in ("US", *SEQUENCE_ROLES):
            record = by_role.get(role)
            if record is None:
                continue
            data, affine, notes = series_volume(Path(record["folder"]))
            save_nifti(layout.subject_file(tmp, subject, role), compact(data), affine)
            source["series"][role] = _provenance(record, notes)
            source["notes"] += [f"{role}: {note}" for note in notes]
        seg = by_role.get("SEG")
        if seg is not None:
            source["annotation_sequence"] = _convert_mask(
                seg, by_role, tmp, subject, reference_order, alignment, source
            )
        write_json(layout.subject_file(tmp, subject, "source"), source)
    return source


def _provenance(record: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """What source.json says about one converted series."""
    return {
        "uid": record["SeriesInstanceUID"],
        "description": record["SeriesDescription"],
        "study": record["StudyDescription"],
        "api": record.get("api"),
        **({"notes": notes} if notes else {}),
    }


def _seg_mr_alignment(
    mr: dict[str, Any], folder: Path, subject: str, sequence: str, alignment: Any
) -> tuple[np.ndarray, list[str]]:
    """Reference world -> the SEG's own MR world (identity when alignment is off)."""
    from iusynth.cohorts.datasets.dicom import series_volume
    from iusynth.core.fileio import save_nifti

    data, mr_affine, notes = series_volume(Path(mr["folder"]))
    if alignment is None:
        return np.eye(4), notes
    from iusynth.preprocessing.registration import align_mr_sequence

    with tempfile.TemporaryDirectory(prefix="seg_mr.") as work:
        moving = Path(work) / "seg_mr.nii.gz"
        save_nifti(moving, data, mr_affine)
        result = align_mr_sequence(
            layout.subject_file(folder, subject, sequence), moving, alignment
        )
    return result.matrix, notes


def _authors_mask_map(subject: str, source: dict[str, Any], sequence: str) -> np.ndarray:
    """World of the MR the authors' target was drawn on -> ``sequence``'s world (RAS)."""
    from iusynth.core.itk_transforms import read_itk_affine

    case = load_release().case(subject)
    name = case.mr_name(source["series"][sequence]["description"])
    if name is None:
        raise ValueError(
            f"{subject}: its {sequence} series {source['series'][sequence]['description']!r} "
            f"is none of the MRs the authors' transforms of {case.case} reach"
        )
    # a file "<reference>-to-<other>" maps the other MR's points to the reference's
    drawn_to_reference = (
        np.eye(4)
        if case.target_on == case.reference
        else read_itk_affine(case.rigid[case.target_on])
    )
    sequence_to_reference = (
        np.eye(4) if name == case.reference else read_itk_affine(case.rigid[name])
    )
    return np.linalg.inv(sequence_to_reference) @ drawn_to_reference


def _convert_mask(
    seg: dict[str, Any],
    by_role: dict[str, dict[str, Any]],
    folder: Path,
    subject: str,
    reference_order: list[str],
    alignment: Any,
    source: dict[str, Any],
) -> str:
    """Write the tumour mask; return the sequence whose world it is in."""
    from iusynth.cohorts.datasets.dicom import DicomConversionError, segmentation_volume
    from iusynth.core.fileio import save_nifti

    files = sorted(p for p in Path(seg["folder"]).rglob("*") if p.is_file())
    if len(files) != 1:
        raise DicomConversionError(
            f"{seg['folder']}: a SEG series of one file was expected, found {len(files)}"
        )
    mask, affine, notes = segmentation_volume(files[0])
    label_on = seg["label_on"]
    entry: dict[str, Any] = {**_provenance(seg, notes), "drawn_on": label_on}
    source["notes"] += [f"SEG: {note}" for note in notes]
    available = {role for role in SEQUENCE_ROLES if role in source["series"]}
    sequence = label_on
    if label_on == AUTHORS_LABEL:
        sequence = _reference_of(available, reference_order)
        to_sequence = _authors_mask_map(subject, source, sequence)
        affine = to_sequence @ affine
        entry |= {"aligned_to": sequence, "alignment": "the authors' rigid transforms"}
        source["notes"].append(
            f"the authors' target was drawn on {load_release().case(subject).target_on}, "
            f"none of the three sequences: carried into {sequence}'s world by their rigid "
            "transforms"
        )
    elif label_on not in available:
        mr = by_role.get("SEG_MR")
        if label_on != "SEG_MR" or mr is None:
            raise ValueError(
                f"{subject}: the tumour SEG {seg['SeriesInstanceUID']} was drawn on "
                f"{label_on!r}, which was not downloaded; rerun the plan (remind-plan)"
            )
        sequence = _reference_of(available, reference_order)
        to_mr, mr_notes = _seg_mr_alignment(mr, folder, subject, sequence, alignment)
        # mask voxel -> SEG_MR world -> reference world (the inverse of reference -> SEG_MR)
        affine = np.linalg.inv(to_mr) @ affine
        entry |= {
            "mr": _provenance(mr, mr_notes),
            "aligned_to": sequence,
            "reference_to_mr": to_mr.tolist(),
            "alignment": "reg_aladin rigid" if alignment is not None else "headers (identity)",
        }
        source["notes"] += [f"SEG_MR: {note}" for note in mr_notes]
        source["notes"].append(
            f"the tumour mask was drawn on {mr['SeriesDescription']}, none of the three "
            f"sequences: that MR was aligned to {sequence} and the mask carried into "
            f"{sequence}'s world"
        )
    save_nifti(layout.subject_file(folder, subject, "tumor-MR"), mask, affine)
    source["series"]["tumor-MR"] = entry
    return sequence
