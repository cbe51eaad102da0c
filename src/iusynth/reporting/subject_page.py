"""One self-contained HTML page per subject, in the order the data flows through the workflow.

Sections, each present only where the subject takes part:

1. inputs: every modality the subject has (the QC figure of ``plot_subject_qc``), its
   grid, the tumour labels and landmarks, and what the cohort's role expects but the
   subject lacks;
2. registration (paired subjects): the iUS -> MR transform (rotation, displacement of the
   field of view's centre) and the MR -> MR alignments, landmark errors before and after,
   checkerboards (``plot_registration_qc``) and edge overlays;
3. synthesis (evaluation subjects): acquired vs each method's synthesis per direction and
   the temperature sweep (the figure code of :mod:`iusynth.reporting.figures`), with the subject's
   PSNR, SSIM and LPIPS;
4. downstream: nnU-Net segmentation of the real iUS against its label (Dice, ASSD), the
   registration experiment's TRE per displacement bin, or (MR-only subjects) the virtual
   sweep and the synthetic iUS on its planes;
5. warnings: what the subject's jobs logged, and the checks this page makes.

The workflow passes every file a page reads (see ``workflow/rules/reports.smk``) as one
JSON mapping; a page reads nothing else.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iusynth.core import layout
from iusynth.core.directions import Direction
from iusynth.core.fileio import load_nifti, write_json
from iusynth.reporting import report_figures
from iusynth.reporting.provenance import read_stamp
from iusynth.reporting.render import (
    InlineImage,
    inline_figure,
    inline_plot,
    inline_png_file,
    relative_link,
    render_template,
    write_text,
)
from iusynth.reporting.run_warnings import RunWarning, collect_warnings
from iusynth.reporting.settings import PageSettings

SECTION_TITLES = {
    "inputs": "Inputs",
    "registration": "Registration",
    "synthesis": "Synthesis",
    "downstream": "Downstream experiments",
    "warnings": "Warnings",
}


# --- what the workflow hands a page ---------------------------------------------------------


@dataclass(frozen=True)
class SubjectFiles:
    """Every file a subject page reads, by role (paths as the workflow names them)."""

    subject_dir: Path
    manifest: Path
    input_qc: Path
    provenance: Path
    logs: dict[str, list[Path]]
    splits: Path | None = None
    registration: dict[str, Path] = field(default_factory=dict)
    synthesis_slices: Path | None = None
    synthesis: dict[str, Path] = field(default_factory=dict)
    synthesis_metrics: dict[str, Path] = field(default_factory=dict)
    registration_experiment: Path | None = None
    segmentation: dict[str, dict[str, Path]] = field(default_factory=dict)
    sweep: Path | None = None
    synthetic_ius: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> SubjectFiles:
        """From the JSON the workflow passes (``--files``)."""
        data = json.loads(text)

        def path(value: str | None) -> Path | None:
            return Path(value) if value else None

        def paths(mapping: dict[str, str] | None) -> dict[str, Path]:
            return {key: Path(value) for key, value in (mapping or {}).items()}

        return cls(
            subject_dir=Path(data["subject_dir"]),
            manifest=Path(data["manifest"]),
            input_qc=Path(data["input_qc"]),
            provenance=Path(data["provenance"]),
            logs={rule: [Path(p) for p in files] for rule, files in data["logs"].items()},
            splits=path(data.get("splits")),
            registration=paths(data.get("registration")),
            synthesis_slices=path(data.get("synthesis_slices")),
            synthesis=paths(data.get("synthesis")),
            synthesis_metrics=paths(data.get("synthesis_metrics")),
            registration_experiment=path(data.get("registration_experiment")),
            segmentation={
                method: paths(entry) for method, entry in (data.get("segmentation") or {}).items()
            },
            sweep=path(data.get("sweep")),
            synthetic_ius=paths(data.get("synthetic_ius")),
        )


@dataclass
class Check:
    """A finding of the page's own checks, shown with the run's warnings."""

    section: str
    message: str


# --- small helpers ---------------------------------------------------------------------------


def rigid_summary(matrix: np.ndarray, centre: np.ndarray) -> dict[str, Any]:
    """Rotation angle (degrees) and axis of a 4x4 transform, and how far it moves ``centre``.

    The rotation is that of the closest rotation matrix (polar decomposition), so an
    affine transform reports its rotational part; ``scale`` gives its singular values.
    """
    matrix = np.asarray(matrix, float)
    left, singular, right = np.linalg.svd(matrix[:3, :3])
    rotation = left @ right
    angle = math.degrees(math.acos(float(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))
    axis = np.array(
        [
            rotation[2, 1] - rotation[1, 2],
            rotation[0, 2] - rotation[2, 0],
            rotation[1, 0] - rotation[0, 1],
        ]
    )
    norm = float(np.linalg.norm(axis))
    moved = matrix[:3, :3] @ centre + matrix[:3, 3] - centre
    return {
        "rotation_deg": angle,
        "axis": (axis / norm).round(2).tolist() if norm > 1e-9 else [0.0, 0.0, 0.0],
        "displacement_mm": moved.round(2).tolist(),
        "displacement_norm_mm": float(np.linalg.norm(moved)),
        "scale": singular.round(4).tolist(),
    }


def _read_json(path: Path, what: str, rule: str) -> dict[str, Any]:
    """A JSON file of the workflow, with an error naming the file and the rule to re-run."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist; re-run the rule {rule}") from None
    except ValueError as error:
        raise ValueError(
            f"{what} {path} is not valid JSON ({error}); re-run the rule {rule}"
        ) from None


