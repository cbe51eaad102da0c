"""Registration with NiftyReg's ``reg_aladin``, driven through nipype's NiftyReg interfaces.

The binaries come from the PyPI ``niftyreg`` package. Conventions: a transform is a 4x4
matrix on RAS world millimetres; ``reg_aladin`` returns the map from the *reference*
image's world to the *floating* image's world.

iUS -> MR: block matching on raw MR against speckled iUS has little to work with when the
MR is the reference (the sector's border and the whole head enter the blocks). The iUS is
therefore the reference, restricted to an eroded mask of its sector and smoothed against
speckle, and the MR floats; the result maps iUS world points to MR world points, which is
exactly what resampling the MR into the iUS grid needs. On the demo cohort a rigid
transform recovers the simulated misalignment best (see docs/datasets.md, Preprocessing).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from iusynth.core.fileio import save_nifti
from iusynth.core.geometry import apply_transform
from iusynth.core.subject import SubjectRecord
from iusynth.preprocessing.checks import (
    CHECKS_KEY,
    ImplausibleRegistration,
    Volume,
    check_registration,
)
from iusynth.preprocessing.pipeline import check_overlap, ultrasound_fov
from iusynth.preprocessing.settings import RegistrationChecks, RegistrationOptions

LANDMARK_TIE_MM = 1e-6  # landmark errors closer than this are equal (the identity's rounding)


@dataclass(frozen=True)
class RegistrationResult:
    """A reference-world -> floating-world transform and how long it took."""

    matrix: np.ndarray
    seconds: float


def niftyreg_bin_dir() -> Path:
    """The NiftyReg binaries: the PyPI ``niftyreg`` package's, else those on PATH."""
    try:
        import niftyreg

        folder = Path(niftyreg.__file__).parent / "bin"
        if (folder / "reg_aladin").is_file():
            return folder
    except ImportError:
        pass
    found = shutil.which("reg_aladin")
    if found:
        return Path(found).parent
    raise FileNotFoundError(
        "NiftyReg's reg_aladin was found neither in the 'niftyreg' Python package nor on PATH: "
        "install it with 'CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install niftyreg'"
    )


def _nipype_reg_aladin() -> Any:
    """Return nipype's RegAladin interface, pointed at the packaged binaries, offline."""
    os.environ["NIFTYREGDIR"] = str(niftyreg_bin_dir())
    os.environ["NIPYPE_NO_ET"] = "1"  # no network version check
    from nipype.interfaces.niftyreg import RegAladin

    return RegAladin


def reg_aladin(
    reference: Path,
    floating: Path,
    options: RegistrationOptions,
    reference_mask: Path | None = None,
    initial: np.ndarray | None = None,
) -> RegistrationResult:
    """Run ``reg_aladin`` and return the reference -> floating world map it found.

    It starts from the headers (-nac), or from ``initial`` (a reference world -> floating
    world matrix, -inaff) when one is given.
    """
    reg_aladin_interface = _nipype_reg_aladin()
    with tempfile.TemporaryDirectory(prefix="reg_aladin.") as workdir:
        node = reg_aladin_interface(
            ref_file=str(Path(reference).resolve()),
            flo_file=str(Path(floating).resolve()),
            aff_file=str(Path(workdir) / "affine.txt"),
            res_file=str(Path(workdir) / "resampled.nii.gz"),
            rig_only_flag=options.transform == "rigid",
            nosym_flag=not options.symmetric,
            ln_val=options.levels,
            lp_val=options.levels_performed or options.levels,
            smoo_r_val=options.reference_smoothing_mm,
            omp_core_val=options.threads,
            verbosity_off_flag=True,
        )
        if initial is None:
            node.inputs.nac_flag = True
        else:
            initial_path = Path(workdir) / "initial.txt"
            np.savetxt(initial_path, np.asarray(initial, dtype=float))
            node.inputs.in_aff_file = str(initial_path)
        if reference_mask is not None:
            node.inputs.rmask_file = str(Path(reference_mask).resolve())
        start = time.perf_counter()
        try:
            result = node.run(cwd=workdir)
            stderr = result.runtime.stderr or ""
        except Exception as error:  # nipype raises its own types for a non-zero exit
            stderr = str(error)
        seconds = time.perf_counter() - start
        affine_path = Path(workdir) / "affine.txt"
        if not affine_path.is_file():
            raise RuntimeError(
                f"reg_aladin gave no transform for reference {reference} and floating {floating}: "
                f"{stderr.strip()[-500:]}"
            )
        matrix = np.loadtxt(affine_path)
    return RegistrationResult(matrix=matrix, seconds=seconds)


