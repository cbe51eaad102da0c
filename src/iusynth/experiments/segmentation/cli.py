"""Command-line stages of the segmentation experiment (Table 4)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from iusynth.core.commands import Stage
from iusynth.core.settings import from_json

log = logging.getLogger("iusynth")
NETWORK = ("--network", {"required": True, "help": "segmentation.network, e.g. nnunet"})
FOLDER = ("--folder", {"required": True, "type": Path, "help": "the method's segmenter folder"})


def _segmenter(args: argparse.Namespace) -> Any:
    """The job's segmentation network (``--network``) with its settings."""
    from iusynth.experiments.segmentation.segmenter import segmenter_for
    from iusynth.experiments.segmentation.settings import NETWORK_SETTINGS

    settings = from_json(NETWORK_SETTINGS[args.network], args.settings, threads=args.threads)
    return segmenter_for(args.network, settings)


def _virtual_sweep(args: argparse.Namespace) -> None:
    """Virtual iUS sweep planes through an MR-only subject's tumour, with MR and labels."""
    from iusynth.core.subject import SubjectRecord
    from iusynth.experiments.segmentation.settings import VirtualSweepSettings
    from iusynth.experiments.segmentation.sweeps import make_sweeps

    settings = from_json(VirtualSweepSettings, args.settings)
    record = SubjectRecord.read(args.subject_dir, args.subject, args.raw_sha256)
    meta = make_sweeps(record, args.output, settings)
    log.info("%s: %d sweep planes", args.subject, len(meta["slice_indices"]))


def _synthetic_ius(args: argparse.Namespace) -> None:
    """Synthetic iUS on every plane of a virtual sweep, from its MR sequences."""
    import numpy as np
    import torch

    from iusynth.core.fileio import atomic_directory, write_json
    from iusynth.core.modalities import MR_SEQUENCES
    from iusynth.experiments.segmentation.settings import SyntheticIusSettings
    from iusynth.preprocessing.slices import load_slices
    from iusynth.synthesis.synthesizers import load_synthesizer, synthesise_stack

    torch.set_num_threads(args.threads)
    settings = from_json(SyntheticIusSettings, args.settings)
    sweep = load_slices(args.sweep)
    inputs = tuple(m for m in MR_SEQUENCES if m in sweep.acquired)
    synthesizer = load_synthesizer(args.models, settings.device)
    if "US" not in synthesizer.targets(inputs):
        raise ValueError(
            f"{args.method} cannot synthesise iUS from {'+'.join(inputs)} (the sequences of "
            f"{args.sweep}); for Pix2Pix add that direction to evaluation.directions"
        )
    temperatures = list(settings.temperatures) if synthesizer.stochastic else [None]
    torch.manual_seed(settings.seed)
    positions = np.arange(sweep.images.shape[0])
    planes = [
        synthesise_stack(synthesizer, sweep, inputs, t or 0.0, 1, positions)["US"][0]
        for t in temperatures
    ]
    with atomic_directory(args.output) as folder:
        np.save(folder / "us.npy", np.stack(planes))
        write_json(
            folder / "synthetic.json",
            {
                "subject": sweep.meta["subject"],
                "method": args.method,
                "inputs": list(inputs),
                "temperatures": temperatures,
                "sweep": str(args.sweep),
            },
        )
    log.info("%s: %d x %d synthetic iUS planes", args.method, len(planes), len(positions))


def _segmenter_prepare(args: argparse.Namespace) -> None:
    """Give a method's training planes to the segmentation network (export, planning)."""
    from iusynth.experiments.segmentation.planes import planes_from_stack, synthetic_planes
    from iusynth.preprocessing.slices import load_slices

    if args.real:
        labelled = [
            folder for folder in args.real if "tumor-US" in load_slices(folder).meta["labels"]
        ]
        unlabelled = sorted(folder.name for folder in args.real if folder not in labelled)
        if unlabelled:
            log.info("no iUS tumour label, not trained on: %s", ", ".join(unlabelled))
        if not labelled:
            raise ValueError(
                f"none of the {len(args.real)} real iUS slice stacks has an iUS tumour label "
                "(tumor-US): the fully supervised nnU-Net has nothing to learn from"
            )
        subjects = (planes_from_stack(folder, label="tumor-US") for folder in labelled)
    else:
        subjects = (
            synthetic_planes(folder, args.sweeps / folder.name) for folder in args.synthetic
        )
    _segmenter(args).prepare(args.folder, subjects)
    log.info("%s: %s data prepared in %s", args.method, args.network, args.folder)


def _segmenter_splits(args: argparse.Namespace) -> None:
    """Write the folds of a method's segmentation data, grouped by subject."""
    _segmenter(args).write_splits(args.folder, args.output)
    log.info("folds -> %s", args.output)


def _segmenter_train(args: argparse.Namespace) -> None:
    """Train one fold of a method's segmentation network; record its weights."""
    from iusynth.core.fileio import write_json
    from iusynth.training.pretrained import sha256_of

    weights = _segmenter(args).train(args.folder, args.fold, args.splits)
    record = {"fold": args.fold, "weights": str(weights), "sha256": sha256_of(weights)}
    write_json(args.output, record)
    log.info("fold %d -> %s", args.fold, weights)