def _read_csv(path: Path, columns: tuple[str, ...], rule: str) -> Any:
    """A CSV of the workflow that must hold ``columns``; errors name the file and the rule."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist; re-run the rule {rule}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(
            f"{path} is not a readable CSV ({error}); re-run the rule {rule}"
        ) from None
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; re-run the rule {rule}")
    return frame


def _grid_text(path: Path) -> str:
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


def _fov_centre(preprocessing_summary: dict[str, Any]) -> np.ndarray:
    """World coordinates of the centre of the subject's preprocessed (iUS) grid."""
    affine = np.array(preprocessing_summary["grid_affine"], float)
    centre = (np.array(preprocessing_summary["grid_shape"], float) - 1.0) / 2.0
    return affine[:3, :3] @ centre + affine[:3, 3]


# --- 1. inputs ------------------------------------------------------------------------------


def subject_role(
    settings: PageSettings, subject: str, splits: dict[str, Any] | None
) -> tuple[str, str]:
    """What the subject is for in this run's experiments: a short tag and a sentence."""
    if settings.cohort == settings.trainval_cohort and splits is not None:
        fold = splits["folds"][settings.fold]
        if subject in fold["val"]:
            return (
                f"held out (fold {settings.fold})",
                f"held-out subject of fold {settings.fold}: not trained on; its synthesis, "
                "segmentation and registration are evaluated",
            )
        if subject in fold["train"]:
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


