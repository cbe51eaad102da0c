"""Registrations given as ITK transform files, used instead of NiftyReg's.

A cohort's ``transforms`` (``cohorts.<name>.transforms``) says where they come from:

- a folder with one sub-folder per subject, or ``subject_folders`` (the subject's own
  folder, beside its images), holding
  ``<subject>_US-to-<REF>.tfm``, the iUS registered to the MR ``REF`` (any name: one of
  the sequences, or another MR of the subject), and optionally
  ``<subject>_<REF>-to-<SEQ>.tfm`` for a sequence SEQ; a sequence without one is trusted to
  share REF's world (its header), as with ``preprocessing.align_mr_sequences: false``;
- ``authors``: the MMHVAE authors' ReMIND files (:mod:`iusynth.cohorts.datasets.authors`),
  their MR names matched to the subject's sequences through the series descriptions its
  ``source.json`` records.

A file ``A-to-B`` is what ITK-based registration writes for moving image A and fixed image
B (:mod:`iusynth.core.itk_transforms`): it maps B's points to A's, so the iUS -> REF map is
its inverse, as the authors' script takes it. :func:`import_registration` turns them into
the same records as the ``align-mr`` and ``register-us`` stages (iUS world -> reference
sequence world; reference sequence world -> each other sequence's world), after checks: a
transform that makes the images match worse (normalised mutual information) than their
headers do stops the job, naming the subject, the file and the likely causes; landmarks,
where the subject has them, are scored and checked as after NiftyReg.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iusynth.cohorts.registry import AUTHORS, SUBJECT_FOLDERS
from iusynth.core.geometry import apply_transform
from iusynth.core.itk_transforms import read_itk_affine
from iusynth.core.layout import TRANSFORM_SUFFIX, transform_file
from iusynth.core.subject import SubjectRecord
from iusynth.preprocessing.checks import (
    CHECKS_KEY,
    Comparison,
    ImplausibleRegistration,
    Volume,
    check_registration,
)
from iusynth.preprocessing.settings import RegistrationChecks, RegistrationSettings


@dataclass(frozen=True)
class GivenTransform:
    """One world map of a subject's given registration, and the file it came from."""

    matrix: np.ndarray  # 4x4, RAS millimetres, in the direction its use names
    file: Path | None  # None: the headers (identity)


@dataclass(frozen=True)
class GivenRegistration:
    """A subject's given registration: the iUS onto an MR, that MR onto each sequence."""

    reference: str  # the MR the iUS transform lands in (a sequence, or another MR)
    us: GivenTransform  # iUS world -> reference world
    sequences: dict[str, GivenTransform]  # reference world -> that sequence's world

    @property
    def files(self) -> list[Path]:
        """The transform files read."""
        return [t.file for t in (self.us, *self.sequences.values()) if t.file is not None]

    def to(self, sequence: str) -> GivenTransform:
        """Reference world -> ``sequence``'s world (identity: the same series, or headers)."""
        if sequence == self.reference:
            return GivenTransform(np.eye(4), None)
        return self.sequences.get(sequence, GivenTransform(np.eye(4), None))


def _inverse_of(path: Path) -> GivenTransform:
    """A file ``A-to-B`` (B's points -> A's) as the map A -> B, the way it is used here."""
    return GivenTransform(np.linalg.inv(read_itk_affine(path)), path)


def from_subject_folder(
    folder: Path, subject: str, sequences: tuple[str, ...]
) -> GivenRegistration:
    """A subject's transforms from one folder of ``<subject>_US-to-<REF>.tfm`` and more."""
    folder = Path(folder)
    found = sorted(folder.glob(transform_file(Path(), subject, "US", "*").name))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise FileNotFoundError(
            f"{folder}: expected one iUS transform {subject}_US-to-<MR>{TRANSFORM_SUFFIX} (the ITK "
            f"transform of the iUS registered to an MR of {subject}), found {listed}; put "
            "exactly one there, or register this cohort with transforms: niftyreg"
        )
    reference = found[0].name.removeprefix(f"{subject}_US-to-").removesuffix(TRANSFORM_SUFFIX)
    chosen = {}
    for sequence in sequences:
        path = transform_file(folder, subject, reference, sequence)
        if sequence != reference and path.is_file():
            chosen[sequence] = _inverse_of(path)
    return GivenRegistration(reference, _inverse_of(found[0]), chosen)


