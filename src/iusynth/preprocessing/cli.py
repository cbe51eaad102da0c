"""Command-line stages of preprocessing: QC, registration, resampling, slices, splits."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from iusynth.core.commands import Stage
from iusynth.core.settings import from_json

log = logging.getLogger("iusynth")


def _qc_subject(args: argparse.Namespace) -> None:
    """Plot the QC figure of one subject."""
    from iusynth.core.subject import SubjectRecord
    from iusynth.preprocessing.qc import plot_subject

    plot_subject(SubjectRecord.read(args.subject_dir, args.subject, args.raw_sha256), args.output)
    log.info("wrote %s", args.output)


def _align_mr(args: argparse.Namespace) -> None:
    """Align a subject's MR sequences to its reference sequence."""
    from iusynth.core.fileio import write_json
    from iusynth.core.subject import SubjectRecord
    from iusynth.preprocessing.registration import align_subject_sequences
    from iusynth.preprocessing.settings import RegistrationSettings

    settings = from_json(RegistrationSettings, args.settings, threads=args.threads)
    if not settings.align_mr_sequences:
        log.info("MR -> MR alignment is switched off: identity transforms")
    subject = SubjectRecord.read(args.subject_dir, args.subject, args.raw_sha256)
    record = align_subject_sequences(
        subject,
        list(settings.reference_order),
        settings.registration if settings.align_mr_sequences else None,
        settings.registration_checks,
    )
    write_json(args.output, {**record, "raw_sha256": subject.raw_sha256})
    log.info(
        "aligned %s to %s (seconds %s)",
        list(record["transforms"]),
        record["reference_sequence"],
        record["seconds"],
    )


def _register_us(args: argparse.Namespace) -> None:
    """Register a subject's iUS to its reference MR (NiftyReg reg_aladin)."""
    from iusynth.core.fileio import write_json
    from iusynth.core.subject import SubjectRecord
    from iusynth.preprocessing.pipeline import read_alignment_record
    from iusynth.preprocessing.registration import register_subject
    from iusynth.preprocessing.settings import RegistrationSettings

    settings = from_json(RegistrationSettings, args.settings, threads=args.threads)
    _, alignment = read_alignment_record(args.alignment, args.subject)
    record = register_subject(
        SubjectRecord.read(args.subject_dir, args.subject, args.raw_sha256),
        list(settings.reference_order),
        settings.registration,
        alignment,
        settings.registration_checks,
    )
    write_json(args.output, record)
    log.info(
        "registered %s to %s in %.1f s",
        args.subject,
        record["reference_sequence"],
        record["seconds"],
    )
    if "after_median_mm" in record:
        log.info(
            "landmarks: median %.2f -> %.2f mm",
            record["before_median_mm"],
            record["after_median_mm"],
        )


def _import_transforms(args: argparse.Namespace) -> None:
    """Read a subject's given registration (ITK files), check it, write both records."""
    from iusynth.core.fileio import write_json
    from iusynth.core.subject import SubjectRecord
    from iusynth.preprocessing.given_transforms import given_registration, import_registration
    from iusynth.preprocessing.settings import RegistrationSettings

    settings = from_json(RegistrationSettings, args.settings, threads=1)
    record = SubjectRecord.read(args.subject_dir, args.subject, args.raw_sha256)
    given = given_registration(args.transforms, record)
    registration, alignment = import_registration(record, given, settings, args.transforms)
    write_json(args.alignment, {**alignment, "raw_sha256": record.raw_sha256})
    write_json(args.registration, registration)
    log.info(
        "%s: iUS -> %s from %s (NMI %.3f through the headers, %.3f given)",
        args.subject,
        registration["reference_sequence"],
        ", ".join(Path(f).name for f in registration["given"]["files"]),
        registration["checks"]["nmi_headers"],
        registration["checks"]["nmi_given"],
    )
    if "after_median_mm" in registration:
        log.info(
            "landmarks: median %.2f -> %.2f mm",
            registration["before_median_mm"],
            registration["after_median_mm"],
        )


def _preprocess(args: argparse.Namespace) -> None:
    """Resample and normalise a paired subject into its iUS grid."""
    import numpy as np

    from iusynth.core import layout
    from iusynth.core.fileio import atomic_directory, save_nifti, write_json
    from iusynth.core.subject import SubjectRecord
    from iusynth.preprocessing.pipeline import preprocess_subject, read_alignment_record
    from iusynth.preprocessing.settings import PreprocessingSettings

    settings = from_json(PreprocessingSettings, args.settings)
    registration = json.loads(Path(args.registration).read_text())
    reference, alignment = read_alignment_record(args.alignment, args.subject)
    if registration["reference_sequence"] != reference:
        raise ValueError(
            f"{args.registration} and {args.alignment} disagree on the reference sequence"
        )
    grid, volumes, summary = preprocess_subject(
        SubjectRecord.read(args.subject_dir, args.subject, args.raw_sha256),
        np.array(registration["us_to_mr"]),
        alignment,
        settings,
    )
    with atomic_directory(args.output) as folder:
        for name, volume in volumes.items():
            save_nifti(layout.subject_file(folder, args.subject, name), volume, grid.affine)
        write_json(layout.subject_file(folder, args.subject, "preprocessing"), summary)
    log.info(
        "preprocessed %s: grid %s, %s", args.subject, grid.shape, "+".join(summary["modalities"])
    )


