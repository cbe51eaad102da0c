"""Section 1 of a subject page: what the subject brings into the workflow.

Every modality (present with its grid, missing though its cohort's role expects it, or
not in the dataset), the tumour labels (kind and volume), the landmarks, what the demo's
truth file or a real subject's source file says, and the QC figure of ``plot_subject_qc``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from iusynth.core import layout
from iusynth.core.fileio import load_nifti
from iusynth.core.modalities import MODALITIES
from iusynth.reporting.render import inline_png_file
from iusynth.reporting.run_warnings import Check
from iusynth.reporting.settings import PageSettings
from iusynth.reporting.subject_page.files import SubjectFiles, read_json

QC_CAPTION = (
    "Every modality in three orthogonal views through the tumour, with the tumour contours "
    "(red: tumour core or necrosis, or the whole tumour for a binary label; cyan: enhancing; "
    "yellow: oedema)."
)
LABEL_KINDS = (
    ("tumor-MR", "tumour labels in the MR world"),
    ("tumor-US", "tumour mask in the iUS grid"),
)


def subject_role(
    settings: PageSettings, subject: str, splits: dict[str, Any] | None
) -> tuple[str, str]:
    """What the subject is for in this run's experiments: a short tag and a sentence."""
    if settings.cohort == settings.trainval_cohort and splits is not None:
        for fold in settings.folds:
            if subject in splits["folds"][fold]["test"]:
                downstream = (
                    "; its segmentation and registration too" if fold == settings.fold else ""
                )
                return (
                    f"held out (fold {fold})",
                    f"test subject of fold {fold}: not trained on by that fold's models, "
                    f"which synthesise it for Tables 1 and 2{downstream}",
                )
        if subject in splits["folds"][settings.fold]["train"]:
            return (
                f"training (fold {settings.fold})",
                f"training subject of fold {settings.fold} of the synthesis models",
            )
    if settings.cohort == settings.test_cohort and splits is not None:
        return (
            "test",
            "test subject: its synthesis, segmentation and registration are evaluated",
        )
    if settings.cohort == settings.segmentation_cohort:
        return (
            "MR only (sweeps)",
            "MR only: its virtual iUS sweeps train the segmentation networks",
        )
    return "not used", "not used by this configuration's experiments (no iUS)"


def manifest_entry(files: SubjectFiles, subject: str) -> layout.SubjectEntry:
    """The subject's row of its cohort's manifest (an error names a manifest without it)."""
    entries = {entry.subject: entry for entry in layout.read_manifest(files.manifest)}
    if subject not in entries:
        raise ValueError(
            f"{files.manifest} does not list {subject}; re-run the rule write_cohort_manifest"
        )
    return entries[subject]


def grid_text(path: Path) -> str:
    """``shape at spacing`` of a NIfTI image, from its header."""
    import nibabel as nib

    try:
        image = nib.load(path)
    except Exception as error:  # nibabel raises many types for corrupt files
        raise ValueError(
            f"image {path} is not a readable NIfTI file ({type(error).__name__}: {error}); "
            "re-generate or re-download it"
        ) from error
    shape = " × ".join(str(n) for n in image.shape[:3])
    spacing = " × ".join(f"{z:g}" for z in image.header.get_zooms()[:3])
    return f"{shape} voxels at {spacing} mm"


def modality_rows(
    files: SubjectFiles,
    settings: PageSettings,
    subject: str,
    entry: layout.SubjectEntry,
    checks: list[Check],
) -> list[dict[str, str]]:
    """Each modality: present (with its grid), missing (a check) or not in the dataset."""
    from iusynth.cohorts.demo.plan import COHORT_ROLES

    expected = COHORT_ROLES[settings.dataset].modalities if settings.dataset else MODALITIES
    rows = []
    for modality in layout.MODALITIES:
        path = layout.subject_file(files.subject_dir, subject, modality)
        if entry.has(modality):
            status, detail = "present", grid_text(path)
        elif modality in expected:
            status, detail = "missing", "expected in this cohort, absent for this subject"
            checks.append(Check("inputs", f"{modality} is missing: its syntheses are not scored"))
        else:
            status, detail = (
                "not in this dataset",
                f"the {settings.cohort} cohort has no {modality}",
            )
        rows.append({"name": modality, "status": status, "detail": detail})
    return rows


