"""Section 2 of a subject page (paired subjects): how its iUS was registered to its MR.

The iUS -> reference MR transform and each MR -> MR alignment as a rotation (degrees,
axis) and the displacement of the iUS field of view's centre; on the demo also the
simulated truth and the residual; landmark errors before (headers only) and after, per
landmark; the checkerboards of ``plot_registration_qc`` and the MR's edges drawn on the
iUS, before and after.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from iusynth.core import layout
from iusynth.reporting import report_figures
from iusynth.reporting.render import InlineImage, inline_figure, inline_png_file
from iusynth.reporting.run_warnings import Check
from iusynth.reporting.settings import PageSettings
from iusynth.reporting.subject_page.files import SubjectFiles, read_json


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


def fov_centre(preprocessing_summary: dict[str, Any]) -> np.ndarray:
    """World coordinates of the centre of the subject's preprocessed (iUS) grid."""
    affine = np.array(preprocessing_summary["grid_affine"], float)
    centre = (np.array(preprocessing_summary["grid_shape"], float) - 1.0) / 2.0
    return affine[:3, :3] @ centre + affine[:3, 3]


def transform_rows(
    files: SubjectFiles,
    subject: str,
    record: dict[str, Any],
    reference: str,
    alignment: dict[str, np.ndarray],
    centre: np.ndarray,
) -> list[dict[str, Any]]:
    """The registered iUS -> MR transform, the demo's truth and residual, each MR alignment."""
    us_to_mr = np.array(record["us_to_mr"], float)
    rows = [{"name": f"iUS → {reference} (registered)", **rigid_summary(us_to_mr, centre)}]
    truth_path = layout.subject_file(files.subject_dir, subject, "truth")
    if truth_path.is_file():
        truth = read_json(truth_path, "truth file", "generate_demo_subject")
        if "us_to_mr_world" in truth:
            true_matrix = np.array(truth["us_to_mr_world"], float)
            rows.append({"name": "iUS → MR, simulated truth", **rigid_summary(true_matrix, centre)})
            residual = np.linalg.inv(true_matrix) @ us_to_mr
            rows.append(
                {"name": "registered vs truth (residual)", **rigid_summary(residual, centre)}
            )
    for sequence, matrix in alignment.items():
        rows.append(
            {"name": f"{reference} → {sequence} (MR alignment)", **rigid_summary(matrix, centre)}
        )
    return rows


def landmark_checks(record: dict[str, Any], settings: PageSettings, checks: list[Check]) -> None:
    """Flag a weak registration, or one that did not reduce the median landmark error."""
    after, before = record["after_median_mm"], record["before_median_mm"]
    limit = settings.reports.weak_registration_mm
    if after > limit:
        checks.append(
            Check(
                "registration",
                f"weak registration: median landmark error {after:.2f} mm after registration, "
                f"above reports.weak_registration_mm ({limit:g} mm)",
            )
        )
    if after >= before:
        checks.append(
            Check(
                "registration",
                "registration did not reduce the median landmark error "
                f"({before:.2f} -> {after:.2f} mm)",
            )
        )


def landmark_part(
    files: SubjectFiles,
    settings: PageSettings,
    subject: str,
    record: dict[str, Any],
    reference: str,
    alignment: dict[str, np.ndarray],
) -> tuple[dict[str, Any], InlineImage]:
    """Landmark errors before (headers only) and after registration, and their figure."""
    from iusynth.core.geometry import apply_transform
    from iusynth.core.tags import read_tag_file

    pairs = read_tag_file(layout.subject_file(files.subject_dir, subject, "landmarks"))
    sequence = record.get("landmark_sequence", reference)
    to_reference = np.linalg.inv(alignment.get(sequence, np.eye(4)))
    mr_points = apply_transform(to_reference, pairs.first)
    before = np.linalg.norm(pairs.second - mr_points, axis=1)
    us_to_mr = np.array(record["us_to_mr"], float)
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
    labels = [label or f"#{i + 1}" for i, label in enumerate(pairs.labels)]
    figure = inline_figure(
        report_figures.landmark_error_figure(before, after, labels),
        f"Distance between each landmark's iUS and {sequence} points, with the "
        "headers only and after registration.",
        f"{subject}: landmark errors before and after registration",
        settings.reports.figure_dpi,
    )
    return landmarks, figure


def alignment_figures(
    files: SubjectFiles, settings: PageSettings, subject: str, reference: str
) -> list[InlineImage]:
    """The checkerboards of plot_registration_qc and the MR's edges on the iUS."""
    from iusynth.core.subject import SubjectRecord
    from iusynth.preprocessing.qc import registration_volumes

    paths = files.registration
    checkerboards = inline_png_file(
        paths["qc"],
        f"iUS / {reference} checkerboards through the centre of the iUS field of view, "
        "with the headers only (top) and after registration (bottom).",
        f"{subject}: checkerboards before and after registration",
    )
    record = SubjectRecord.read(files.subject_dir, subject)
    volumes = registration_volumes(record, paths["preprocessed"])
    edges = inline_figure(
        report_figures.edge_overlay_figure(
            volumes["us"], volumes["before"], volumes["after"], volumes["fov"], reference
        ),
        f"The iUS with the strongest edges of the {reference} drawn on it (orange): "
        "with the headers only (top) and after registration (bottom).",
        f"{subject}: MR edges on the iUS before and after registration",
        settings.reports.figure_dpi,
    )
    return [checkerboards, edges]


def registration_section(
    files: SubjectFiles, settings: PageSettings, subject: str, checks: list[Check]
) -> dict[str, Any]:
    """The subject's iUS -> MR registration and MR -> MR alignment, with their QC."""
    from iusynth.preprocessing.pipeline import read_alignment_record

    paths = files.registration
    record = read_json(paths["record"], "registration record", "register_us_to_mr")
    reference, alignment = read_alignment_record(paths["alignment"], subject)
    summary = read_json(
        layout.subject_file(paths["preprocessed"], subject, "preprocessing"),
        "preprocessing summary",
        "resample_and_normalise",
    )
    centre = fov_centre(summary)
    landmarks: dict[str, Any] | None = None
    figures: list[InlineImage] = []
    if "after_median_mm" in record:
        landmarks, figure = landmark_part(files, settings, subject, record, reference, alignment)
        landmark_checks(record, settings, checks)
        figures.append(figure)
    else:
        checks.append(
            Check("registration", "no landmarks: the registration's accuracy is not measured")
        )
    return {
        "reference": reference,
        "transform": record.get("transform", "rigid"),
        "seconds": record.get("seconds"),
        "centre_mm": centre.round(1).tolist(),
        "transforms": transform_rows(files, subject, record, reference, alignment, centre),
        "landmarks": landmarks,
        "figures": figures + alignment_figures(files, settings, subject, reference),
    }
