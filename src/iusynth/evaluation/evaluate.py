"""Evaluation of synthesised volumes against the acquired ones, per slice, per subject.

Reads a subject's synthesis folder (see :mod:`iusynth.synthesis.synthesizers`) and its slice stack,
and writes one row per (input subset, target, temperature, slice): the metrics of
:mod:`iusynth.evaluation.metrics` averaged over the samples drawn at that temperature. Targets the
subject does not have are skipped; so are empty target slices. Deterministic syntheses of a
subject with noise-free images (the demo's) are also scored against them (skill).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from iusynth.core.fileio import atomic_path, load_nifti
from iusynth.evaluation.metrics import (
    METRICS,
    evaluable_slices,
    skill,
    slice_metrics,
    subject_means,
    summarise,
    to_display,
)
from iusynth.evaluation.perceptual import LPIPS
from iusynth.preprocessing.slices import load_slices
from iusynth.synthesis.synthesizers import INDEX_NAME

SLICE_COLUMNS = [
    "set",
    "method",
    "subject",
    "inputs",
    "target",
    "temperature",
    "slice",
    "samples",
    *METRICS,
]


def evaluate_subject(
    synthesis_dir: Path,
    stack_dir: Path,
    method: str,
    set_name: str,
    lpips: LPIPS | None = None,
    ssim_mode: str = "authors",
) -> pd.DataFrame:
    """Per-slice metrics of every synthesised volume of one subject."""
    synthesis_dir = Path(synthesis_dir)
    index_path = synthesis_dir / INDEX_NAME
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} is missing: re-run the synthesis rule")
    index = json.loads(index_path.read_text())
    stack = load_slices(stack_dir)
    meta = stack.meta
    position = {grid: i for i, grid in enumerate(meta["slice_indices"])}
    try:
        positions = np.array([position[k] for k in index["slice_indices"]])
    except KeyError as error:
        raise ValueError(
            f"{synthesis_dir} was synthesised from other slices than {stack_dir} "
            f"(slice {error}); re-run the synthesis rule"
        ) from None
    rows = []
    for record in index["records"]:
        target = record["target"]
        channel = meta["modalities"].index(target)
        if not meta["present"][channel]:
            continue
        targets = to_display(np.asarray(stack.images[positions, channel], np.float32))
        keep = evaluable_slices(targets)
        if not keep.any():
            continue
        volume = np.asarray(load_nifti(synthesis_dir / record["file"], dimensions=4).dataobj)
        outputs = np.moveaxis(volume[:, :, index["slice_indices"]], (2, 3), (1, 0))
        per_sample = [
            slice_metrics(targets[keep], sample[keep], lpips, ssim_mode) for sample in outputs
        ]
        averaged = {m: np.mean([values[m] for values in per_sample], axis=0) for m in METRICS}
        if not record["temperature"] and stack.clean is not None and meta["clean"][channel]:
            clean = to_display(np.asarray(stack.clean[positions, channel], np.float32))
            fov = np.asarray(stack.fov[positions], bool)
            averaged |= skill(clean[keep], outputs[0][keep], fov[keep])
        frame = pd.DataFrame(averaged)
        frame.insert(0, "samples", len(per_sample))
        frame.insert(0, "slice", np.asarray(index["slice_indices"])[keep])
        frame.insert(0, "temperature", record["temperature"])
        frame.insert(0, "target", target)
        frame.insert(0, "inputs", "+".join(record["inputs"]))
        frame.insert(0, "subject", index["subject"])
        frame.insert(0, "method", method)
        frame.insert(0, "set", set_name)
        rows.append(frame)
    if not rows:
        return pd.DataFrame(columns=SLICE_COLUMNS)
    return pd.concat(rows, ignore_index=True)[SLICE_COLUMNS]


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """A data frame as CSV, atomically (floats with 6 significant digits)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def read_metric_files(paths: list[Path], columns: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Concatenate per-subject metric files that must hold ``columns``; errors name the file."""
    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise ValueError(f"{path}: unreadable metric file ({error}); re-run its rule") from None
        missing = set(columns) - set(frame.columns)
        if missing:
            raise ValueError(f"{path}: columns {sorted(missing)} missing; re-run its rule")
        if len(frame):
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)


def read_slice_metrics(paths: list[Path]) -> pd.DataFrame:
    """Concatenate per-subject synthesis metric files, with an error naming a bad one."""
    return read_metric_files(paths, SLICE_COLUMNS)


def aggregate(
    paths: list[Path], resamples: int = 1000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-subject means and the per-method summary (bootstrap CIs) of the metric files."""
    slices = read_slice_metrics(paths)
    per_subject = subject_means(slices)
    return per_subject, summarise(per_subject, resamples, seed)
