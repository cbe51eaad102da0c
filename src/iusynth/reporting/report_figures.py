"""Figures the subject pages need and the workflow does not already draw.

Each function returns a matplotlib figure (the page inlines it as PNG). Slices are shown
as the workflow's other figures show them: the QC views of :mod:`iusynth.preprocessing.qc` for
volumes, the rotated 2D slices of :mod:`iusynth.reporting.figures` for slice stacks.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy import ndimage

from iusynth.evaluation.metrics import to_display
from iusynth.preprocessing.qc import _VIEWS, _slices

TRUTH_COLOUR = "lime"
PREDICTION_COLOUR = "magenta"
EDGE_COLOUR = (1.0, 0.35, 0.0)


def edge_map(image: np.ndarray, inside: np.ndarray, quantile: float = 0.85) -> np.ndarray:
    """Thin strong edges of a 2D image, inside ``inside``.

    Sobel gradient magnitude kept where it is a maximum across the edge (non-maximum
    suppression along the gradient's direction, in 45-degree steps) and above its
    ``quantile`` inside ``inside``: one-pixel lines rather than bands.
    """
    image = np.asarray(image, np.float32)
    gradient_0, gradient_1 = ndimage.sobel(image, axis=0), ndimage.sobel(image, axis=1)
    magnitude = np.hypot(gradient_0, gradient_1)
    values = magnitude[inside > 0]
    if values.size == 0 or not np.any(values > 0):
        return np.zeros(image.shape, bool)
    angle = (np.round(np.arctan2(gradient_0, gradient_1) / (np.pi / 4)).astype(int)) % 4
    padded = np.pad(magnitude, 1)
    rows, cols = image.shape
    # neighbour offsets (axis 0, axis 1) along the gradient for 0, 45, 90 and 135 degrees
    offsets = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    is_maximum = np.zeros(image.shape, bool)
    for direction, (step_0, step_1) in offsets.items():
        ahead = padded[1 + step_0 : 1 + step_0 + rows, 1 + step_1 : 1 + step_1 + cols]
        behind = padded[1 - step_0 : 1 - step_0 + rows, 1 - step_1 : 1 - step_1 + cols]
        chosen = angle == direction
        is_maximum[chosen] = (magnitude >= ahead)[chosen] & (magnitude >= behind)[chosen]
    return is_maximum & (magnitude > np.quantile(values, quantile)) & (inside > 0)


def edge_overlay_figure(
    us: np.ndarray,
    mr_before: np.ndarray,
    mr_after: np.ndarray,
    fov: np.ndarray,
    reference: str,
) -> Figure:
    """The iUS with the reference MR's edges drawn on it, before and after registration.

    Rows: the MR placed by the headers only, then registered; columns: the QC views through
    the centre of the iUS field of view, each cropped to it. Edges that follow the iUS's
    own boundaries mean the two images agree.
    """
    centre = np.argwhere(fov).mean(axis=0) if fov.any() else (np.array(fov.shape) - 1) / 2.0
    figure, axes = plt.subplots(2, 3, figsize=(9, 6.2), squeeze=False)
    rows = (
        (f"{reference} edges, header only", mr_before),
        (f"{reference} edges, registered", mr_after),
    )
    for row, (name, mr) in enumerate(rows):
        views = zip(
            _slices(us, centre), _slices(mr, centre), _slices(fov, centre), _VIEWS, strict=True
        )
        for axis, (us_view, mr_view, fov_view, view) in zip(axes[row], views, strict=True):
            nonzero_rows, nonzero_cols = np.nonzero(fov_view)
            if nonzero_rows.size:
                crop = (
                    slice(nonzero_rows.min(), nonzero_rows.max() + 1),
                    slice(nonzero_cols.min(), nonzero_cols.max() + 1),
                )
                us_view, mr_view, fov_view = us_view[crop], mr_view[crop], fov_view[crop]
            edges = edge_map(mr_view, ndimage.binary_erosion(fov_view > 0, iterations=2))
            axis.imshow(us_view, cmap="gray", origin="lower", vmin=-1, vmax=1)
            overlay = np.zeros((*edges.shape, 4), np.float32)
            overlay[edges] = (*EDGE_COLOUR, 0.9)
            axis.imshow(overlay, origin="lower", interpolation="nearest")
            axis.set_title(f"{name}, {view}", fontsize=8)
            axis.axis("off")
    figure.suptitle("iUS with the reference MR's strongest edges (orange)", fontsize=9)
    figure.tight_layout()
    return figure


def landmark_error_figure(
    before_mm: np.ndarray, after_mm: np.ndarray, labels: Sequence[str]
) -> Figure:
    """Per-landmark distance between the iUS and MR points, headers only vs registered."""
    positions = np.arange(len(before_mm))
    figure, axis = plt.subplots(figsize=(max(5.5, 0.5 * len(before_mm) + 2.5), 3.2))
    axis.bar(positions - 0.2, before_mm, width=0.4, label="header only", color="tab:gray")
    axis.bar(positions + 0.2, after_mm, width=0.4, label="registered", color="tab:blue")
    axis.set_xticks(positions, list(labels), rotation=45 if len(labels) > 10 else 0, fontsize=8)
    axis.set_ylabel("landmark error (mm)")
    axis.legend(fontsize=8, frameon=False)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def _show_slice(axis: plt.Axes, image: np.ndarray, title: str | None, **style: object) -> None:
    """A 2D slice rotated as :mod:`iusynth.reporting.figures` shows slices, without ticks."""
    axis.imshow(np.rot90(image), cmap=style.pop("cmap", "gray"), **style)
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=8)


def _contour(axis: plt.Axes, mask: np.ndarray, colour: str, width: float = 1.0) -> None:
    """The outline of a 2D mask (rotated as :func:`_show_slice` shows slices)."""
    rotated = np.rot90(np.asarray(mask) > 0)
    if rotated.any():
        axis.contour(rotated, levels=[0.5], colors=colour, linewidths=width)


def _shade(axis: plt.Axes, mask: np.ndarray, colour: str, alpha: float = 0.4) -> None:
    """A 2D mask as a translucent colour (rotated as :func:`_show_slice` shows slices)."""
    rotated = np.rot90(np.asarray(mask) > 0)
    overlay = np.zeros((*rotated.shape, 4), np.float32)
    overlay[rotated] = (*matplotlib.colors.to_rgb(colour), alpha)
    axis.imshow(overlay, interpolation="nearest")


def largest_label_slices(labels: np.ndarray, count: int) -> list[int]:
    """Indices of up to ``count`` slices spread over those with the most label (N x H x W)."""
    areas = np.asarray(labels).reshape(len(labels), -1).astype(bool).sum(axis=1)
    if not areas.any():
        return []
    candidates = np.flatnonzero(areas >= 0.5 * areas.max())
    picks = np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int)
    return [int(candidates[i]) for i in dict.fromkeys(picks)]


def segmentation_figure(
    us_slices: np.ndarray,
    truth: np.ndarray,
    predictions: dict[str, np.ndarray],
    slice_numbers: Sequence[int],
) -> Figure:
    """Rows: slices; columns: each method's prediction (shaded magenta) and the truth (lime).

    ``us_slices`` are iUS slices in [-1, 1], ``truth`` and each prediction the masks of
    the same slices; ``slice_numbers`` label the rows (grid slice indices).
    """
    rows, columns = len(us_slices), len(predictions)
    figure, axes = plt.subplots(
        rows, columns, figsize=(2.4 * columns + 0.4, 2.4 * rows + 0.5), squeeze=False
    )
    for row in range(rows):
        image = to_display(np.asarray(us_slices[row], np.float32))
        for column, (method, masks) in enumerate(predictions.items()):
            axis = axes[row, column]
            _show_slice(axis, image, method if row == 0 else None, vmin=0, vmax=255)
            _shade(axis, masks[row], PREDICTION_COLOUR)
            _contour(axis, truth[row], TRUTH_COLOUR, width=1.6)
            if column == 0:
                axis.set_ylabel(f"slice {slice_numbers[row]}", fontsize=8)
    handles = [
        Line2D([], [], color=TRUTH_COLOUR, linewidth=1.6, label="iUS tumour label"),
        Patch(color=PREDICTION_COLOUR, alpha=0.4, label="nnU-Net prediction"),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure


def sweep_figure(
    mr_planes: dict[str, np.ndarray],
    synthetic: dict[str, np.ndarray],
    labels: np.ndarray,
    plane_numbers: Sequence[int],
) -> Figure:
    """Rows: sweep planes; columns: the MR sequences sampled on them and each method's iUS.

    MR planes are in [-1, 1], synthetic iUS in 0..255; the tumour label's outline (lime)
    is drawn on every panel.
    """
    columns = [*mr_planes, *synthetic]
    rows = len(labels)
    figure, axes = plt.subplots(
        rows, len(columns), figsize=(2.2 * len(columns) + 0.4, 2.2 * rows + 0.3), squeeze=False
    )
    for row in range(rows):
        for column, name in enumerate(columns):
            axis = axes[row, column]
            if name in mr_planes:
                image = to_display(np.asarray(mr_planes[name][row], np.float32))
                title = f"{name} (MR)"
            else:
                image = np.asarray(synthetic[name][row], np.float32)
                title = f"iUS by {name}"
            _show_slice(axis, image, title if row == 0 else None, vmin=0, vmax=255)
            _contour(axis, labels[row], TRUTH_COLOUR)
            if column == 0:
                axis.set_ylabel(f"plane {plane_numbers[row]}", fontsize=8)
    figure.tight_layout()
    return figure


def tre_by_bin_figure(rows: list[dict[str, object]], methods: Sequence[str]) -> Figure:
    """TRE of the displaced start and after each registration method, per bin, as bars.

    One panel per sequence, a group of bars per displacement bin (means over its runs);
    ``rows`` hold ``sequence``, ``bin``, ``method``, ``initial_tre_mm`` and ``final_tre_mm``.
    """
    sequences = list(dict.fromkeys(str(row["sequence"]) for row in rows))
    bins = list(dict.fromkeys(str(row["bin"]) for row in rows))
    figure, axes = plt.subplots(
        1, len(sequences), figsize=(1.2 + 2.6 * len(sequences), 3.2), squeeze=False, sharey=True
    )
    width = 0.8 / (len(methods) + 1)
    colours = ["tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red"]
    for axis, sequence in zip(axes[0], sequences, strict=True):
        chosen = [row for row in rows if row["sequence"] == sequence]
        series = {"before": {}, **{method: {} for method in methods}}
        for row in chosen:
            series["before"][row["bin"]] = float(row["initial_tre_mm"])
            series[str(row["method"])][row["bin"]] = float(row["final_tre_mm"])
        for index, (name, values) in enumerate(series.items()):
            heights = [values.get(b, np.nan) for b in bins]
            positions = np.arange(len(bins)) + (index - len(methods) / 2) * width
            label = "start (displaced)" if name == "before" else f"after, {name}"
            axis.bar(positions, heights, width=width, color=colours[index % 5], label=label)
        axis.set_xticks(np.arange(len(bins)), [f"{b} mm" for b in bins], fontsize=8)
        axis.set_title(sequence, fontsize=9)
        axis.set_xlabel("displacement bin", fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("TRE (mm)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    return figure
