"""A subject page's key figures, for the index: role, modalities, registration, scores."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from iusynth.reporting.run_warnings import Check, RunWarning
from iusynth.reporting.settings import PageSettings


def page_summary(
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
                    **{metric: finite(row[metric]) for metric in ("psnr", "ssim", "lpips")},
                }
    downstream = sections.get("downstream", {})
    for row in downstream.get("segmentation", {}).get("rows", []):
        summary["dice"][row["method"]] = finite(row["dice"])
    for row in downstream.get("registration_experiment", {}).get("rows", []):
        summary["tre_final_mm"].setdefault(row["method"], []).append(row["final_tre_mm"])
    summary["tre_final_mm"] = {
        method: float(np.mean(values)) for method, values in summary["tre_final_mm"].items()
    }
    return summary


def finite(value: Any) -> float | None:
    """A float, or None for a missing / NaN value (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number
