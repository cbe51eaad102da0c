"""The canonical on-disk layout of a cohort.

Every source of data (the generated demo cohort now, the real-data converters later)
writes the same layout, so the rest of the workflow never needs to know where a subject
came from::

    <cohort root>/
        subjects.tsv                         one row per subject, 1/0 per file kind
        <subject>/
            <subject>_US.nii.gz              3D intra-operative ultrasound (its own grid)
            <subject>_T2.nii.gz              MR sequences (each in its own grid)
            <subject>_ceT1.nii.gz
            <subject>_FLAIR.nii.gz
            <subject>_tumor-MR.nii.gz        tumour labels in the MR grid
            <subject>_tumor-US.nii.gz        binary tumour mask in the ultrasound grid
            <subject>_landmarks.tag          MNI tag file: MR point, then US point (RAS mm)
            <subject>_truth.json             demo only: the simulation's ground truth
            <subject>_<modality>-clean.nii.gz  demo only: the image without noise (MR
                                             before bias and noise, iUS before speckle)
            <subject>_source.json            real data: provenance (series, files chosen)
            <subject>_US-to-<MR>.tfm         optional, a given registration (ITK) of the
                                             iUS to an MR, used with transforms:
                                             subject_folders (the demo writes its truth)

Each image keeps its own grid; world coordinates follow the NIfTI convention (RAS
millimetres) and are shared by every file of a subject up to the registrations the
workflow estimates. MR-side annotations (``tumor-MR`` and the landmarks' MR points) are in
the world of the reference MR sequence unless ``source.json`` names another one as
``annotation_sequence`` (RESECT: FLAIR); the workflow then maps them through the MR -> MR
alignment. ``tumor-MR`` holds BraTS
labels (1 necrosis / non-enhancing core, 2 oedema, 4 enhancing) where the source has them
and a binary mask otherwise. A job reads a subject folder once, as a
:class:`iusynth.core.subject.SubjectRecord`. Only stdlib is imported here: the Snakefile
imports it.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from iusynth.core.modalities import MODALITIES, MR_SEQUENCES

LABEL_KINDS: tuple[str, ...] = ("tumor-MR", "tumor-US")
FILE_KINDS: tuple[str, ...] = (*MODALITIES, *LABEL_KINDS, "landmarks")
MANIFEST_NAME = "subjects.tsv"
SUBJECT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
SUBJECT_ID_MAX_LENGTH = 64  # derived file names add up to ~60 characters; names stop at 255

BRATS_NECROSIS = 1
BRATS_OEDEMA = 2
BRATS_ENHANCING = 4

CLEAN_SUFFIX = "-clean"
CLEAN_KINDS: tuple[str, ...] = tuple(f"{m}{CLEAN_SUFFIX}" for m in MODALITIES)


def clean_kind(modality: str) -> str:
    """The file kind of a modality's noise-free image (demo subjects only)."""
    return f"{modality}{CLEAN_SUFFIX}"


# Derived outputs (preprocessed subjects) use the same naming, with two more kinds.
_SUFFIXES = {kind: ".nii.gz" for kind in (*MODALITIES, *CLEAN_KINDS, *LABEL_KINDS, "fov")} | {
    "landmarks": ".tag",
    "truth": ".json",
    "source": ".json",
    "preprocessing": ".json",
}
KINDS: tuple[str, ...] = tuple(_SUFFIXES)  # every kind a subject file can be named as
TRANSFORM_SUFFIX = ".tfm"


def transform_file(folder: Path, subject: str, moving: str, fixed: str) -> Path:
    """A given registration's ITK file: ``<subject>_<moving>-to-<fixed>.tfm``.

    It resamples ``moving`` onto ``fixed`` as ITK registration writes it (maps the fixed
    image's points to the moving one's; see :mod:`iusynth.preprocessing.given_transforms`).
    """
    return Path(folder) / f"{subject}_{moving}-to-{fixed}{TRANSFORM_SUFFIX}"


def subject_file(subject_dir: Path, subject: str, kind: str) -> Path:
    """Return the path of one file kind (a modality, label, landmarks or truth) of a subject."""
    if kind not in _SUFFIXES:
        raise ValueError(f"unknown file kind {kind!r}; expected one of {sorted(_SUFFIXES)}")
    return Path(subject_dir) / f"{subject}_{kind}{_SUFFIXES[kind]}"


@dataclass(frozen=True)
class SubjectEntry:
    """One row of a cohort manifest: a subject and the file kinds it has."""

    subject: str
    available: frozenset[str]

    def has(self, kind: str) -> bool:
        """Whether the subject has this file kind."""
        return kind in self.available

    @property
    def mr_sequences(self) -> tuple[str, ...]:
        """The MR sequences present, in canonical order."""
        return tuple(seq for seq in MR_SEQUENCES if seq in self.available)


def check_subject_id(subject: str) -> str:
    """Return ``subject`` if it is a safe identifier for paths and wildcards, else raise.

    The whole string must match (a trailing newline is refused), within
    :data:`SUBJECT_ID_MAX_LENGTH` characters.
    """
    if not SUBJECT_ID_PATTERN.fullmatch(subject):
        raise ValueError(
            f"subject id {subject!r} must start with a letter or digit and contain only "
            "letters, digits, '_' and '-'; rename the subject (its folder and its row)"
        )
    if len(subject) > SUBJECT_ID_MAX_LENGTH:
        raise ValueError(
            f"subject id {subject[:24]!r}... has {len(subject)} characters, more than "
            f"{SUBJECT_ID_MAX_LENGTH} (file names derived from it would be too long); give "
            "the subject a shorter id (its folder and its row)"
        )
    return subject


def write_manifest(path: Path, entries: list[SubjectEntry]) -> None:
    """Write a cohort manifest (``subjects.tsv``) atomically."""
    from iusynth.core.fileio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["subject", *FILE_KINDS])
        for entry in sorted(entries, key=lambda e: e.subject):
            writer.writerow([entry.subject, *(int(entry.has(kind)) for kind in FILE_KINDS)])


def read_manifest(path: Path) -> list[SubjectEntry]:
    """Read a cohort manifest, with an error naming the file when it is malformed.

    A UTF-8 byte-order mark is accepted; other encodings, missing columns, bad values and
    a subject listed twice are refused with the line numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"cohort manifest {path} not found: a cohort folder must hold {MANIFEST_NAME} "
            "(written by the demo generator or the dataset converters)"
        )
    data = path.read_bytes()
    try:  # utf-8-sig: a byte-order mark (spreadsheet exports) is read transparently
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"cohort manifest {path} is not UTF-8 text (line {line}: {error.reason}): save it "
            "as UTF-8 (tab-separated) and rerun"
        ) from error
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter="\t"))
    entries = []
    first_line: dict[str, int] = {}
    for line_number, row in enumerate(rows, start=2):
        missing = [col for col in ("subject", *FILE_KINDS) if col not in row]
        if missing:
            raise ValueError(
                f"cohort manifest {path}: line {line_number} lacks columns {missing}: the "
                f"header must be 'subject' then {list(FILE_KINDS)}, tab-separated"
            )
        try:
            available = frozenset(kind for kind in FILE_KINDS if int(row[kind]) == 1)
            subject = check_subject_id(row["subject"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: line {line_number}: {error}") from error
        if subject in first_line:
            raise ValueError(
                f"cohort manifest {path}: subject {subject} is listed twice (lines "
                f"{first_line[subject]} and {line_number}); a duplicated row would put the "
                "subject in both training and validation: delete one of the two rows"
            )
        first_line[subject] = line_number
        entries.append(SubjectEntry(subject, available))
    return entries
