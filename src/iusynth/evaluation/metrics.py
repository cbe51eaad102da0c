"""Synthesis metrics: PSNR, SSIM, L1 and LPIPS per 2D slice, and their aggregation.

As the authors' evaluation (``evaluation/evaluation_batch_path.py``) computes them: images
in [-1, 1] are mapped to 0..255 integers by truncation (their ``(255 * (x + 1) / 2).int()``),
each metric is computed per axial slice over the whole slice (outputs are already masked
by the model), only on slices whose target is not empty, with the data range of the
target slice (max - min). PSNR follows scikit-image's ``peak_signal_noise_ratio``. SSIM
follows ``structural_similarity`` (uniform window of 7, K1 = 0.01, K2 = 0.03, sample
covariance, half a window cropped at the borders); the authors call it with
``channel_axis=0`` on a 2-D slice, which makes every row a 1-D signal, a window of 7
pixels along the row and the mean over rows: that is ``ssim: authors`` (default);
``ssim: 2d`` is the 7 x 7 window of a grayscale image. Both are computed here for a whole
stack of slices at once, in float64. LPIPS (AlexNet) sees 2 x / 255 - 1. L1 is the mean
absolute difference in 0..255 units. Slice values are averaged per subject, subjects per
method, and a bootstrap over subjects gives 95 % confidence intervals.

Skill (demo subjects, which hold their noise-free images): for a deterministic synthesis
(temperature 0, or a GAN), the Pearson correlation ``skill_r`` and the PSNR
``skill_psnr`` of the output against the noise-free target inside the field of view, per
slice; ``constant_psnr`` is the PSNR of the best constant (the noise-free target's mean in
the field of view), the floor any skill must beat. Elsewhere they are NaN.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from iusynth.evaluation.perceptual import LPIPS, lpips_distance
from iusynth.evaluation.settings import SSIM_MODES

SKILL = ("skill_r", "skill_psnr", "constant_psnr")
METRICS = ("psnr", "ssim", "lpips", "l1", *SKILL)
SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03


def to_display(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] as 0..255 integers (uint8, truncated), the scale of every metric."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    scaled = (np.asarray(array, np.float32) + 1.0) * 127.5
    return np.clip(np.floor(scaled), 0, 255).astype(np.uint8)


def _as_slices(images: np.ndarray) -> torch.Tensor:
    """N x H x W float64 tensor."""
    tensor = torch.as_tensor(np.asarray(images), dtype=torch.float64)
    if tensor.ndim != 3:
        raise ValueError(
            f"expected a stack of 2D slices (N x H x W), got shape {tuple(tensor.shape)}"
        )
    return tensor


def data_ranges(targets: np.ndarray) -> np.ndarray:
    """Per slice, the target's max - min (the data range of PSNR and SSIM)."""
    flat = _as_slices(targets).flatten(1)
    return (flat.max(dim=1).values - flat.min(dim=1).values).numpy()


