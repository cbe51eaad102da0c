"""Simulated gliomas: soft tissue-class maps and BraTS labels.

A tumour is an irregular ellipsoid (a random ellipsoid whose radius is modulated by smooth
noise). High-grade tumours have a necrotic core, an enhancing rim and a wide oedema that
spreads preferentially through white matter; low-grade tumours are solid, non-enhancing,
with diffuse borders and little oedema. Some contain calcifications, which matter for
the ultrasound (bright echoes casting acoustic shadows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

from iusynth.cohorts.demo.anatomy import smooth_random_field
from iusynth.core.geometry import rotation_matrix, unit
from iusynth.core.layout import BRATS_ENHANCING, BRATS_NECROSIS, BRATS_OEDEMA

TUMOUR_TISSUES: tuple[str, ...] = ("necrosis", "solid", "enhancing", "oedema", "calcification")


@dataclass(frozen=True)
class TumourSpec:
    """Where and how large a tumour is, and of which grade."""

    grade: str  # "HGG" or "LGG"
    centre_voxel: tuple[float, float, float]
    radius_mm: float
    axes: tuple[float, float, float]  # relative semi-axis lengths of the ellipsoid
    rotation: tuple[tuple[float, ...], ...]  # 3x3 orientation of the ellipsoid
    oedema_extent: float  # outer oedema boundary, in units of the tumour radius
    border_width: float  # sigmoid width of the tumour border, in units of the radius
    calcifications: tuple[tuple[float, float, float, float], ...]  # (x, y, z voxel, radius mm)


def choose_tumour(
    brain_depth_mm: np.ndarray,
    wm: np.ndarray,
    affine: np.ndarray,
    rng: np.random.Generator,
    grade: str,
) -> TumourSpec:
    """Draw a tumour: centre in supratentorial white matter, 10-35 mm under the brain surface."""
    if grade not in ("HGG", "LGG"):
        raise ValueError(f"grade must be 'HGG' or 'LGG', not {grade!r}")
    spacing = float(np.linalg.norm(affine[:3, 0]))
    radius = rng.uniform(8.0, 16.0) if grade == "HGG" else rng.uniform(10.0, 20.0)
    z_world = affine[2, 2] * np.arange(wm.shape[2]) + affine[2, 3]
    supratentorial = (z_world > -5.0)[None, None, :]
    candidates = np.argwhere(
        (brain_depth_mm > max(10.0, 0.6 * radius))
        & (brain_depth_mm < 35.0)
        & (wm > 0.5)
        & supratentorial
    )
    if len(candidates) == 0:
        raise ValueError("no white-matter voxel is deep enough to host a tumour on this grid")
    centre = candidates[rng.integers(len(candidates))].astype(float)
    calcifications: list[tuple[float, float, float, float]] = []
    if rng.random() < (0.5 if grade == "LGG" else 0.15):
        for _ in range(rng.integers(1, 4)):
            offset = unit(rng.standard_normal(3)) * rng.uniform(0.0, 0.6 * radius) / spacing
            calcifications.append((*(centre + offset), float(rng.uniform(1.0, 2.0))))
    axis = unit(rng.standard_normal(3))
    return TumourSpec(
        grade=grade,
        centre_voxel=tuple(float(c) for c in centre),
        radius_mm=float(radius),
        axes=tuple(float(a) for a in rng.uniform(0.75, 1.25, size=3)),
        rotation=tuple(tuple(row) for row in rotation_matrix(axis, rng.uniform(0, np.pi))),
        oedema_extent=float(rng.uniform(1.5, 2.2) if grade == "HGG" else rng.uniform(1.1, 1.3)),
        border_width=float(rng.uniform(0.03, 0.05) if grade == "HGG" else rng.uniform(0.08, 0.2)),
        calcifications=tuple(calcifications),
    )


def _below(rho: np.ndarray, edge: float, width: float) -> np.ndarray:
    """Soft indicator of rho < edge with a logistic border of the given width."""
    return special.expit((edge - rho) / width).astype(np.float32)


def tumour_maps(
    spec: TumourSpec,
    shape: tuple[int, int, int],
    spacing_mm: float,
    brain: np.ndarray,
    wm: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Return soft maps (0..1) of each tumour tissue, confined to the brain.

    The maps are computed in a box around the tumour and zero elsewhere; their sum is at
    most 1 everywhere.
    """
    extent = int(np.ceil(spec.radius_mm * (spec.oedema_extent + 0.6) * 1.3 / spacing_mm))
    centre = np.array(spec.centre_voxel)
    lo = np.maximum(np.floor(centre).astype(int) - extent, 0)
    hi = np.minimum(np.floor(centre).astype(int) + extent + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    box_shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))

    grids = np.meshgrid(
        *(np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi, strict=True)), indexing="ij"
    )
    offset_mm = np.stack(
        [(g - c) * spacing_mm for g, c in zip(grids, centre, strict=True)], axis=-1
    )
    local = offset_mm @ np.array(spec.rotation) / np.array(spec.axes)
    roughness = smooth_random_field(box_shape, rng, 0.5 * spec.radius_mm / spacing_mm)[0]
    rho = np.linalg.norm(local, axis=-1) / spec.radius_mm * (1.0 + 0.15 * roughness)

    inside_brain = brain[box].astype(np.float32)
    core = _below(rho, 1.0, spec.border_width) * inside_brain
    # Oedema spreads along white matter: its outer boundary is farther where WM is dense.
    oedema_edge = 1.0 + (spec.oedema_extent - 1.0) * (0.4 + 0.6 * wm[box])
    oedema = np.clip(_below(rho / oedema_edge, 1.0, 0.08) - core, 0.0, 1.0)
    oedema *= inside_brain
    maps = {name: np.zeros(box_shape, np.float32) for name in TUMOUR_TISSUES}
    if spec.grade == "HGG":
        necrosis = _below(rho, 0.55, 0.05) * core
        maps["necrosis"] = necrosis
        maps["enhancing"] = core - necrosis
    else:
        maps["solid"] = core
    maps["oedema"] = oedema

    for *position, radius in spec.calcifications:
        distance = np.linalg.norm((np.stack(grids, -1) - np.array(position)) * spacing_mm, axis=-1)
        calcification = _below(distance, radius, 0.3) * core
        for name in ("necrosis", "solid", "enhancing"):
            maps[name] *= 1.0 - calcification
        maps["calcification"] = np.maximum(maps["calcification"], calcification)

    full = {}
    for name, values in maps.items():
        volume = np.zeros(shape, np.float32)
        volume[box] = values
        full[name] = volume
    return full


def brats_labels(tumour: dict[str, np.ndarray]) -> np.ndarray:
    """Hard BraTS labels from soft tumour maps: 1 core (necrotic or solid), 2 oedema, 4 enhancing.

    Each voxel takes the class of largest membership, background included, so a voxel is
    labelled only where tumour tissue makes up the larger part of it.
    """
    core = tumour["necrosis"] + tumour["solid"] + tumour["calcification"]
    stack = np.stack([np.zeros_like(core), core, tumour["oedema"], tumour["enhancing"]])
    stack[0] = 1.0 - stack[1:].sum(axis=0)
    codes = np.array([0, BRATS_NECROSIS, BRATS_OEDEMA, BRATS_ENHANCING], dtype=np.uint8)
    return codes[np.argmax(stack, axis=0)]


def tumour_core_mask(labels: np.ndarray) -> np.ndarray:
    """Binary tumour (core) mask from BraTS labels: necrotic/solid core plus enhancing tumour."""
    return np.isin(labels, (BRATS_NECROSIS, BRATS_ENHANCING))


def brain_depth(brain_mask: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Distance (mm) from each brain voxel to the brain surface; 0 outside."""
    return ndimage.distance_transform_edt(brain_mask, sampling=spacing_mm).astype(np.float32)