def inputs_section(
    files: SubjectFiles, settings: PageSettings, subject: str, checks: list[Check]
) -> dict[str, Any]:
    """Modalities, labels and landmarks of the subject, with the input QC figure."""
    from iusynth.cohorts.demo.plan import COHORT_ROLES
    from iusynth.core.tags import read_tag_file

    entries = {entry.subject: entry for entry in layout.read_manifest(files.manifest)}
    if subject not in entries:
        raise ValueError(
            f"{files.manifest} does not list {subject}; re-run the rule write_cohort_manifest"
        )
    entry = entries[subject]
    role = COHORT_ROLES[settings.cohort]
    modalities = []
    for modality in layout.MODALITIES:
        path = layout.subject_file(files.subject_dir, subject, modality)
        if entry.has(modality):
            status, detail = "present", _grid_text(path)
        elif modality in role.modalities:
            status, detail = "missing", "expected in this cohort, absent for this subject"
            checks.append(Check("inputs", f"{modality} is missing: its syntheses are not scored"))
        else:
            status, detail = (
                "not in this dataset",
                f"the {settings.cohort} cohort has no {modality}",
            )
        modalities.append({"name": modality, "status": status, "detail": detail})
    labels = []
    for kind, description in (
        ("tumor-MR", "tumour labels in the MR world"),
        ("tumor-US", "tumour mask in the iUS grid"),
    ):
        if not entry.has(kind):
            labels.append({"name": kind, "detail": "none"})
            continue
        image = load_nifti(layout.subject_file(files.subject_dir, subject, kind))
        data = np.asarray(image.dataobj)
        values = [int(v) for v in np.unique(data) if v != 0]
        voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000.0
        volume_ml = float((data > 0).sum()) * voxel_ml
        kind_text = "BraTS labels " + ", ".join(map(str, values)) if len(values) > 1 else "binary"
        labels.append({"name": kind, "detail": f"{description}: {kind_text}, {volume_ml:.1f} mL"})
    landmarks = 0
    if entry.has("landmarks"):
        landmarks = len(
            read_tag_file(layout.subject_file(files.subject_dir, subject, "landmarks")).first
        )
    facts = _subject_facts(files.subject_dir, subject)
    splits = _read_json(files.splits, "splits", "make_splits") if files.splits else None
    caption = (
        "Every modality in three orthogonal views through the tumour, with the tumour "
        "contours (red: tumour core or necrosis, or the whole tumour for a binary label; "
        "cyan: enhancing; yellow: oedema)."
    )
    if entry.has("US"):
        caption += " The iUS row is in the iUS's own grid, with the iUS tumour mask."
    figure = inline_png_file(files.input_qc, caption, f"{subject}: every modality in three views")
    role_tag, role_text = subject_role(settings, subject, splits)
    return {
        "role": role_text,
        "role_tag": role_tag,
        "dataset": role.dataset,
        "modalities": modalities,
        "labels": labels,
        "landmarks": landmarks,
        "facts": facts,
        "figures": [figure],
        "missing": [m["name"] for m in modalities if m["status"] == "missing"],
        "present": [m["name"] for m in modalities if m["status"] == "present"],
    }


def _subject_facts(subject_dir: Path, subject: str) -> list[dict[str, str]]:
    """What the demo's truth file or a real subject's source file says, as label/value rows."""
    facts = []
    truth_path = layout.subject_file(subject_dir, subject, "truth")
    if truth_path.is_file():
        truth = _read_json(truth_path, "truth file", "generate_demo_subject")
        tumour = truth.get("tumour", {})
        facts.append({"label": "data", "value": "simulated (demo cohort generator)"})
        facts.append({"label": "grade", "value": str(truth.get("grade", "–"))})
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
    source_path = layout.subject_file(subject_dir, subject, "source")
    if source_path.is_file():
        source = _read_json(source_path, "source file", "the dataset's convert rule")
        facts.append({"label": "data", "value": "converted from the downloaded dataset"})
        for key, value in source.items():
            if isinstance(value, str | int | float | bool):
                facts.append({"label": key.replace("_", " "), "value": str(value)})
        for note in source.get("notes", []):
            facts.append({"label": "note", "value": str(note)})
    return facts


# --- 2. registration ------------------------------------------------------------------------


