"""Command-line stages of the cohorts: demo subjects, manifests, real-dataset downloads."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from iusynth.core.commands import Stage
from iusynth.core.settings import from_json

log = logging.getLogger("iusynth")


def _download_policy(args: argparse.Namespace) -> Any:
    """The retry policy from the 'download' config section given as JSON."""
    from iusynth.cohorts.datasets.download import RetryPolicy

    return from_json(RetryPolicy, args.download)


def _demo_template(args: argparse.Namespace) -> None:
    """Build the demo's MNI anatomy once, for every subject to read."""
    from iusynth.cohorts.demo.anatomy import load_mni_anatomy, save_anatomy

    start = time.perf_counter()
    anatomy = load_mni_anatomy(args.spacing_mm)
    save_anatomy(anatomy, args.output)
    log.info(
        "template anatomy %s at %s mm in %.1f s",
        anatomy.shape,
        args.spacing_mm,
        time.perf_counter() - start,
    )


def _demo_subject(args: argparse.Namespace) -> None:
    """Generate one demo subject into its folder."""
    from iusynth.cohorts.demo.anatomy import read_anatomy
    from iusynth.cohorts.demo.generate import generate_subject
    from iusynth.cohorts.demo.plan import plan_cohort
    from iusynth.cohorts.demo.settings import DemoCohortSettings, DemoSettings

    settings = from_json(DemoSettings, args.settings)
    cohort = from_json(DemoCohortSettings, args.cohort_settings)
    plans = plan_cohort(args.cohort, args.dataset, settings.seed, cohort)
    plan = next((plan for plan in plans if plan.subject == args.subject), None)
    if plan is None:
        raise SystemExit(f"subject {args.subject!r} is not planned for demo cohort {args.cohort!r}")
    start = time.perf_counter()
    subject = generate_subject(plan, settings, args.output, read_anatomy(args.template))
    log.info(
        "generated %s (%s, %s) in %.1f s",
        args.subject,
        plan.grade,
        "+".join(plan.modalities),
        time.perf_counter() - start,
    )
    if "initial_landmark_error_mm" in subject.truth:
        log.info("median landmark misalignment %.2f mm", subject.truth["initial_landmark_error_mm"])


def _cohort_manifest(args: argparse.Namespace) -> None:
    """Write a cohort's subjects.tsv from its subject folders."""
    from iusynth.core import layout
    from iusynth.core.subject import SubjectRecord

    entries = [SubjectRecord.read(folder).entry for folder in args.subject_dirs]
    layout.write_manifest(args.output, entries)
    log.info("wrote %s with %d subjects", args.output, len(entries))


def _remind_plan(args: argparse.Namespace) -> None:
    """Plan ReMIND's series from IDC's index; write plan.tsv and print the plan."""
    from iusynth.cohorts.datasets.idc import IndexProblem, index_version
    from iusynth.cohorts.datasets.remind import (
        check_index_against_ledger,
        format_plan,
        plan_cohort,
        write_plan,
    )

    if args.index_version and args.index_version != index_version():
        raise IndexProblem(
            f"the workflow planned ReMIND with idc-index-data {args.index_version}, but this "
            f"job's environment has {index_version()}: install the same release in both "
            "(envs/datasets.yaml and the environment running snakemake)"
        )
    check_index_against_ledger(args.raw)
    plan = plan_cohort(
        args.subjects, args.reference_order, manifest=args.manifest, targets=args.targets
    )
    write_plan(args.output, plan)
    print(format_plan(plan))


def _remind_download(args: argparse.Namespace) -> None:
    """Download and verify one planned ReMIND series (IDC bucket or NBIA)."""
    from iusynth.cohorts.datasets.remind import PlannedSeries, download_series

    entry = PlannedSeries.from_row(json.loads(args.series))
    download_series(
        entry, args.raw, args.output, api=args.api, url=args.url, policy=_download_policy(args)
    )
    log.info("downloaded %s %s (%s)", entry.subject, entry.role, entry.series.description)