def _segment_real_ius(args: argparse.Namespace) -> None:
    """Segment a real iUS subject with a method's ensemble of folds; score it (Dice, ASSD)."""
    import numpy as np
    import pandas as pd

    from iusynth.core.fileio import save_nifti
    from iusynth.evaluation.evaluate import write_csv
    from iusynth.experiments.segmentation.planes import planes_from_stack, stack_to_grid
    from iusynth.experiments.segmentation.scoring import CASE_COLUMNS, score_stack
    from iusynth.preprocessing.slices import load_slices

    meta = load_slices(args.slices).meta
    if "tumor-US" not in meta["labels"]:
        log.warning("%s has no iUS tumour label: nothing to score", args.slices)
        write_csv(pd.DataFrame(columns=list(CASE_COLUMNS)), args.output)
        return
    planes = planes_from_stack(args.slices, label="tumor-US")
    masks = _segmenter(args).predict(args.folder, args.folds, [planes])[planes.subject]
    affine = np.array(meta["grid_affine"])
    save_nifti(args.mask, stack_to_grid(masks, meta).astype(np.uint8), affine)
    row = score_stack(args.slices, masks, args.method, args.set)
    write_csv(pd.DataFrame([row]), args.output)
    log.info("%s %s: Dice %.3f, ASSD %.2f mm", args.method, *row[["subject", "dice", "assd_mm"]])


def _segmentation_tables(args: argparse.Namespace) -> None:
    """Table 4 (Dice and ASSD per method and test set) beside the paper's, and its boxplot."""
    from iusynth.evaluation.evaluate import read_metric_files, write_csv
    from iusynth.experiments.segmentation.scoring import CASE_COLUMNS
    from iusynth.experiments.segmentation.settings import SegmentationTableSettings
    from iusynth.reporting.figures import plot_segmentation_boxplot
    from iusynth.reporting.tables import (
        read_paper_results,
        segmentation_latex,
        segmentation_markdown,
        segmentation_table,
        write_table,
    )

    methods = from_json(SegmentationTableSettings, args.settings).methods
    per_case = read_metric_files(args.cases, CASE_COLUMNS)
    write_csv(per_case, args.per_case)
    table = segmentation_table(per_case, methods, read_paper_results(args.paper))
    write_table(table, args.table, segmentation_markdown(table), segmentation_latex(table))
    plot_segmentation_boxplot(per_case, methods, args.figure)
    log.info("Table 4 from %d cases", len(per_case))


STAGES = (
    Stage(
        "virtual-sweep",
        "virtual iUS sweep planes through an MR-only subject's tumour (MR and labels on them)",
        _virtual_sweep,
        [
            "subject-dir",
            "subject",
            "settings",
            "folder",
        ],
    ),
    Stage(
        "synthetic-ius",
        "synthesise iUS on every plane of a virtual sweep with one method",
        _synthetic_ius,
        [
            ("--method", {"required": True, "help": "method name (a variant or a GAN baseline)"}),
            ("--models", {"required": True, "nargs": "+", "type": Path, "help": "model.pt files"}),
            ("--sweep", {"required": True, "type": Path, "help": "the subject's sweep folder"}),
            "settings",
            "threads",
            "folder",
        ],
    ),
    Stage(
        "segmenter-prepare",
        "give a method's training planes to the segmentation network (export, planning)",
        _segmenter_prepare,
        [
            ("--method", {"required": True, "help": "Table 4 method"}),
            ("--synthetic", {"nargs": "*", "type": Path, "default": [], "help": "folders"}),
            ("--sweeps", {"type": Path, "default": None, "help": "folder of the sweeps"}),
            ("--real", {"nargs": "*", "type": Path, "default": [], "help": "real slice stacks"}),
            NETWORK,
            FOLDER,
            "settings",
            "threads",
        ],
    ),
    Stage(
        "segmenter-splits",
        "write the folds of a method's segmentation data (grouped by subject)",
        _segmenter_splits,
        [
            NETWORK,
            FOLDER,
            "settings",
            "threads",
            ("--output", {"required": True, "type": Path, "help": "splits JSON to write"}),
        ],
    ),
    Stage(
        "segmenter-train",
        "train one fold of a method's segmentation network",
        _segmenter_train,
        [
            ("--fold", {"required": True, "type": int, "help": "fold to train"}),
            ("--splits", {"required": True, "type": Path, "help": "segmenter-splits output"}),
            NETWORK,
            FOLDER,
            "settings",
            "threads",
            ("--output", {"required": True, "type": Path, "help": "fold record JSON to write"}),
        ],
    ),
    Stage(
        "segment-real-ius",
        "segment one real iUS subject with a method's nnU-Net ensemble and score it",
        _segment_real_ius,
        [
            ("--method", {"required": True, "help": "Table 4 method"}),
            ("--set", {"required": True, "help": "test set (the cohort's name)"}),
            ("--slices", {"required": True, "type": Path, "help": "the subject's slice stack"}),
            ("--folds", {"required": True, "nargs": "+", "type": int, "help": "folds to ensemble"}),
            NETWORK,
            FOLDER,
            "settings",
            "threads",
            ("--mask", {"required": True, "type": Path, "help": "predicted mask NIfTI to write"}),
            ("--output", {"required": True, "type": Path, "help": "metrics CSV to write"}),
        ],
    ),
    Stage(
        "segmentation-tables",
        "aggregate the segmentation scores: Table 4 and its boxplot",
        _segmentation_tables,
        [
            "settings",
            ("--paper", {"required": True, "type": Path, "help": "paper_results.csv"}),
            ("--cases", {"required": True, "nargs": "+", "type": Path, "help": "per-case CSVs"}),
            ("--per-case", {"required": True, "type": Path, "help": "all rows, CSV to write"}),
            ("--table", {"required": True, "nargs": 3, "type": Path, "help": "CSV, MD, LaTeX"}),
            ("--figure", {"required": True, "type": Path, "help": "PNG to write"}),
        ],
    ),
)