def sector_mask(us_image: Any, us_path: Path, erosion_mm: float) -> np.ndarray:
    """The voxels block matching may use: iUS foreground (> 0) eroded by ``erosion_mm``.

    The erosion keeps blocks off the sector's edge and off anechoic areas (fluid,
    acoustic shadows), where there is no speckle to match.
    """
    mask = np.asarray(us_image.dataobj) > 0
    if erosion_mm > 0:
        spacing = np.linalg.norm(us_image.affine[:3, :3], axis=0)
        mask = ndimage.distance_transform_edt(mask, sampling=spacing) > erosion_mm
    if not mask.any():
        raise ValueError(
            f"iUS image {us_path}: no foreground is left after a {erosion_mm} mm erosion"
        )
    return mask


def register_us_to_mr(
    record: SubjectRecord,
    sequence: str,
    options: RegistrationOptions,
    checks: RegistrationChecks,
) -> tuple[RegistrationResult, dict[str, float]]:
    """Register a subject's iUS to one of its MR sequences; the result maps iUS -> MR world.

    Before registering, the iUS field of view must mostly fall inside the MR volume
    through the headers alone; else the two do not share a world frame. After it, the
    result is checked over the sector (:func:`iusynth.preprocessing.checks.check_registration`);
    what the checks measured is returned with it.
    """
    us_path, mr_path = record.path("US"), record.path(sequence)
    us_image = record.ultrasound()
    mr_image = record.image(sequence)
    fov = ultrasound_fov(np.asarray(us_image.dataobj))
    check_overlap(us_path, fov, us_image.affine, mr_path, mr_image, np.eye(4))
    mask = sector_mask(us_image, us_path, options.mask_erosion_mm)
    with tempfile.TemporaryDirectory(prefix="us_mask.") as workdir:
        mask_path = Path(workdir) / "us_sector_mask.nii.gz"
        save_nifti(mask_path, mask.astype(np.uint8), us_image.affine)
        result = reg_aladin(us_path, mr_path, options, reference_mask=mask_path)
    measured = check_registration(
        Volume.of(us_path, us_image),
        Volume.of(mr_path, mr_image),
        result.matrix,
        checks,
        mask,
        suspect=flip_suspect(record),
    )
    return result, measured


def flip_suspect(record: SubjectRecord) -> tuple[Path, str] | None:
    """The iUS as the likelier flipped header of an iUS -> MR pair, with the reason.

    When the subject has several MR sequences, their alignment to each other passed the
    same checks first, so their headers agree and the iUS is the odd one out. None with a
    single MR sequence (either may be flipped).
    """
    if len(record.mr_sequences) < 2:
        return None
    sequences = ", ".join(record.mr_sequences)
    return (
        record.path("US"),
        f"the subject's MR sequences ({sequences}) agree with each other, as their alignment "
        "checks passed; unless all of them were converted the same wrong way",
    )


def align_mr_sequence(
    reference_path: Path, moving_path: Path, options: RegistrationOptions
) -> RegistrationResult:
    """Rigidly align one MR sequence to the reference MR; maps reference world -> sequence world.

    A whole-head rigid alignment needs no full resolution: the finest pyramid level is
    skipped (3x faster on the demo, same transform to 0.1 mm).
    """
    rigid = dataclasses.replace(
        options,
        transform="rigid",
        levels_performed=max(1, options.levels - 1),
        reference_smoothing_mm=0.0,
    )
    return reg_aladin(reference_path, moving_path, rigid)


def landmark_errors(
    mr_points: np.ndarray, us_points: np.ndarray, us_to_mr: np.ndarray
) -> dict[str, float]:
    """Landmark distances (mm) before (header only) and after mapping iUS points into MR world."""
    before = np.linalg.norm(us_points - mr_points, axis=1)
    after = np.linalg.norm(apply_transform(us_to_mr, us_points) - mr_points, axis=1)
    return {
        "landmarks": len(before),
        "before_median_mm": float(np.median(before)),
        "before_mean_mm": float(before.mean()),
        "after_median_mm": float(np.median(after)),
        "after_mean_mm": float(after.mean()),
        "after_max_mm": float(after.max()),
    }