def registration_section(
    files: SubjectFiles, settings: PageSettings, subject: str, checks: list[Check]
) -> dict[str, Any]:
    """The subject's iUS -> MR registration and MR -> MR alignment, with their QC."""
    from iusynth.core.geometry import apply_transform
    from iusynth.core.tags import read_tag_file
    from iusynth.preprocessing.pipeline import read_alignment_record
    from iusynth.preprocessing.qc import registration_volumes

    paths = files.registration
    record = _read_json(paths["record"], "registration record", "register_us_to_mr")
    reference, alignment = read_alignment_record(paths["alignment"], subject)
    summary = _read_json(
        layout.subject_file(paths["preprocessed"], subject, "preprocessing"),
        "preprocessing summary",
        "resample_and_normalise",
    )
    centre = _fov_centre(summary)
    us_to_mr = np.array(record["us_to_mr"], float)
    transforms = [{"name": f"iUS → {reference} (registered)", **rigid_summary(us_to_mr, centre)}]
    truth_path = layout.subject_file(files.subject_dir, subject, "truth")
    if truth_path.is_file():
        truth = _read_json(truth_path, "truth file", "generate_demo_subject")
        if "us_to_mr_world" in truth:
            true_matrix = np.array(truth["us_to_mr_world"], float)
            transforms.append(
                {"name": "iUS → MR, simulated truth", **rigid_summary(true_matrix, centre)}
            )
            residual = np.linalg.inv(true_matrix) @ us_to_mr
            transforms.append(
                {"name": "registered vs truth (residual)", **rigid_summary(residual, centre)}
            )
    for sequence, matrix in alignment.items():
        transforms.append(
            {"name": f"{reference} → {sequence} (MR alignment)", **rigid_summary(matrix, centre)}
        )
    landmarks: dict[str, Any] | None = None
    figures: list[InlineImage] = []
    if "after_median_mm" in record:
        pairs = read_tag_file(layout.subject_file(files.subject_dir, subject, "landmarks"))
        sequence = record.get("landmark_sequence", reference)
        to_reference = np.linalg.inv(alignment.get(sequence, np.eye(4)))
        mr_points = apply_transform(to_reference, pairs.first)
        before = np.linalg.norm(pairs.second - mr_points, axis=1)
        after = np.linalg.norm(apply_transform(us_to_mr, pairs.second) - mr_points, axis=1)
        landmarks = {
            "count": int(record["landmarks"]),
            "sequence": sequence,
            "before_median_mm": record["before_median_mm"],
            "before_mean_mm": record["before_mean_mm"],
            "before_max_mm": float(before.max()),
            "after_median_mm": record["after_median_mm"],
            "after_mean_mm": record["after_mean_mm"],
            "after_max_mm": record["after_max_mm"],
        }
        if record["after_median_mm"] > settings.reports.weak_registration_mm:
            checks.append(
                Check(
                    "registration",
                    f"weak registration: median landmark error {record['after_median_mm']:.2f} mm "
                    f"after registration, above reports.weak_registration_mm "
                    f"({settings.reports.weak_registration_mm:g} mm)",
                )
            )
        if record["after_median_mm"] >= record["before_median_mm"]:
            checks.append(
                Check(
                    "registration",
                    "registration did not reduce the median landmark error "
                    f"({record['before_median_mm']:.2f} -> {record['after_median_mm']:.2f} mm)",
                )
            )
        labels = [label or f"#{i + 1}" for i, label in enumerate(pairs.labels)]
        figures.append(
            inline_figure(
                report_figures.landmark_error_figure(before, after, labels),
                f"Distance between each landmark's iUS and {sequence} points, with the "
                "headers only and after registration.",
                f"{subject}: landmark errors before and after registration",
                settings.reports.figure_dpi,
            )
        )
    else:
        checks.append(
            Check("registration", "no landmarks: the registration's accuracy is not measured")
        )
    figures.append(
        inline_png_file(
            paths["qc"],
            f"iUS / {reference} checkerboards through the centre of the iUS field of view, "
            "with the headers only (top) and after registration (bottom).",
            f"{subject}: checkerboards before and after registration",
        )
    )
    volumes = registration_volumes(files.subject_dir, subject, paths["preprocessed"])
    figures.append(
        inline_figure(
            report_figures.edge_overlay_figure(
                volumes["us"], volumes["before"], volumes["after"], volumes["fov"], reference
            ),
            f"The iUS with the strongest edges of the {reference} drawn on it (orange): "
            "with the headers only (top) and after registration (bottom).",
            f"{subject}: MR edges on the iUS before and after registration",
            settings.reports.figure_dpi,
        )
    )
    return {
        "reference": reference,
        "transform": record.get("transform", "rigid"),
        "seconds": record.get("seconds"),
        "centre_mm": centre.round(1).tolist(),
        "transforms": transforms,
        "landmarks": landmarks,
        "figures": figures,
    }