def _remind_convert(args: argparse.Namespace) -> None:
    """Convert one downloaded ReMIND patient to the canonical layout."""
    from iusynth.cohorts.datasets.remind import convert_subject
    from iusynth.preprocessing.settings import RegistrationSettings

    settings = from_json(RegistrationSettings, args.settings, threads=args.threads)
    options = settings.registration if settings.align_mr_sequences else None
    records = [json.loads(Path(path).read_text()) for path in args.records]
    source = convert_subject(
        records, args.output, reference_order=list(settings.reference_order), alignment=options
    )
    log.info("converted %s: %s", args.output.name, sorted(source["series"]))
    for note in source["notes"]:
        log.warning("%s: %s", args.output.name, note)


def _upenn_extract(args: argparse.Namespace) -> None:
    """Unpack a UPenn-GBM package archive safely."""
    from iusynth.cohorts.datasets.download import safe_extract
    from iusynth.core.fileio import write_json

    files = safe_extract(args.archive, args.target)
    write_json(args.output, {"archive": str(args.archive), "files": len(files)})
    log.info("extracted %d files into %s", len(files), args.target)


def _upenn_verify(args: argparse.Namespace) -> None:
    """Check a UPenn-GBM package against its MD5 list."""
    from iusynth.cohorts.datasets.upenn import verify_package

    summary = verify_package(args.package, args.checksums, args.cases, args.output, args.raw)
    log.info("verified %d files of %d cases", summary["files_verified"], summary["cases"])


def _upenn_convert(args: argparse.Namespace) -> None:
    """Copy one UPenn-GBM case into the canonical layout."""
    from iusynth.cohorts.datasets.upenn import convert_case

    source = convert_case(args.package, args.subject, args.output)
    log.info("converted %s (%s label)", args.subject, source["label_kind"])


def _resect_download(args: argparse.Namespace) -> None:
    """Download and verify one RESECT case."""
    from iusynth.cohorts.datasets.resect import download_subject

    download_subject(
        args.subject, args.raw, args.output, base_urls=args.url, policy=_download_policy(args)
    )
    log.info("downloaded %s", args.subject)


def _resect_segmentations(args: argparse.Namespace) -> None:
    """Download and extract RESECT-SEG."""
    from iusynth.cohorts.datasets.resect import download_segmentations

    download_segmentations(args.raw, args.output, url=args.url, policy=_download_policy(args))


def _resect_convert(args: argparse.Namespace) -> None:
    """Lay out one downloaded RESECT case."""
    from iusynth.cohorts.datasets.resect import convert_subject

    record = json.loads(args.record.read_text())
    folder = json.loads(args.segmentations.read_text())["folder"] if args.segmentations else None
    convert_subject(record, Path(folder) if folder else None, args.output)
    log.info("converted %s", record["subject"])