def align_subject_sequences(
    record: SubjectRecord,
    reference_order: list[str],
    options: RegistrationOptions | None,
    checks: RegistrationChecks,
) -> dict[str, Any]:
    """Rigidly align every MR sequence of a subject to its reference sequence (JSON-ready).

    With ``options`` None the headers are trusted: the record holds no transform (identity).
    Either way each sequence is checked against the reference
    (:func:`iusynth.preprocessing.checks.check_registration`: a flipped header, implausible
    motion, a similarity worse than the headers'); the measures are kept in ``checks``.
    When two or more sequences all fail against the reference, the reference is named.
    """
    reference = record.reference(reference_order)
    reference_path = record.path(reference)
    reference_volume = Volume.of(reference_path, record.image(reference))
    alignment: dict[str, Any] = {
        "subject": record.subject,
        "reference_sequence": reference,
        "transforms": {},
        "seconds": {},
        "checks": {},
    }
    failures: dict[str, ImplausibleRegistration] = {}
    for sequence in record.mr_sequences:
        if sequence == reference:
            continue
        path = record.path(sequence)
        volume = Volume.of(path, record.image(sequence))
        matrix = np.eye(4)
        if options is not None:
            result = align_mr_sequence(reference_path, path, options)
            matrix = result.matrix
            alignment["transforms"][sequence] = matrix.tolist()
            alignment["seconds"][sequence] = result.seconds
        try:
            alignment["checks"][sequence] = check_registration(
                reference_volume, volume, matrix, checks
            )
        except ImplausibleRegistration as failure:
            failures[sequence] = failure
    if len(failures) >= 2 and not alignment["checks"]:
        raise ImplausibleRegistration(
            f"{reference_path}: every other MR sequence of {record.subject} "
            f"({', '.join(failures)}) disagrees with this reference, so its header is the "
            "probable culprit (flipped: LPS coordinates written as RAS); fix its header, or "
            "put a sequence you trust first in preprocessing.reference_order. First report: "
            f"{next(iter(failures.values()))}"
        )
    if failures:
        raise next(iter(failures.values()))
    return alignment


def register_subject(
    record: SubjectRecord,
    reference_order: list[str],
    options: RegistrationOptions,
    mr_alignment: dict[str, np.ndarray],
    checks: RegistrationChecks,
) -> dict[str, Any]:
    """Register a subject's iUS to its reference MR; add landmark errors when it has landmarks.

    ``mr_alignment[seq]`` maps reference MR world -> that sequence's world; landmarks
    placed on another sequence than the reference (see
    :meth:`SubjectRecord.annotation_sequence`) are brought into the reference world
    through it. The registration is checked (see :func:`register_us_to_mr`), and a median
    landmark error worse than the headers' stops the run unless
    ``checks.allow_worse_landmarks``.
    """
    reference = record.reference(reference_order)
    result, measured = register_us_to_mr(record, reference, options, checks)
    registration: dict[str, Any] = {
        "subject": record.subject,
        "reference_sequence": reference,
        "transform": options.transform,
        "seconds": result.seconds,
        "us_to_mr": result.matrix.tolist(),
        "checks": measured,
    }
    if record.has("landmarks"):
        pairs = record.landmarks()
        sequence = record.annotation_sequence(reference)
        to_reference = np.linalg.inv(mr_alignment.get(sequence, np.eye(4)))
        mr_points = apply_transform(to_reference, pairs.first)
        registration |= landmark_errors(mr_points, pairs.second, result.matrix)
        registration["landmark_sequence"] = sequence
        check_landmarks(registration, record, checks)
    return registration


def check_landmarks(
    registration: dict[str, Any], record: SubjectRecord, checks: RegistrationChecks
) -> None:
    """Refuse a registration whose median landmark error is worse than the headers' own."""
    before, after = registration["before_median_mm"], registration["after_median_mm"]
    if after > before + LANDMARK_TIE_MM and not checks.allow_worse_landmarks:
        reference = record.path(registration["reference_sequence"])
        raise ImplausibleRegistration(
            f"{record.path('US')} registered to {reference}: the registration made the "
            f"landmarks of {record.path('landmarks')} worse than the headers (median "
            f"{before:.2f} -> {after:.2f} mm): probably a flipped header (LPS coordinates "
            f"written as RAS) on {reference} or {record.path('US')}, or a registration that "
            "diverged; fix the header of the flipped file, or set "
            f"{CHECKS_KEY}.allow_worse_landmarks: true to accept the result"
        )


def registration_table(records: list[dict[str, Any]]) -> Any:
    """One row per subject: reference, seconds and landmark errors (a pandas DataFrame)."""
    import pandas as pd

    columns = [
        "subject",
        "reference_sequence",
        "transform",
        "seconds",
        "landmarks",
        "before_median_mm",
        "before_mean_mm",
        "after_median_mm",
        "after_mean_mm",
        "after_max_mm",
    ]
    rows = [{column: record.get(column, float("nan")) for column in columns} for record in records]
    return pd.DataFrame(rows, columns=columns).sort_values("subject").reset_index(drop=True)
