"""Synthesis figures: example slices per method, and the temperature sweep of one model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from iusynth.core.directions import Direction
from iusynth.core.fileio import atomic_path, load_nifti
from iusynth.core.modalities import LABELS
from iusynth.evaluation.metrics import to_display
from iusynth.preprocessing.slices import load_slices
from iusynth.synthesis.synthesizers import INDEX_NAME


def _records(synthesis_dir: Path) -> dict:
    return json.loads((Path(synthesis_dir) / INDEX_NAME).read_text())


def _find(index: dict, direction: Direction, temperature: float | None) -> dict | None:
    """The record of a direction at a temperature (any, for a deterministic method)."""
    for record in index["records"]:
        if tuple(record["inputs"]) != direction.inputs or record["target"] != direction.target:
            continue
        if record["temperature"] is None or temperature is None:
            return record
        if np.isclose(record["temperature"], temperature):
            return record
    return None


def _synthesised(synthesis_dir: Path, record: dict, grid_slices: list[int]) -> np.ndarray:
    """Samples x slices x H x W (0..255) at the given grid slices."""
    volume = np.asarray(load_nifti(Path(synthesis_dir) / record["file"], dimensions=4).dataobj)
    return np.moveaxis(volume[:, :, grid_slices], (2, 3), (1, 0))


def _show(axis: plt.Axes, image: np.ndarray, title: str | None, **style: object) -> None:
    axis.imshow(np.rot90(image), cmap=style.pop("cmap", "gray"), **style)
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=8)


def choose_slices(
    stack_dir: Path, grid_slices: list[int], direction: Direction, count: int
) -> list[int]:
    """``count`` grid slices spread over those with the most target foreground."""
    stack = load_slices(stack_dir)
    position = {k: i for i, k in enumerate(stack.meta["slice_indices"])}
    channel = stack.meta["modalities"].index(direction.target)
    area = np.array(
        [float((np.asarray(stack.images[position[k], channel]) > -1).mean()) for k in grid_slices]
    )
    candidates = [k for k, a in zip(grid_slices, area, strict=True) if a >= 0.5 * area.max()]
    picks = np.linspace(0, len(candidates) - 1, count + 2)[1:-1].round().astype(int)
    return [candidates[i] for i in picks]


def plot_examples(
    method_dirs: dict[str, Path],
    stack_dir: Path,
    direction: Direction,
    temperature: float,
    output: Path,
    count: int = 3,
) -> None:
    """Rows: slices of one subject; columns: inputs, target, each method's synthesis.

    Methods that do not synthesise this direction are left out.
    """
    stack = load_slices(stack_dir)
    names = stack.meta["modalities"]
    method_dirs = {
        name: folder
        for name, folder in method_dirs.items()
        if _find(_records(folder), direction, temperature) is not None
    }
    if not method_dirs:
        raise ValueError(f"no method synthesised {direction.label} for {stack.meta['subject']}")
    first = _records(next(iter(method_dirs.values())))
    grid_slices = choose_slices(stack_dir, first["slice_indices"], direction, count)
    position = {k: i for i, k in enumerate(stack.meta["slice_indices"])}
    columns = [*direction.inputs, direction.target, *method_dirs]
    figure, axes = plt.subplots(
        count, len(columns), figsize=(1.6 * len(columns), 1.7 * count), squeeze=False
    )
    for row, grid_slice in enumerate(grid_slices):
        for column, name in enumerate(columns):
            axis = axes[row, column]
            title = None
            if column < len(direction.inputs) + 1:
                image = to_display(
                    np.asarray(stack.images[position[grid_slice], names.index(name)], np.float32)
                )
                title = (
                    f"{LABELS[name]} (input)"
                    if column < len(direction.inputs)
                    else f"{LABELS[name]} (acquired)"
                )
            else:
                record = _find(_records(method_dirs[name]), direction, temperature)
                image = _synthesised(method_dirs[name], record, [grid_slice])[0, 0]
                title = name
            _show(axis, image, title if row == 0 else None, vmin=0, vmax=255)
    figure.suptitle(
        f"{stack.meta['subject']}: {direction.label} (stochastic methods at temperature "
        f"{temperature:g})",
        fontsize=9,
    )
    figure.tight_layout()
    with atomic_path(output) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)


def plot_temperature_sweep(
    synthesis_dir: Path, stack_dir: Path, direction: Direction, output: Path
) -> None:
    """Mean and standard deviation over samples of one slice, per temperature."""
    index = _records(synthesis_dir)
    records = sorted(
        (
            r
            for r in index["records"]
            if tuple(r["inputs"]) == direction.inputs and r["target"] == direction.target
        ),
        key=lambda r: r["temperature"] or 0.0,
    )
    if not records:
        raise ValueError(f"{synthesis_dir}: no synthesis of {direction.label} to plot")
    grid_slice = choose_slices(stack_dir, index["slice_indices"], direction, 1)[0]
    figure, axes = plt.subplots(2, len(records), figsize=(1.9 * len(records), 4.0), squeeze=False)
    for column, record in enumerate(records):
        samples = _synthesised(synthesis_dir, record, [grid_slice])[:, 0].astype(np.float32)
        tau = record["temperature"]
        _show(
            axes[0, column],
            samples.mean(axis=0),
            f"τ = {tau:g}, mean of {len(samples)}",
            vmin=0,
            vmax=255,
        )
        _show(axes[1, column], samples.std(axis=0), "std", cmap="magma", vmin=0, vmax=64)
    figure.suptitle(f"{index['subject']}: {direction.label}, slice {grid_slice}", fontsize=9)
    figure.tight_layout()
    with atomic_path(output) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)


def plot_segmentation_boxplot(per_case: Any, methods: dict[str, str], output: Path) -> None:
    """Dice per subject of each method (box and points), one panel per test set."""
    sets = sorted(per_case["set"].unique()) if len(per_case) else ["(none)"]
    figure, axes = plt.subplots(1, len(sets), figsize=(1.2 + 1.3 * len(methods) * len(sets), 3.6))
    axes = np.atleast_1d(axes)
    for axis, set_name in zip(axes, sets, strict=True):
        values = [
            per_case[(per_case["set"] == set_name) & (per_case["method"] == method)]["dice"]
            .astype(float)
            .to_numpy()
            * 100.0
            for method in methods
        ]
        positions = np.arange(1, len(methods) + 1)
        shown = [(p, v) for p, v in zip(positions, values, strict=True) if len(v)]
        if shown:
            axis.boxplot([v for _, v in shown], positions=[p for p, _ in shown], widths=0.6)
            for position, value in shown:
                jitter = np.linspace(-0.12, 0.12, len(value)) if len(value) > 1 else [0.0]
                axis.plot(position + np.asarray(jitter), value, "o", ms=3, alpha=0.7)
        axis.set_xticks(positions, list(methods.values()), rotation=30, ha="right", fontsize=8)
        axis.set_ylim(0, 100)
        axis.set_title(f"test set: {set_name}", fontsize=9)
        axis.set_ylabel("Dice (%)")
    figure.tight_layout()
    with atomic_path(output) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
