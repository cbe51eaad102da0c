"""Subject anatomy for the demo cohort, built on the MNI ICBM152 2009a maps shipped by nilearn.

The template's grey- and white-matter probability maps and its skull-stripped T1 give the
brain; cerebrospinal fluid fills the rest of the brain mask, and a thin CSF rim, skull and
scalp are added around it. Each subject is a random smooth deformation of that anatomy.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
HEALTHY_TISSUES: tuple[str, ...] = ("csf", "gm", "wm", "skull", "scalp")
# Thickness (mm) of the layers added outside the brain mask.
_CSF_RIM_MM, _SKULL_MM, _SCALP_MM = 2.0, 5.0, 4.0


@dataclass
class Anatomy:
    """Partial-volume tissue maps on one grid (values in [0, 1], summing to 1 inside the head)."""

    tissues: dict[str, np.ndarray]
    affine: np.ndarray
    brain_mask: np.ndarray = field(repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape."""
        return self.brain_mask.shape

    @property
    def spacing(self) -> float:
        """Isotropic voxel size in mm."""
        return float(np.linalg.norm(self.affine[:3, 0]))


def mni_template_dir() -> Path:
    """Return nilearn's data folder holding the MNI152 2009a maps, without importing nilearn."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "nilearn is not installed; it ships the MNI152 template the demo cohort is built on "
            "(pip install nilearn)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"nilearn's template files {missing} are missing from {folder}")
    return folder


def _resample_isotropic(volume: np.ndarray, factor: float, order: int) -> np.ndarray:
    """Resample a 1 mm volume to voxels of ``factor`` mm (voxel 0 stays at voxel 0)."""
    if factor == 1.0:
        return volume
    shape = tuple(int(np.floor((n - 1) / factor)) + 1 for n in volume.shape)
    return ndimage.affine_transform(
        volume, np.full(3, factor), output_shape=shape, order=order, mode="nearest"
    )


def load_mni_anatomy(spacing_mm: float = 1.0) -> Anatomy:
    """Load the MNI152 2009a maps, add CSF, skull and scalp, and resample to ``spacing_mm``."""
    import nibabel as nib

    folder = mni_template_dir()
    images = {key: nib.load(folder / name) for key, name in TEMPLATE_FILES.items()}
    affine_1mm = images["t1"].affine
    gm = np.asarray(images["gm"].dataobj, dtype=np.float32) / 255.0
    wm = np.asarray(images["wm"].dataobj, dtype=np.float32) / 255.0
    brain = ndimage.binary_fill_holes(np.asarray(images["t1"].dataobj) > 0)
    margin = int(np.ceil(_CSF_RIM_MM + _SKULL_MM + _SCALP_MM)) + 2
    brain = np.pad(brain, margin)
    gm, wm = np.pad(gm, margin), np.pad(wm, margin)
    affine_1mm = affine_1mm.copy()
    affine_1mm[:3, 3] -= affine_1mm[:3, :3] @ np.full(3, margin)

    outside = ndimage.distance_transform_edt(~brain)
    tissues = {
        "gm": np.where(brain, gm, 0.0),
        "wm": np.where(brain, wm, 0.0),
        "skull": ((outside > _CSF_RIM_MM) & (outside <= _CSF_RIM_MM + _SKULL_MM)).astype(
            np.float32
        ),
        "scalp": (
            (outside > _CSF_RIM_MM + _SKULL_MM) & (outside <= _CSF_RIM_MM + _SKULL_MM + _SCALP_MM)
        ).astype(np.float32),
    }
    inside_rim = (outside <= _CSF_RIM_MM).astype(np.float32)
    tissues["csf"] = np.clip(inside_rim - tissues["gm"] - tissues["wm"], 0.0, 1.0)

    head = ndimage.binary_dilation(tissues["scalp"] > 0, iterations=2) | brain
    lo, hi = np.argwhere(head).min(axis=0), np.argwhere(head).max(axis=0) + 1
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    affine_1mm[:3, 3] += affine_1mm[:3, :3] @ lo

    affine = affine_1mm.copy()
    affine[:3, :3] *= spacing_mm
    resampled = {
        name: _resample_isotropic(
            np.ascontiguousarray(tissues[name][crop], np.float32), spacing_mm, 1
        )
        for name in HEALTHY_TISSUES
    }
    brain_mask = _resample_isotropic(brain[crop].astype(np.float32), spacing_mm, 1) > 0.5
    return Anatomy(resampled, affine, brain_mask)


def save_anatomy(anatomy: Anatomy, path: Path) -> None:
    """Write an anatomy as one uncompressed ``.npz`` (tissues, affine, brain mask), atomically."""
    from iusynth.core.fileio import atomic_path

    arrays = {f"tissue_{name}": values for name, values in anatomy.tissues.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, affine=anatomy.affine, brain_mask=anatomy.brain_mask, **arrays)


def read_anatomy(path: Path) -> Anatomy:
    """An anatomy written by :func:`save_anatomy`; names the file when it is not one."""
    try:
        with np.load(path) as archive:
            tissues = {
                key.removeprefix("tissue_"): archive[key]
                for key in archive.files
                if key.startswith("tissue_")
            }
            anatomy = Anatomy(tissues, archive["affine"], archive["brain_mask"])
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{path} is not a demo template anatomy ({error}); delete it and re-run the "
            "rule prepare_demo_template"
        ) from error
    if set(tissues) != set(HEALTHY_TISSUES):
        raise ValueError(
            f"{path} holds the tissues {sorted(tissues)}, not {sorted(HEALTHY_TISSUES)}: delete "
            "it and re-run the rule prepare_demo_template"
        )
    return anatomy


def smooth_random_field(
    shape: tuple[int, ...], rng: np.random.Generator, correlation_voxels: float, components: int = 1
) -> np.ndarray:
    """Return ``components`` smooth Gaussian random fields of unit standard deviation.

    Noise is drawn on a coarse grid (two points per correlation length), smoothed there and
    interpolated up linearly, which is far cheaper than smoothing full-size noise.
    """
    step = max(correlation_voxels / 2.0, 1.0)
    coarse_shape = tuple(int(np.ceil(n / step)) + 3 for n in shape)
    fields = []
    for _ in range(components):
        coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma=1.0, mode="wrap")
        coords = np.meshgrid(
            *(np.arange(n) / step + 1.0 for n in shape), indexing="ij", sparse=True
        )
        dense = ndimage.map_coordinates(
            coarse, np.broadcast_arrays(*coords), order=1, mode="nearest"
        )
        fields.append((dense - dense.mean()) / (dense.std() + 1e-12))
    return np.stack(fields).astype(np.float32)


def random_displacement(
    shape: tuple[int, int, int],
    spacing_mm: float,
    rng: np.random.Generator,
    amplitude_mm: float,
    correlation_mm: float,
) -> np.ndarray:
    """Return a smooth random pull-back displacement field (3, *shape), in voxels."""
    fields = smooth_random_field(shape, rng, correlation_mm / spacing_mm, components=3)
    return fields * (amplitude_mm / spacing_mm / 2.0)


def mass_effect_displacement(
    shape: tuple[int, int, int],
    spacing_mm: float,
    centre_voxel: np.ndarray,
    radius_mm: float,
    push_mm: float,
) -> np.ndarray:
    """Return a pull-back displacement (3, *shape) in voxels pushing tissue away from a centre.

    Inside ``radius_mm`` the push grows linearly from 0 to ``push_mm``; beyond it decays as a
    Gaussian over one more radius. The map x -> x + u(x) stays monotonic along each ray
    (push_mm < radius_mm), so the warp never folds.
    """
    grids = np.meshgrid(
        *(np.arange(n, dtype=np.float32) for n in shape), indexing="ij", sparse=True
    )
    offset = [g - c for g, c in zip(grids, centre_voxel, strict=True)]
    distance = np.sqrt(sum(o * o for o in offset)) * spacing_mm
    inner = push_mm * distance / radius_mm
    outer = push_mm * np.exp(-(((distance - radius_mm) / radius_mm) ** 2))
    magnitude = np.where(distance < radius_mm, inner, outer) / spacing_mm
    scale = magnitude / np.maximum(distance / spacing_mm, 1e-6)
    return -np.stack([np.broadcast_to(o * scale, shape) for o in offset]).astype(np.float32)


def warp(volumes: dict[str, np.ndarray], displacement: np.ndarray) -> dict[str, np.ndarray]:
    """Pull each volume through one displacement field: out(x) = volume(x + u(x)), linearly."""
    shape = displacement.shape[1:]
    grids = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    coords = np.stack([g + d for g, d in zip(grids, displacement, strict=True)])
    return {
        name: ndimage.map_coordinates(volume, coords, order=1, mode="nearest").astype(volume.dtype)
        for name, volume in volumes.items()
    }