STAGES = (
    Stage(
        "demo-template",
        "build the demo's MNI152 anatomy (tissues, brain mask) once, as an .npz",
        _demo_template,
        [
            ("--spacing-mm", {"required": True, "type": float, "help": "demo.mr_spacing_mm"}),
            ("--output", {"required": True, "type": Path, "help": "the .npz to write"}),
        ],
    ),
    Stage(
        "demo-subject",
        "generate one subject of the offline demo cohort",
        _demo_subject,
        [
            ("--cohort", {"required": True, "help": "the cohort's name (a row of 'cohorts')"}),
            ("--dataset", {"required": True, "help": "the dataset it simulates (remind, ...)"}),
            "subject",
            ("--settings", {"required": True, "help": "the simulator's settings as JSON"}),
            (
                "--cohort-settings",
                {"required": True, "help": "the cohort's demo.cohorts.<name> as JSON"},
            ),
            (
                "--template",
                {"required": True, "type": Path, "help": "the anatomy of demo-template"},
            ),
            "folder",
        ],
    ),
    Stage(
        "cohort-manifest",
        "write a cohort's subjects.tsv from its subject folders",
        _cohort_manifest,
        [
            ("--output", {"required": True, "type": Path, "help": "subjects.tsv to write"}),
            ("subject_dirs", {"nargs": "+", "help": "subject folders (named by subject id)"}),
        ],
    ),
    Stage(
        "remind-plan",
        "plan ReMIND's series from IDC's index (offline); write plan.tsv and print it",
        _remind_plan,
        [
            ("--subjects", {"required": True, "nargs": "+", "help": "ReMIND patients"}),
            (
                "--reference-order",
                {"required": True, "nargs": "+", "help": "preprocessing.reference_order"},
            ),
            ("--manifest", {"type": Path, "default": None, "help": ".tcia manifest"}),
            (
                "--targets",
                {
                    "required": True,
                    "choices": ["authors", "ours"],
                    "help": "whose tumour segmentation (cohorts.remind.targets)",
                },
            ),
            (
                "--index-version",
                {"default": None, "help": "the idc-index-data release the DAG was planned with"},
            ),
            "raw",
            ("--output", {"required": True, "type": Path, "help": "plan.tsv to write"}),
        ],
    ),
    Stage(
        "remind-download",
        "download and verify one planned ReMIND series (IDC's bucket or TCIA's NBIA)",
        _remind_download,
        [
            ("--series", {"required": True, "help": "the plan's row of the series, as JSON"}),
            ("--api", {"required": True, "choices": ["idc", "nbia"], "help": "where from"}),
            "raw",
            "url",
            "download",
            "json",
        ],
    ),
    Stage(
        "remind-convert",
        "convert one downloaded ReMIND patient (DICOM) to the canonical layout",
        _remind_convert,
        [
            (
                "--records",
                {"required": True, "nargs": "+", "type": Path, "help": "remind-download records"},
            ),
            "settings",
            "threads",
            "folder",
        ],
    ),
    Stage(
        "upenn-extract",
        "unpack a UPenn-GBM package archive, refusing unsafe members",
        _upenn_extract,
        [
            ("--archive", {"required": True, "type": Path, "help": "the package archive"}),
            ("--target", {"required": True, "type": Path, "help": "folder to extract into"}),
            "json",
        ],
    ),
    Stage(
        "upenn-verify",
        "check the UPenn-GBM package's files against its MD5 list",
        _upenn_verify,
        [
            ("--package", {"required": True, "type": Path, "help": "the package folder"}),
            ("--checksums", {"type": Path, "default": None, "help": "its MD5 list"}),
            ("--cases", {"required": True, "nargs": "+", "help": "cases to verify"}),
            "raw",
            "json",
        ],
    ),
    Stage(
        "upenn-convert",
        "copy one UPenn-GBM case into the canonical layout",
        _upenn_convert,
        [
            ("--package", {"required": True, "type": Path, "help": "the package folder"}),
            "subject",
            "folder",
        ],
    ),
    Stage(
        "resect-download",
        "download and verify one RESECT case (NIRD archive)",
        _resect_download,
        [
            "subject",
            "raw",
            (
                "--url",
                {
                    "required": True,
                    "action": "append",
                    "help": "the archive's RESECT folder (repeat: addresses tried in turn)",
                },
            ),
            "download",
            "json",
        ],
    ),
    Stage(
        "resect-segmentations",
        "download and extract RESECT-SEG (OSF)",
        _resect_segmentations,
        ["raw", "url", "download", "json"],
    ),
    Stage(
        "resect-convert",
        "lay out one downloaded RESECT case with RESECT-SEG's masks",
        _resect_convert,
        [
            ("--record", {"required": True, "type": Path, "help": "resect-download record"}),
            ("--segmentations", {"type": Path, "default": None, "help": "RESECT-SEG record"}),
            "folder",
        ],
    ),
)