# --- 3. synthesis ---------------------------------------------------------------------------


def subject_synthesis_metrics(files: SubjectFiles, settings: PageSettings) -> Any:
    """The subject's PSNR / SSIM / LPIPS / L1 per method, direction and temperature."""
    from iusynth.evaluation.evaluate import read_slice_metrics
    from iusynth.evaluation.metrics import subject_means

    frame = subject_means(read_slice_metrics(list(files.synthesis_metrics.values())))
    rows = []
    for direction in settings.directions:
        chosen = frame[
            (frame["inputs"] == "+".join(direction.inputs)) & (frame["target"] == direction.target)
        ]
        for method in files.synthesis_metrics:
            of_method = chosen[chosen["method"] == method]
            at_table = of_method[
                of_method["temperature"].isna()
                | np.isclose(of_method["temperature"].astype(float), settings.table_temperature)
            ]
            for _, row in at_table.iterrows():
                rows.append(
                    {
                        "method": method,
                        "label": settings.label(method),
                        "direction": direction.label,
                        "direction_name": direction.name,
                        "temperature": None
                        if math.isnan(row["temperature"])
                        else row["temperature"],
                        "psnr": row["psnr"],
                        "ssim": row["ssim"],
                        "lpips": row["lpips"],
                        "l1": row["l1"],
                    }
                )
    return rows


def _synthesises(folder: Path, direction: Direction) -> bool:
    """Whether a method's synthesis folder of a subject holds a direction."""
    from iusynth.synthesis.synthesizers import INDEX_NAME

    index = _read_json(Path(folder) / INDEX_NAME, "synthesis index", "synthesise")
    return any(
        tuple(record["inputs"]) == direction.inputs and record["target"] == direction.target
        for record in index["records"]
    )


def synthesis_section(
    files: SubjectFiles, settings: PageSettings, subject: str, checks: list[Check]
) -> dict[str, Any]:
    """Acquired vs synthesised slices per direction, the temperature sweep and the metrics."""
    from iusynth.preprocessing.slices import load_slices
    from iusynth.reporting.figures import plot_examples, plot_temperature_sweep

    stack = load_slices(files.synthesis_slices)
    present = dict(zip(stack.meta["modalities"], stack.meta["present"], strict=True))
    method_dirs = {m: files.synthesis[m] for m in settings.figure_methods}
    directions = []
    for direction in settings.directions:
        lacking = [m for m in (*direction.inputs, direction.target) if not present[m]]
        entry: dict[str, Any] = {"label": direction.label, "figures": [], "note": None}
        if lacking:
            entry["note"] = f"not synthesised for this subject: it has no {', '.join(lacking)}"
            directions.append(entry)
            continue
        synthesised = [m for m, folder in method_dirs.items() if _synthesises(folder, direction)]
        if not synthesised:
            entry["note"] = "no method synthesised this direction for this subject"
            directions.append(entry)
            continue
        entry["figures"].append(
            inline_plot(
                lambda path, d=direction: plot_examples(
                    method_dirs,
                    files.synthesis_slices,
                    d,
                    settings.table_temperature,
                    path,
                    count=settings.reports.figure_slices,
                ),
                f"{direction.label}: the input(s), the acquired target and each method's "
                f"synthesis (temperature {settings.table_temperature:g} for the VAEs) on "
                f"{settings.reports.figure_slices} slices.",
                f"{subject}: {direction.label} by each method",
            )
        )
        if settings.sweep_method not in synthesised:
            entry["note"] = (
                f"{settings.label(settings.sweep_method)} does not synthesise this direction: "
                "no temperature sweep"
            )
            directions.append(entry)
            continue
        entry["figures"].append(
            inline_plot(
                lambda path, d=direction: plot_temperature_sweep(
                    files.synthesis[settings.sweep_method], files.synthesis_slices, d, path
                ),
                f"{direction.label} by {settings.label(settings.sweep_method)} at each "
                "temperature: mean (top) and standard deviation (bottom) over the samples.",
                f"{subject}: temperature sweep of {settings.sweep_method}",
            )
        )
        directions.append(entry)
    metrics = subject_synthesis_metrics(files, settings)
    if not metrics:
        checks.append(Check("synthesis", "no synthesis metric for the configured directions"))
    return {
        "directions": directions,
        "metrics": metrics,
        "table_temperature": settings.table_temperature,
    }