def _export_slices(args: argparse.Namespace) -> None:
    """Write a preprocessed subject's 2D slice stack."""
    from iusynth.preprocessing.slices import export_slices

    meta = export_slices(args.preprocessed_dir, args.subject, args.output)
    log.info(
        "exported %d slices of %s (present: %s)",
        len(meta["slice_indices"]),
        args.subject,
        meta["present"],
    )


def _registration_table(args: argparse.Namespace) -> None:
    """Gather per-subject registration records into a CSV."""
    from iusynth.core.fileio import atomic_path
    from iusynth.preprocessing.registration import registration_table

    table = registration_table([json.loads(Path(path).read_text()) for path in args.records])
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, index=False, float_format="%.3f")
    measured = table["after_median_mm"].notna()
    if measured.any():
        log.info(
            "median landmark error over subjects: %.2f mm before, %.2f mm after (%d subjects)",
            table.loc[measured, "before_median_mm"].median(),
            table.loc[measured, "after_median_mm"].median(),
            measured.sum(),
        )


def _splits(args: argparse.Namespace) -> None:
    """Write the folds (training / validation / test lists) and the test cohort's list."""
    from iusynth.core import layout
    from iusynth.core.fileio import write_json
    from iusynth.core.splits import make_splits
    from iusynth.preprocessing.settings import SplitSettings

    settings = from_json(SplitSettings, args.settings)
    trainval = [entry.subject for entry in layout.read_manifest(args.trainval_manifest)]
    test = [entry.subject for entry in layout.read_manifest(args.test_manifest)]
    splits = make_splits(
        args.trainval_cohort,
        trainval,
        args.test_cohort,
        test,
        settings.source,
        settings.folds,
        settings.seed,
    )
    write_json(args.output, splits)
    log.info(
        "wrote %d %s folds over %d subjects, %d test subjects",
        len(splits["folds"]),
        settings.source,
        len(trainval),
        len(test),
    )


def _qc_registration(args: argparse.Namespace) -> None:
    """Plot a subject's registration QC figure."""
    from iusynth.core.subject import SubjectRecord
    from iusynth.preprocessing.qc import plot_subject_registration

    record = SubjectRecord.read(args.subject_dir, args.subject, args.raw_sha256)
    plot_subject_registration(record, args.preprocessed_dir, args.output)
    log.info("wrote %s", args.output)


STAGES = (
    Stage(
        "qc-subject",
        "plot a subject's QC figure (slices of every modality, label contours)",
        _qc_subject,
        ["subject-dir", "subject", "png"],
    ),
    Stage(
        "align-mr",
        "rigidly align a subject's MR sequences to its reference (reg_aladin)",
        _align_mr,
        ["subject-dir", "subject", "settings", "threads", "json"],
    ),
    Stage(
        "register-us",
        "register a subject's iUS to its reference MR (reg_aladin)",
        _register_us,
        ["subject-dir", "subject", "alignment", "settings", "threads", "json"],
    ),
    Stage(
        "import-transforms",
        "read a subject's given registration (ITK transform files) instead of registering",
        _import_transforms,
        [
            "subject-dir",
            "subject",
            (
                "--transforms",
                {
                    "required": True,
                    "help": "authors, subject_folders, or a folder of per-subject ITK files",
                },
            ),
            "settings",
            ("--registration", {"required": True, "type": Path, "help": "iUS record to write"}),
            ("--alignment", {"required": True, "type": Path, "help": "MR record to write"}),
        ],
    ),
    Stage(
        "preprocess",
        "resample and normalise a paired subject into its iUS grid",
        _preprocess,
        [
            "subject-dir",
            "subject",
            ("--registration", {"required": True, "type": Path, "help": "register-us record"}),
            "alignment",
            "settings",
            "folder",
        ],
    ),
    Stage(
        "export-slices",
        "write a preprocessed subject's 2D slice stack",
        _export_slices,
        ["preprocessed-dir", "subject", "folder"],
    ),
    Stage(
        "registration-table",
        "gather per-subject registration records into a CSV",
        _registration_table,
        [
            ("--output", {"required": True, "type": Path, "help": "CSV to write"}),
            ("records", {"nargs": "+", "help": "register-us JSON records"}),
        ],
    ),
    Stage(
        "splits",
        "write the folds (training, validation, test lists) and the test cohort's list",
        _splits,
        [
            (
                "--settings",
                {"required": True, "help": "the 'preprocessing.splits' section as JSON"},
            ),
            ("--trainval-cohort", {"required": True, "help": "cohort of the folds"}),
            ("--trainval-manifest", {"required": True, "type": Path, "help": "its subjects.tsv"}),
            ("--test-cohort", {"required": True, "help": "test cohort"}),
            ("--test-manifest", {"required": True, "type": Path, "help": "its subjects.tsv"}),
            "json",
        ],
    ),
    Stage(
        "qc-registration",
        "plot a subject's iUS/MR checkerboards before and after registration",
        _qc_registration,
        ["subject-dir", "subject", "preprocessed-dir", "png"],
    ),
)
