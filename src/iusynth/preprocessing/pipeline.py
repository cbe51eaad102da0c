"""Model-ready volumes: every modality and label in the iUS grid, cropped and normalised.

For one paired subject (iUS + MR): choose the reference MR sequence, build a grid on the
iUS axes, resample every MR sequence through the registration (and the MR -> MR
alignment) and the labels into it, and normalise intensities.

The grid (``preprocessing.grid``):

- ``authors`` (the authors' ``create_dataset_us-space.py``): the iUS cropped to the
  bounding box of its non-zero voxels, resampled linearly to ``spacing_mm`` on every axis
  whose spacing is within 20 % of the others (their ``get_spacing``: an odd axis keeps its
  native spacing, and that spacing is given to the third axis whichever axis it came
  from), cropped to its non-zero voxels again, and centre-cropped or padded in-plane to
  ``slice_size`` (torchio's ``CropOrPad``: ceil of half the difference first), the depth
  kept;
- ``fov`` (ours): an isotropic grid centred on the field of view's bounding box.

Normalisation, the authors' min-max: foreground ``x > 0`` over the whole grid
(``preprocessing.normalisation_region: grid``; ``fov``, ours, keeps only the iUS field of
view), clipped at ``clip_percentile``, the foreground's minimum at -255/256 and its clip
value at 1, background exactly -1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from iusynth.core import layout, modalities
from iusynth.core.subject import SubjectRecord
from iusynth.preprocessing.settings import PreprocessingSettings


@dataclass(frozen=True)
class Grid:
    """A voxel grid: its voxel -> world (RAS) affine and its shape."""

    affine: np.ndarray
    shape: tuple[int, int, int]


def ultrasound_fov(data: np.ndarray) -> np.ndarray:
    """The iUS field of view: foreground (> 0) closed and filled (anechoic areas inside count)."""
    foreground = data > 0
    closed = ndimage.binary_closing(foreground, structure=np.ones((3, 3, 3)), iterations=2)
    return ndimage.binary_fill_holes(closed | foreground)


def fov_grid(
    us_affine: np.ndarray, fov: np.ndarray, spacing_mm: float, in_plane: tuple[int, int]
) -> Grid:
    """An isotropic grid on the iUS axes over the field of view, in-plane size fixed.

    Axes 0 and 1 are in-plane (cropped or padded around the centre of the field of view to
    ``in_plane``); axis 2 spans the field of view and indexes the 2D slices.
    """
    axes = us_affine[:3, :3] / np.linalg.norm(us_affine[:3, :3], axis=0)
    voxel_size = np.linalg.norm(us_affine[:3, :3], axis=0)
    indices = np.argwhere(fov)
    lo, hi = indices.min(axis=0), indices.max(axis=0)
    extent_mm = (hi - lo) * voxel_size
    shape = (in_plane[0], in_plane[1], int(np.floor(extent_mm[2] / spacing_mm)) + 1)
    centre_world = us_affine[:3, :3] @ ((lo + hi) / 2.0) + us_affine[:3, 3]
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing_mm
    affine[:3, 3] = centre_world - affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return Grid(affine, shape)


def authors_spacing(spacing: np.ndarray, target_mm: float, path: Path) -> np.ndarray:
    """The authors' ``get_spacing``: ``target_mm`` on similar axes (within 20 %).

    With two similar axes, the odd one's native spacing goes to axis 2, whichever axis it
    was (their code's behaviour, kept); with none similar their code divides by zero, and
    this names the file instead.
    """
    s = [float(v) for v in spacing]
    similar = 0.2
    if abs(s[0] - s[1]) / s[0] < similar:
        odd = target_mm if abs(s[0] - s[2]) / s[0] < similar else s[2]
    elif abs(s[2] - s[1]) / s[0] < similar:
        odd = target_mm if abs(s[0] - s[2]) / s[0] < similar else s[0]
    elif abs(s[0] - s[2]) / s[0] < similar:
        odd = target_mm if abs(s[1] - s[0]) / s[0] < similar else s[1]
    else:
        raise ValueError(
            f"iUS image {path}: no two of its voxel spacings {s} are within 20 % of each "
            "other, so the authors' grid has no in-plane spacing (their script fails "
            "here); use preprocessing.grid: fov"
        )
    return np.array([target_mm, target_mm, odd])


def _non_zero_box(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last index of the non-zero voxels per axis (all: the whole)."""
    found = np.argwhere(data != 0)
    if not len(found):
        return np.zeros(3, int), np.array(data.shape)
    return found.min(axis=0), found.max(axis=0) + 1


def _centre_crop_or_pad(size: int, target: int) -> int:
    """Start index (in the cropped array) of torchio's centred crop or pad to ``target``."""
    difference = size - target
    return int(np.ceil(difference / 2)) if difference > 0 else -int(np.ceil(-difference / 2))


def authors_grid(
    us_affine: np.ndarray,
    us_data: np.ndarray,
    spacing_mm: float,
    in_plane: tuple[int, int],
    path: Path,
) -> tuple[Grid, np.ndarray]:
    """The authors' iUS grid and the iUS in it (see the module docstring)."""
    lo, hi = _non_zero_box(us_data)
    native = np.linalg.norm(us_affine[:3, :3], axis=0)
    spacing = authors_spacing(native, spacing_mm, path)
    directions = us_affine[:3, :3] / native
    origin = us_affine[:3, :3] @ lo + us_affine[:3, 3]  # the cropped image's first voxel
    size = np.round((hi - lo) * native / spacing).astype(int)
    resampled_affine = np.eye(4)
    resampled_affine[:3, :3] = directions * spacing
    resampled_affine[:3, 3] = origin
    resampled = resample(us_data, us_affine, Grid(resampled_affine, tuple(size)), np.eye(4), 1)
    lo2, hi2 = _non_zero_box(resampled)
    shape = (*in_plane, int(hi2[2] - lo2[2]))
    start = np.array(
        [
            lo2[0] + _centre_crop_or_pad(int(hi2[0] - lo2[0]), in_plane[0]),
            lo2[1] + _centre_crop_or_pad(int(hi2[1] - lo2[1]), in_plane[1]),
            lo2[2],
        ]
    )
    affine = resampled_affine.copy()
    affine[:3, 3] = resampled_affine[:3, :3] @ start + resampled_affine[:3, 3]
    us = np.zeros(shape, np.float32)  # padding is 0, as torchio's
    source = [slice(max(b, 0), min(b + n, m)) for b, n, m in zip(start, shape, size, strict=True)]
    target = [slice(s.start - b, s.stop - b) for s, b in zip(source, start, strict=True)]
    us[tuple(target)] = resampled[tuple(source)]
    return Grid(affine, shape), us


def resample(
    data: np.ndarray,
    source_affine: np.ndarray,
    grid: Grid,
    grid_to_source_world: np.ndarray,
    order: int,
) -> np.ndarray:
    """Sample ``data`` at the grid's voxels; ``grid_to_source_world`` maps grid -> source world.

    Points outside the source are 0.
    """
    voxel_map = np.linalg.inv(source_affine) @ grid_to_source_world @ grid.affine
    return ndimage.affine_transform(
        np.asarray(data, dtype=np.float32),
        voxel_map[:3, :3],
        offset=voxel_map[:3, 3],
        output_shape=grid.shape,
        order=order,
        mode="constant",
        cval=0.0,
    )


def resample_labels(
    labels: np.ndarray,
    source_affine: np.ndarray,
    grid: Grid,
    grid_to_source_world: np.ndarray,
    method: str,
) -> np.ndarray:
    """Resample a label map: nearest neighbour, or per-label linear interpolation + argmax."""
    if method == "nearest":
        return resample(labels, source_affine, grid, grid_to_source_world, order=0).astype(np.uint8)
    if method != "linear":
        raise ValueError(f"label interpolation must be 'nearest' or 'linear', not {method!r}")
    values = [int(v) for v in np.unique(labels) if v != 0]
    out = np.zeros(grid.shape, np.uint8)
    if not values:
        return out
    stack = [
        resample(labels == v, source_affine, grid, grid_to_source_world, order=1) for v in values
    ]
    memberships = np.stack([np.clip(1.0 - sum(stack), 0.0, 1.0), *stack])
    codes = np.array([0, *values], dtype=np.uint8)
    return codes[np.argmax(memberships, axis=0)]


def normalise(
    volume: np.ndarray, region: np.ndarray | None, clip_percentile: float
) -> tuple[np.ndarray, dict[str, float]]:
    """Map foreground (x > 0, inside ``region`` if given) to [-255/256, 1], the rest to -1.

    The authors' min-max (their foreground is x > 0 over the whole grid: ``region`` None):
    clipped at the ``clip_percentile`` percentile, the foreground's minimum at -255/256 so
    that every foreground voxel stays above the background (their output mask is
    ``input > -1``).
    """
    foreground = volume > 0 if region is None else (volume > 0) & region
    out = np.full(volume.shape, -1.0, np.float32)
    if not foreground.any():
        return out, {"low": 0.0, "high": 0.0, "foreground_voxels": 0}
    values = volume[foreground].astype(np.float64)
    high = float(np.percentile(values, clip_percentile))
    low = float(values.min())
    scaled = (np.minimum(values, high) - low) / (high - low) if high > low else np.ones_like(values)
    out[foreground] = (scaled * (1 + 255 / 256) - 255 / 256).astype(np.float32)
    return out, {"low": low, "high": high, "foreground_voxels": int(foreground.sum())}


def check_overlap(
    us_path: Path,
    fov: np.ndarray,
    us_affine: np.ndarray,
    mr_path: Path,
    mr_image: Any,
    us_to_mr: np.ndarray,
) -> None:
    """Refuse a registration that leaves most of the iUS field of view outside the MR volume."""
    points = np.argwhere(fov)[:: max(1, int(fov.sum()) // 5000)]
    world = points @ us_affine[:3, :3].T + us_affine[:3, 3]
    mapped = world @ us_to_mr[:3, :3].T + us_to_mr[:3, 3]
    voxels = (mapped - mr_image.affine[:3, 3]) @ np.linalg.inv(mr_image.affine[:3, :3]).T
    inside = np.all((voxels > -0.5) & (voxels < np.array(mr_image.shape) - 0.5), axis=1).mean()
    if inside < 0.5:
        raise ValueError(
            f"only {100 * inside:.0f}% of the iUS field of view of {us_path} falls inside "
            f"{mr_path}: the two do not share a world frame (check orientation, LPS vs RAS, "
            "and the registration)"
        )


def _resample_labels(
    record: SubjectRecord,
    label_maps: dict[str, np.ndarray],
    grid: Grid,
    fov: np.ndarray,
    interpolation: str,
) -> dict[str, np.ndarray]:
    """The subject's label volumes in the grid (zero outside the field of view)."""
    volumes = {}
    for kind, world_map in label_maps.items():
        if record.has(kind):
            labels = record.image(kind)
            resampled = resample_labels(
                np.asarray(labels.dataobj), labels.affine, grid, world_map, interpolation
            )
            volumes[kind] = np.where(fov, resampled, 0).astype(np.uint8)
    return volumes


def _clean_volumes(
    record: SubjectRecord,
    maps: dict[str, np.ndarray],
    grid: Grid,
    region: np.ndarray | None,
    clip_percentile: float,
) -> dict[str, np.ndarray]:
    """The noise-free images a demo subject has, through the maps of their modalities.

    Resampled as the acquired images are and normalised on their own the same way: the
    targets of the skill measure (:func:`iusynth.evaluation.metrics.skill`).
    """
    volumes = {}
    for modality, world_map in maps.items():
        kind = layout.clean_kind(modality)
        if record.has(kind):
            image = record.image(kind)
            resampled = resample(np.asarray(image.dataobj), image.affine, grid, world_map, 1)
            volumes[kind], _ = normalise(resampled, region, clip_percentile)
    return volumes


def ultrasound_grid(
    record: SubjectRecord, settings: PreprocessingSettings, native_fov: np.ndarray
) -> tuple[Grid, np.ndarray, np.ndarray]:
    """The subject's iUS grid (``settings.grid``), its iUS and field of view in it.

    ``native_fov``: the field of view in the iUS's own grid (:func:`ultrasound_fov`).
    """
    image = record.ultrasound()
    data = np.asarray(image.dataobj)
    if settings.grid == "authors":
        grid, us = authors_grid(
            image.affine, data, settings.spacing_mm, settings.slice_size, record.path("US")
        )
    else:
        grid = fov_grid(image.affine, native_fov, settings.spacing_mm, settings.slice_size)
        us = resample(data, image.affine, grid, np.eye(4), order=1)
    fov = resample(native_fov, image.affine, grid, np.eye(4), order=1) > 0.5
    return grid, us, fov


def preprocess_subject(
    record: SubjectRecord,
    us_to_mr: np.ndarray,
    mr_alignment: dict[str, np.ndarray],
    settings: PreprocessingSettings,
) -> tuple[Grid, dict[str, np.ndarray], dict[str, Any]]:
    """Resample and normalise one paired subject into its iUS field-of-view grid.

    ``us_to_mr`` maps iUS world -> reference MR world; ``mr_alignment[seq]`` maps reference
    MR world -> that sequence's world (identity when absent). Returns the grid, the volumes
    (normalised modalities, ``fov``, labels) and a JSON-ready summary.
    """
    us_image = record.ultrasound()
    reference = record.reference(settings.reference_order)
    native_fov = ultrasound_fov(np.asarray(us_image.dataobj))
    grid, us, fov = ultrasound_grid(record, settings, native_fov)
    identity = np.eye(4)
    raw = {"US": us}
    maps = {"US": identity}
    check_overlap(
        record.path("US"),
        native_fov,
        us_image.affine,
        record.path(reference),
        record.image(reference),
        us_to_mr,
    )
    for sequence in record.mr_sequences:
        image = record.image(sequence)
        maps[sequence] = mr_alignment.get(sequence, identity) @ us_to_mr
        raw[sequence] = resample(
            np.asarray(image.dataobj), image.affine, grid, maps[sequence], order=1
        )

    volumes: dict[str, np.ndarray] = {"fov": fov.astype(np.uint8)}
    normalisation = {}
    region = fov if settings.normalisation_region == "fov" else None
    for name, volume in raw.items():
        volumes[name], normalisation[name] = normalise(volume, region, settings.clip_percentile)
    volumes |= _clean_volumes(record, maps, grid, region, settings.clip_percentile)
    annotations = record.annotation_sequence(reference)
    label_maps = {
        "tumor-US": identity,
        "tumor-MR": mr_alignment.get(annotations, identity) @ us_to_mr,
    }
    volumes |= _resample_labels(record, label_maps, grid, fov, settings.label_interpolation)
    summary = {
        "subject": record.subject,
        "reference_sequence": reference,
        "modalities": [m for m in modalities.MODALITIES if m in raw],
        "grid": settings.grid,
        "grid_affine": grid.affine.tolist(),
        "grid_shape": list(grid.shape),
        "normalisation_region": settings.normalisation_region,
        "fov_voxels": int(fov.sum()),
        "clip_percentile": settings.clip_percentile,
        "normalisation": normalisation,
    }
    return grid, volumes, summary


def read_alignment_record(path: Path, subject: str) -> tuple[str, dict[str, np.ndarray]]:
    """The reference sequence and MR -> MR transforms of an align-mr record (JSON).

    ``transforms[seq]`` maps reference MR world -> that sequence's world; sequences it
    does not name (the reference, or all with ``align_mr_sequences: false``) are identity.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        reference = record["reference_sequence"]
        transforms = {
            sequence: np.asarray(matrix, dtype=float)
            for sequence, matrix in record["transforms"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"MR alignment record {path} is unreadable or malformed ({error!r}): expected the "
            "align-mr stage's JSON with 'subject', 'reference_sequence' and 'transforms'"
        ) from error
    if record.get("subject") != subject:
        raise ValueError(
            f"MR alignment record {path} is for {record.get('subject')!r}, not {subject!r}"
        )
    if reference not in modalities.MR_SEQUENCES:
        raise ValueError(f"MR alignment record {path}: unknown reference sequence {reference!r}")
    for sequence, matrix in transforms.items():
        valid = (
            sequence in modalities.MR_SEQUENCES
            and matrix.shape == (4, 4)
            and np.isfinite(matrix).all()
            and np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0])
        )
        if not valid:
            raise ValueError(
                f"MR alignment record {path}: transform {sequence!r} is not a 4x4 affine of a "
                f"known sequence ({list(modalities.MR_SEQUENCES)})"
            )
    return reference, transforms