# --- 4. downstream --------------------------------------------------------------------------


def segmentation_part(files: SubjectFiles, settings: PageSettings, subject: str) -> dict[str, Any]:
    """Each method's nnU-Net prediction on the real iUS against its label, with Dice / ASSD."""
    from iusynth.preprocessing.slices import load_slices

    rows = []
    predictions: dict[str, np.ndarray] = {}
    stack = load_slices(files.synthesis_slices)
    grid_slices = np.asarray(stack.meta["slice_indices"])
    for method, paths in files.segmentation.items():
        frame = _read_csv(paths["metrics"], ("dice", "assd_mm"), "segment_real_ius")
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
    frame = _read_csv(files.registration_experiment, columns, "registration_experiment")
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
        for channel, (name, present) in enumerate(
            zip(sweep.meta["modalities"], sweep.meta["present"], strict=True)
        )
        if present
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


# --- the page ---------------------------------------------------------------------------------


@dataclass
class SubjectPage:
    """Everything a subject page shows, and the key figures the index lists."""

    context: dict[str, Any]
    summary: dict[str, Any]


def build_page(
    files: SubjectFiles, settings: PageSettings, subject: str, output: Path
) -> SubjectPage:
    """Read the subject's files and build the page (to be written at ``output``)."""
    layout.check_subject_id(subject)
    checks: list[Check] = []
    stamp = read_stamp(files.provenance)
    sections: dict[str, Any] = {"inputs": inputs_section(files, settings, subject, checks)}
    if files.registration:
        sections["registration"] = registration_section(files, settings, subject, checks)
    if files.synthesis_metrics:
        sections["synthesis"] = synthesis_section(files, settings, subject, checks)
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
    if downstream:
        sections["downstream"] = downstream
    run_warnings = collect_warnings(files.logs)
    sections["warnings"] = {
        "run": run_warnings,
        "checks": checks,
        "logs_read": sum(len(paths) for paths in files.logs.values()),
    }
    context = {
        "subject": subject,
        "cohort": settings.cohort,
        "source": settings.source,
        "sections": sections,
        "titles": {
            key: f"{number}. {SECTION_TITLES[key]}"
            for number, key in enumerate((k for k in SECTION_TITLES if k in sections), 1)
        },
        "absent": absent_sections(sections, settings, subject),
        "provenance": stamp,
        "provenance_link": relative_link(files.provenance, Path(output).parent),
    }
    return SubjectPage(context, _summary(subject, settings, sections, run_warnings, checks))