def psnr(targets: np.ndarray, outputs: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio per slice, in dB (inf where the slices are identical)."""
    t, o = _as_slices(targets), _as_slices(outputs)
    mse = ((t - o) ** 2).flatten(1).mean(dim=1).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(np.asarray(ranges, np.float64) ** 2 / mse)


def ssim(
    targets: np.ndarray, outputs: np.ndarray, ranges: np.ndarray, mode: str = "authors"
) -> np.ndarray:
    """Mean structural similarity per slice (``mode``: see the module docstring)."""
    if mode not in SSIM_MODES:
        raise ValueError(f"evaluation.ssim must be one of {SSIM_MODES}, not {mode!r}")
    t, o = _as_slices(targets)[:, None], _as_slices(outputs)[:, None]
    if min(t.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs slices of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels")
    ranges_t = torch.as_tensor(np.asarray(ranges), dtype=torch.float64).view(-1, 1, 1, 1)
    c1, c2 = (SSIM_K1 * ranges_t) ** 2, (SSIM_K2 * ranges_t) ** 2
    # A valid box filter is exactly the region scikit-image keeps after its crop.
    window = (1, SSIM_WINDOW) if mode == "authors" else (SSIM_WINDOW, SSIM_WINDOW)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, window, stride=1)

    pixels = window[0] * window[1]
    unbiased = pixels / (pixels - 1)
    mu_t, mu_o = mean(t), mean(o)
    var_t = unbiased * (mean(t * t) - mu_t * mu_t)
    var_o = unbiased * (mean(o * o) - mu_o * mu_o)
    cov = unbiased * (mean(t * o) - mu_t * mu_o)
    numerator = (2 * mu_t * mu_o + c1) * (2 * cov + c2)
    denominator = (mu_t**2 + mu_o**2 + c1) * (var_t + var_o + c2)
    return (numerator / denominator).flatten(1).mean(dim=1).numpy()


def l1(targets: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Mean absolute difference per slice (0..255 units)."""
    return (_as_slices(targets) - _as_slices(outputs)).abs().flatten(1).mean(dim=1).numpy()


def evaluable_slices(targets: np.ndarray) -> np.ndarray:
    """Slices whose target (0..255) is not empty (the authors' sum > 0) and not uniform.

    A uniform slice has no data range (their code would score it -inf dB); none occurs in
    practice, but it is left out rather than averaged in.
    """
    flat = np.asarray(targets).reshape(len(targets), -1)
    return (flat.max(axis=1) > 0) & (flat.max(axis=1) > flat.min(axis=1))


def slice_metrics(
    targets: np.ndarray,
    outputs: np.ndarray,
    lpips: LPIPS | None = None,
    ssim_mode: str = "authors",
) -> dict[str, np.ndarray]:
    """Every metric for each slice pair (0..255 uint8 stacks, N x H x W).

    LPIPS is NaN for every slice when no LPIPS model is given (weights absent).
    """
    if np.shape(targets) != np.shape(outputs):
        raise ValueError(f"target {np.shape(targets)} and output {np.shape(outputs)} differ")
    ranges = data_ranges(targets)
    values = {
        "psnr": psnr(targets, outputs, ranges),
        "ssim": ssim(targets, outputs, ranges, ssim_mode),
        "l1": l1(targets, outputs),
    }
    values |= {name: np.full(len(targets), np.nan) for name in SKILL}
    if lpips is None:
        values["lpips"] = np.full(len(targets), np.nan)
    else:
        first = torch.as_tensor(np.asarray(targets), dtype=torch.float32) / 127.5 - 1.0
        second = torch.as_tensor(np.asarray(outputs), dtype=torch.float32) / 127.5 - 1.0
        values["lpips"] = lpips_distance(lpips, first, second).numpy().astype(np.float64)
    return values


def skill(clean: np.ndarray, outputs: np.ndarray, fov: np.ndarray) -> dict[str, np.ndarray]:
    """Per slice, the output against the noise-free target inside the field of view.

    ``clean`` and ``outputs``: 0..255 stacks (N x H x W); ``fov``: booleans. The PSNRs use
    the data range of the noise-free slice inside the field of view; slices with fewer
    than two field-of-view pixels, or a uniform target there, are NaN.
    """
    names = SKILL
    values = {name: np.full(len(clean), np.nan) for name in names}
    for index, (target, output, inside) in enumerate(zip(clean, outputs, fov, strict=True)):
        t = np.asarray(target, np.float64)[inside]
        o = np.asarray(output, np.float64)[inside]
        if t.size < 2 or t.max() == t.min():
            continue
        span = (t.max() - t.min()) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            values["skill_r"][index] = np.corrcoef(t, o)[0, 1] if o.std() > 0 else 0.0
            values["skill_psnr"][index] = 10.0 * np.log10(span / np.mean((t - o) ** 2))
            values["constant_psnr"][index] = 10.0 * np.log10(span / np.var(t))
    return values


def bootstrap_interval(
    values: Iterable[float], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (NaN when nothing to resample)."""
    array = np.asarray([v for v in values if np.isfinite(v)], np.float64)
    if array.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, array.size, size=(resamples, array.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


GROUP = ["set", "method", "inputs", "target", "temperature"]


def subject_means(slices: pd.DataFrame) -> pd.DataFrame:
    """Per set, method, direction, temperature and subject: the mean over slices (and samples)."""
    return slices.groupby([*GROUP, "subject"], dropna=False)[list(METRICS)].mean().reset_index()


def summarise(per_subject: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per set, method, direction and temperature: the mean over subjects, bootstrap 95 % CI."""
    rows: list[dict[str, Any]] = []
    for key, group in per_subject.groupby(GROUP, dropna=False):
        row: dict[str, Any] = dict(zip(GROUP, key, strict=True))
        row["subjects"] = int(group["subject"].nunique())
        for metric in METRICS:
            values = group[metric].to_numpy(np.float64)
            finite = values[np.isfinite(values)]
            row[metric] = float(finite.mean()) if finite.size else float("nan")
            row[f"{metric}_low"], row[f"{metric}_high"] = bootstrap_interval(
                finite, resamples, seed
            )
        rows.append(row)
    return pd.DataFrame(rows)