def label_rows(
    files: SubjectFiles, subject: str, entry: layout.SubjectEntry
) -> list[dict[str, str]]:
    """Each tumour label: binary or its BraTS labels, and its volume; ``none`` when absent."""
    rows = []
    for kind, description in LABEL_KINDS:
        if not entry.has(kind):
            rows.append({"name": kind, "detail": "none"})
            continue
        image = load_nifti(layout.subject_file(files.subject_dir, subject, kind))
        data = np.asarray(image.dataobj)
        values = [int(v) for v in np.unique(data) if v != 0]
        voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000.0
        volume_ml = float((data > 0).sum()) * voxel_ml
        kind_text = "BraTS labels " + ", ".join(map(str, values)) if len(values) > 1 else "binary"
        rows.append({"name": kind, "detail": f"{description}: {kind_text}, {volume_ml:.1f} mL"})
    return rows


def landmark_count(files: SubjectFiles, subject: str, entry: layout.SubjectEntry) -> int:
    """How many landmark pairs the subject has (0 without a landmark file)."""
    from iusynth.core.tags import read_tag_file

    if not entry.has("landmarks"):
        return 0
    return len(read_tag_file(layout.subject_file(files.subject_dir, subject, "landmarks")).first)


def demo_facts(truth: dict[str, Any]) -> list[dict[str, str]]:
    """What the demo generator's truth file says of a simulated subject, as label/value rows."""
    tumour = truth.get("tumour", {})
    facts = [
        {"label": "data", "value": "simulated (demo cohort generator)"},
        {"label": "grade", "value": str(truth.get("grade", "–"))},
    ]
    if "radius_mm" in tumour:
        facts.append({"label": "tumour radius", "value": f"{tumour['radius_mm']:.1f} mm"})
    if "calcifications" in tumour:
        facts.append({"label": "calcifications", "value": str(tumour["calcifications"])})
    if "initial_landmark_error_mm" in truth:
        facts.append(
            {
                "label": "simulated iUS misalignment",
                "value": f"{truth['initial_landmark_error_mm']:.2f} mm (median at landmarks)",
            }
        )
    return facts


def subject_facts(subject_dir: Path, subject: str) -> list[dict[str, str]]:
    """What the demo's truth file or a real subject's source file says, as label/value rows."""
    facts = []
    truth_path = layout.subject_file(subject_dir, subject, "truth")
    if truth_path.is_file():
        facts += demo_facts(read_json(truth_path, "truth file", "generate_demo_subject"))
    source_path = layout.subject_file(subject_dir, subject, "source")
    if source_path.is_file():
        source = read_json(source_path, "source file", "the dataset's convert rule")
        facts.append({"label": "data", "value": "converted from the downloaded dataset"})
        for key, value in source.items():
            if isinstance(value, str | int | float | bool):
                facts.append({"label": key.replace("_", " "), "value": str(value)})
        for note in source.get("notes", []):
            facts.append({"label": "note", "value": str(note)})
    return facts


def inputs_section(
    files: SubjectFiles, settings: PageSettings, subject: str, checks: list[Check]
) -> dict[str, Any]:
    """Modalities, labels and landmarks of the subject, with the input QC figure."""
    from iusynth.cohorts.demo.plan import COHORT_ROLES

    entry = manifest_entry(files, subject)
    modalities = modality_rows(files, settings, subject, entry, checks)
    splits = read_json(files.splits, "splits", "make_splits") if files.splits else None
    caption = QC_CAPTION
    if entry.has("US"):
        caption += " The iUS row is in the iUS's own grid, with the iUS tumour mask."
    figure = inline_png_file(files.input_qc, caption, f"{subject}: every modality in three views")
    role_tag, role_text = subject_role(settings, subject, splits)
    return {
        "role": role_text,
        "role_tag": role_tag,
        "dataset": (COHORT_ROLES[settings.dataset].description if settings.dataset else "its own"),
        "modalities": modalities,
        "labels": label_rows(files, subject, entry),
        "landmarks": landmark_count(files, subject, entry),
        "facts": subject_facts(files.subject_dir, subject),
        "figures": [figure],
        "missing": [m["name"] for m in modalities if m["status"] == "missing"],
        "present": [m["name"] for m in modalities if m["status"] == "present"],
    }
