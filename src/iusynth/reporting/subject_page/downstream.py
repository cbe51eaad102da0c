"""Section 4 of a subject page: the experiments downstream of synthesis it takes part in.

Each nnU-Net's segmentation of the real iUS against the iUS tumour label (Dice, ASSD);
the registration experiment's TRE per displacement bin, direct and synthesis-assisted;
for the swept cohort, planes of the virtual sweep with the iUS each method synthesised on
them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from iusynth.core.fileio import load_nifti
from iusynth.reporting import report_figures
from iusynth.reporting.render import inline_figure
from iusynth.reporting.run_warnings import Check
from iusynth.reporting.settings import PageSettings
from iusynth.reporting.subject_page.files import SubjectFiles, read_csv


def segmentation_part(files: SubjectFiles, settings: PageSettings, subject: str) -> dict[str, Any]:
    """Each method's nnU-Net prediction on the real iUS against its label, with Dice / ASSD."""
    from iusynth.preprocessing.slices import load_slices

    rows = []
    predictions: dict[str, np.ndarray] = {}
    stack = load_slices(files.synthesis_slices)
    grid_slices = np.asarray(stack.meta["slice_indices"])
    for method, paths in files.segmentation.items():
        frame = read_csv(paths["metrics"], ("dice", "assd_mm"), "segment_real_ius")
        label = settings.segmentation_methods.get(method, method)
        if frame.empty:
            rows.append({"method": method, "label": label, "dice": None, "assd_mm": None})
            continue
        rows.append(
            {
                "method": method,
                "label": label,
                "dice": float(frame["dice"].iloc[0]),
                "assd_mm": float(frame["assd_mm"].iloc[0]),
            }
        )
        mask = np.asarray(load_nifti(paths["mask"]).dataobj)
        predictions[label] = np.moveaxis(mask[:, :, grid_slices], 2, 0)
    figures = []
    if "tumor-US" in stack.labels and predictions:
        truth = np.asarray(stack.labels["tumor-US"])
        chosen = report_figures.largest_label_slices(truth, settings.reports.figure_slices)
        if chosen:
            figures.append(
                inline_figure(
                    report_figures.segmentation_figure(
                        np.asarray(stack.images[chosen, 0]),
                        truth[chosen],
                        {name: masks[chosen] for name, masks in predictions.items()},
                        [int(grid_slices[i]) for i in chosen],
                    ),
                    "nnU-Net's prediction on the real iUS (shaded magenta) and the iUS tumour "
                    "label (lime outline), on the slices with the most tumour.",
                    f"{subject}: segmentation of the real iUS by each method",
                    settings.reports.figure_dpi,
                )
            )
    return {"rows": rows, "figures": figures}


def registration_experiment_part(
    files: SubjectFiles, settings: PageSettings, subject: str, checks: list[Check]
) -> dict[str, Any] | None:
    """TRE before and after direct / synthesis-assisted registration per displacement bin."""
    columns = ("sequence", "method", "bin", "initial_tre_mm", "final_tre_mm", "displacement_mm")
    frame = read_csv(files.registration_experiment, columns, "registration_experiment")
    if frame.empty:
        return None
    grouped = (
        frame.groupby(["sequence", "bin", "method"], sort=False)
        .agg(
            runs=("final_tre_mm", "size"),
            displacement_mm=("displacement_mm", "mean"),
            initial_tre_mm=("initial_tre_mm", "mean"),
            final_tre_mm=("final_tre_mm", "mean"),
        )
        .reset_index()
    )
    rows = grouped.to_dict("records")
    for (sequence, method), runs in frame.groupby(["sequence", "method"], sort=False):
        worse = int((runs["final_tre_mm"] > runs["initial_tre_mm"]).sum())
        if worse:
            checks.append(
                Check(
                    "downstream",
                    f"registration experiment: {worse} of {len(runs)} {method} registrations "
                    f"to {sequence} ended farther from the landmarks than they started",
                )
            )
    methods = list(dict.fromkeys(str(method) for method in frame["method"]))
    figure = inline_figure(
        report_figures.tre_by_bin_figure(rows, methods),
        "TRE of the displaced start and after each registration, per sequence and "
        "displacement bin (mean over the bin's runs): direct iUS-MR registration, and "
        "registration to the MR synthesised from the iUS.",
        f"{subject}: registration experiment, TRE by displacement bin",
        settings.reports.figure_dpi,
    )
    return {"rows": rows, "figures": [figure]}


def sweep_part(files: SubjectFiles, settings: PageSettings, subject: str) -> dict[str, Any]:
    """A few planes of the subject's virtual sweep: its MR, each method's iUS, the tumour."""
    from iusynth.preprocessing.slices import load_slices

    sweep = load_slices(files.sweep)
    labels = np.asarray(sweep.labels["tumor-MR"])
    chosen = report_figures.largest_label_slices(labels, settings.reports.figure_slices)
    if not chosen:
        chosen = list(range(min(settings.reports.figure_slices, len(labels))))
    mr = {
        name: np.asarray(sweep.images[chosen, channel])
        for channel, name in enumerate(sweep.meta["modalities"])
        if name in sweep.acquired
    }
    synthetic = {}
    for method, folder in files.synthetic_ius.items():
        planes_path = Path(folder) / "us.npy"
        if not planes_path.is_file():
            raise FileNotFoundError(f"{planes_path} does not exist; re-run the rule synthetic_ius")
        planes = np.load(planes_path, mmap_mode="r")
        synthetic[settings.label(method)] = np.asarray(planes[0, chosen])
    figure = inline_figure(
        report_figures.sweep_figure(mr, synthetic, labels[chosen], chosen),
        "Planes of the virtual iUS sweep through the tumour: the MR sequences sampled on "
        "them, the iUS each method synthesised from them (first temperature) and the tumour "
        "label (lime) the segmentation networks learn from.",
        f"{subject}: virtual sweep planes and synthetic iUS",
        settings.reports.figure_dpi,
    )
    return {"planes": len(labels), "figures": [figure]}


def downstream_section(
    files: SubjectFiles, settings: PageSettings, subject: str, checks: list[Check]
) -> dict[str, Any]:
    """The experiments the subject takes part in (empty when none)."""
    downstream: dict[str, Any] = {}
    if files.segmentation:
        downstream["segmentation"] = segmentation_part(files, settings, subject)
    if files.registration_experiment is not None:
        experiment = registration_experiment_part(files, settings, subject, checks)
        if experiment is not None:
            downstream["registration_experiment"] = experiment
        else:
            checks.append(
                Check("downstream", "no landmarks: not part of the registration experiment")
            )
    if files.sweep is not None:
        downstream["sweep"] = sweep_part(files, settings, subject)
    return downstream