def series_descriptions(record: SubjectRecord) -> dict[str, str]:
    """The IDC series description of each sequence, from the subject's ``source.json``."""
    path = record.path("source")
    try:
        series = json.loads(path.read_text())["series"]
        return {s: series[s]["description"] for s in record.mr_sequences}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path} does not name the series of every sequence of {record.subject} "
            f"({error!r}): the authors' transforms are matched to the sequences by series "
            "description; re-run the ReMIND conversion (rule convert_remind_subject)"
        ) from error


def from_authors(record: SubjectRecord) -> GivenRegistration:
    """A ReMIND subject's transforms from the authors' files, matched by series description."""
    from iusynth.cohorts.datasets.authors import load_release

    case = load_release().case(record.subject)
    chosen = {}
    for sequence, description in series_descriptions(record).items():
        name = case.mr_name(description)
        if name is None:
            raise ValueError(
                f"{record.subject}: its {sequence} ({description!r}) is none of the MR series "
                f"the authors' transforms of {case.case} reach ({', '.join(case.mr_names)}); "
                "the conversion chose another series than theirs: re-plan ReMIND (rule "
                "plan_remind) with cohorts.remind.targets: authors"
            )
        if name != case.reference:
            chosen[sequence] = _inverse_of(case.rigid[name])
    return GivenRegistration(case.reference, _inverse_of(case.affine), chosen)


def given_registration(source: str, record: SubjectRecord) -> GivenRegistration:
    """A subject's given registration from a cohort's ``transforms`` (not ``niftyreg``)."""
    if source == AUTHORS:
        return from_authors(record)
    folder = (
        record.folder if source == SUBJECT_FOLDERS else Path(source).expanduser() / record.subject
    )
    return from_subject_folder(folder, record.subject, record.mr_sequences)


def transform_files(source: str, subject_folder: Path, subject: str) -> list[Path]:
    """The files a subject's import depends on (found before any job runs)."""
    if source == AUTHORS:
        from iusynth.cohorts.datasets.authors import load_release

        case = load_release().case(subject)
        return [case.affine, *case.rigid.values()]
    folder = Path(subject_folder) if source == SUBJECT_FOLDERS else Path(source) / subject
    return sorted(folder.glob(f"{subject}_*{TRANSFORM_SUFFIX}"))


def _check_similarity(
    comparison: Comparison,
    matrix: np.ndarray,
    what: str,
    file: Path,
    subject: str,
    tolerance: float,
) -> dict[str, float]:
    """NMI through the headers and through the given map; worse by > tolerance stops."""
    headers, given = comparison.nmi(np.eye(4)), comparison.nmi(matrix)
    if given < headers - tolerance:
        raise ImplausibleRegistration(
            f"{subject}: the given transform {file} makes {what} match worse than their "
            f"headers do (NMI {headers:.3f} -> {given:.3f}, tolerance "
            f"{CHECKS_KEY}.similarity_tolerance {tolerance:g}): it does not fit these images. "
            "Likely causes: the images' geometry differs from the one the transform was "
            "computed on (e.g. the DICOM conversion's geometry differs from the NRRD "
            "release's), a file written the other way round (A-to-B must map B's points to "
            "A's, as ITK registration writes it), or a matrix in RAS rather than ITK's LPS; "
            "fix the transform, or register this cohort with transforms: niftyreg"
        )
    return {"nmi_headers": headers, "nmi_given": given}


