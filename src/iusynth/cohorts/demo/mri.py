"""MR sequences from tissue maps: per-tissue intensities, a smooth bias field and Rician noise.

Intensities are relative signal levels chosen to give each sequence its clinical contrast:
T2 bright CSF and oedema; contrast-enhanced T1 bright enhancing rim and dark necrosis;
FLAIR dark CSF and bright oedema and non-enhancing tumour.
"""

from __future__ import annotations

import numpy as np

from iusynth.cohorts.demo.anatomy import smooth_random_field

MR_TISSUE_SIGNAL: dict[str, dict[str, float]] = {
    "T2": {
        "csf": 1.00, "gm": 0.55, "wm": 0.40, "skull": 0.05, "scalp": 0.45,
        "necrosis": 0.90, "solid": 0.72, "enhancing": 0.62, "oedema": 0.80, "calcification": 0.08,
    },
    "ceT1": {
        "csf": 0.12, "gm": 0.45, "wm": 0.62, "skull": 0.05, "scalp": 0.75,
        "necrosis": 0.18, "solid": 0.35, "enhancing": 0.95, "oedema": 0.40, "calcification": 0.20,
    },
    "FLAIR": {
        "csf": 0.08, "gm": 0.55, "wm": 0.45, "skull": 0.05, "scalp": 0.45,
        "necrosis": 0.45, "solid": 0.85, "enhancing": 0.72, "oedema": 0.90, "calcification": 0.10,
    },
}  # fmt: skip


def tissue_mixture(tissues: dict[str, np.ndarray], values: dict[str, float]) -> np.ndarray:
    """Partial-volume mixture: sum over tissues of membership times the tissue's value."""
    out = np.zeros(next(iter(tissues.values())).shape, np.float32)
    for name, membership in tissues.items():
        out += values[name] * membership
    return out


def clean_mr(tissues: dict[str, np.ndarray], sequence: str) -> np.ndarray:
    """One MR sequence before bias and noise (float32, white matter about 1000 / 2)."""
    return tissue_mixture(tissues, MR_TISSUE_SIGNAL[sequence]) * np.float32(1000.0)


def synthesize_mr(
    tissues: dict[str, np.ndarray],
    sequence: str,
    spacing_mm: float,
    rng: np.random.Generator,
    bias_strength: float,
    noise_fraction: float,
) -> np.ndarray:
    """Return one MR sequence as int16 (signal scaled so white matter is about 1000 / 2).

    ``bias_strength`` is the standard deviation of the log bias field (smooth over ~60 mm);
    ``noise_fraction`` the Rician noise level relative to a signal of 1.
    """
    if sequence not in MR_TISSUE_SIGNAL:
        raise ValueError(
            f"unknown MR sequence {sequence!r}; expected one of {list(MR_TISSUE_SIGNAL)}"
        )
    signal = tissue_mixture(tissues, MR_TISSUE_SIGNAL[sequence])
    shape = signal.shape
    bias = np.exp(bias_strength * smooth_random_field(shape, rng, 60.0 / spacing_mm)[0])
    signal *= bias * rng.uniform(0.85, 1.15)
    real = signal + noise_fraction * rng.standard_normal(shape, dtype=np.float32)
    imaginary = noise_fraction * rng.standard_normal(shape, dtype=np.float32)
    magnitude = np.sqrt(real * real + imaginary * imaginary)
    return np.clip(np.rint(magnitude * 1000.0), 0, np.iinfo(np.int16).max).astype(np.int16)