def absent_sections(
    sections: dict[str, Any], settings: PageSettings, subject: str
) -> list[dict[str, str]]:
    """The stages this subject does not go through, each with the reason."""
    inputs = sections["inputs"]
    has_us = "US" in inputs["present"]
    paired = settings.cohort in (settings.trainval_cohort, settings.test_cohort)
    absent = []
    if "registration" not in sections:
        reason = (
            "no iUS to register"
            if not has_us
            else f"the {settings.cohort} cohort is neither the train/validation nor the test cohort"
        )
        absent.append({"title": SECTION_TITLES["registration"], "reason": reason})
    if "synthesis" not in sections:
        reason = (
            "no iUS"
            if not has_us
            else f"not evaluated: {inputs['role']}"
            if paired
            else "not an evaluation subject"
        )
        absent.append({"title": SECTION_TITLES["synthesis"], "reason": reason})
    if "downstream" not in sections:
        absent.append(
            {
                "title": SECTION_TITLES["downstream"],
                "reason": "takes part in neither the segmentation nor the registration experiment",
            }
        )
    return absent


def _summary(
    subject: str,
    settings: PageSettings,
    sections: dict[str, Any],
    run_warnings: list[RunWarning],
    checks: list[Check],
) -> dict[str, Any]:
    """The key figures of a subject, for the index (JSON-ready)."""
    inputs = sections["inputs"]
    summary: dict[str, Any] = {
        "subject": subject,
        "cohort": settings.cohort,
        "page": f"{settings.cohort}/{subject}.html",
        "role": inputs["role_tag"],
        "modalities": inputs["present"],
        "missing": inputs["missing"],
        "landmark_before_mm": None,
        "landmark_after_mm": None,
        "registration_rotation_deg": None,
        "synthesis": None,
        "dice": {},
        "tre_final_mm": {},
        "warnings": sum(w.count for w in run_warnings),
        "checks": len(checks),
    }
    registration = sections.get("registration")
    if registration:
        summary["registration_rotation_deg"] = registration["transforms"][0]["rotation_deg"]
        if registration["landmarks"]:
            summary["landmark_before_mm"] = registration["landmarks"]["before_median_mm"]
            summary["landmark_after_mm"] = registration["landmarks"]["after_median_mm"]
    synthesis = sections.get("synthesis")
    if synthesis and settings.directions:
        first = settings.directions[0]
        for row in synthesis["metrics"]:
            if row["method"] == settings.sweep_method and row["direction_name"] == first.name:
                summary["synthesis"] = {
                    "method": settings.sweep_method,
                    "direction": first.label,
                    **{metric: _finite(row[metric]) for metric in ("psnr", "ssim", "lpips")},
                }
    downstream = sections.get("downstream", {})
    for row in downstream.get("segmentation", {}).get("rows", []):
        summary["dice"][row["method"]] = _finite(row["dice"])
    for row in downstream.get("registration_experiment", {}).get("rows", []):
        summary["tre_final_mm"].setdefault(row["method"], []).append(row["final_tre_mm"])
    summary["tre_final_mm"] = {
        method: float(np.mean(values)) for method, values in summary["tre_final_mm"].items()
    }
    return summary


def _finite(value: Any) -> float | None:
    """A float, or None for a missing / NaN value (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def write_subject_page(
    files: SubjectFiles, settings: PageSettings, subject: str, output: Path, summary_path: Path
) -> dict[str, Any]:
    """Build and write a subject's page and its summary JSON; return the summary."""
    page = build_page(files, settings, subject, output)
    text = render_template("subject.html.j2", **page.context)
    size_mb = len(text.encode("utf-8")) / 1e6
    if size_mb > settings.reports.max_page_mb:
        raise ValueError(
            f"the page of {subject} would be {size_mb:.1f} MB, above reports.max_page_mb "
            f"({settings.reports.max_page_mb:g}): lower reports.figure_dpi or reports.figure_slices"
        )
    page.summary["page_mb"] = round(size_mb, 3)
    write_text(output, text)
    write_json(summary_path, page.summary)
    return page.summary