def _alignment(
    record: SubjectRecord, given: GivenRegistration, sequence: str, checks: RegistrationChecks
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reference sequence world -> each other sequence's world, each map checked."""
    to_sequence = given.to(sequence)
    back = np.linalg.inv(to_sequence.matrix)
    reference = Volume.of(record.path(sequence), record.image(sequence))
    transforms, measured = {}, {}
    for other in record.mr_sequences:
        if other == sequence:
            continue
        matrix = given.to(other).matrix @ back
        transforms[other] = matrix.tolist()
        floating = Volume.of(record.path(other), record.image(other))
        try:
            measured[other] = check_registration(reference, floating, matrix, checks)
        except ImplausibleRegistration as error:
            used = [str(f) for f in (given.to(other).file, to_sequence.file) if f] or ["headers"]
            raise ImplausibleRegistration(
                f"{record.subject}: the given MR -> MR map ({', '.join(used)}) fails a check: "
                f"{error}"
            ) from error
    return transforms, measured


def _landmarks(
    record: SubjectRecord,
    given: GivenRegistration,
    registration: dict[str, Any],
    transforms: dict[str, Any],
    checks: RegistrationChecks,
) -> dict[str, Any]:
    """The landmark errors of a given registration, refused when worse than the headers'."""
    from iusynth.preprocessing.registration import check_landmarks, landmark_errors

    pairs = record.landmarks()
    annotated = record.annotation_sequence(registration["reference_sequence"])
    to_reference = np.linalg.inv(np.asarray(transforms.get(annotated, np.eye(4))))
    mr_points = apply_transform(to_reference, pairs.first)
    us_to_mr = np.asarray(registration["us_to_mr"])
    errors = landmark_errors(mr_points, pairs.second, us_to_mr) | {"landmark_sequence": annotated}
    try:
        check_landmarks(registration | errors, record, checks)
    except ImplausibleRegistration as error:
        raise ImplausibleRegistration(
            f"{record.subject}: the given transform {given.us.file} does not fit its "
            f"landmarks (a file written the other way round, or for other images?): {error}"
        ) from error
    return errors


def import_registration(
    record: SubjectRecord,
    given: GivenRegistration,
    settings: RegistrationSettings,
    source: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The register-us and align-mr records of a given registration, checked (JSON-ready).

    The reference sequence is the first of ``settings.reference_order`` the subject has;
    the iUS record maps iUS world -> its world, the alignment record its world -> each
    other sequence's world.
    """
    from iusynth.preprocessing.registration import sector_mask

    checks: RegistrationChecks = settings.registration_checks
    sequence = record.reference(settings.reference_order)
    us_to_mr = given.to(sequence).matrix @ given.us.matrix
    us_image = record.ultrasound()
    region = sector_mask(us_image, record.path("US"), settings.registration.mask_erosion_mm)
    reference = Volume.of(record.path(sequence), record.image(sequence))
    comparison = Comparison(Volume.of(record.path("US"), us_image), reference, region)
    what = f"the iUS {record.path('US').name} and {record.path(sequence).name}"
    files = [str(path) for path in given.files]
    provenance = {"source": source, "registration_reference": given.reference, "files": files}
    registration: dict[str, Any] = {
        "subject": record.subject,
        "reference_sequence": sequence,
        "transform": "given",
        "given": provenance,
        "seconds": 0.0,
        "us_to_mr": us_to_mr.tolist(),
        "checks": _check_similarity(
            comparison, us_to_mr, what, given.us.file, record.subject, checks.similarity_tolerance
        ),
    }
    transforms, measured = _alignment(record, given, sequence, checks)
    alignment = {
        "subject": record.subject,
        "reference_sequence": sequence,
        "transforms": transforms,
        "seconds": {},
        "checks": measured,
        "given": provenance,
    }
    if record.has("landmarks"):
        registration |= _landmarks(record, given, registration, transforms, checks)
    return registration, alignment
