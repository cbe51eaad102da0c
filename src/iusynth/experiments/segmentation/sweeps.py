"""Virtual iUS sweeps from an MR-only subject (the UPenn-GBM role).

A subject with MR sequences and tumour labels but no ultrasound gets a set of 2D planes
that look like the 2D training slices of the synthesis model, so that the trained MMHVAE
can turn the MR planes into synthetic iUS and the tumour labels ride along:

1. **Tumour**: ``tumor-MR > 0``; its centroid and principal axes (PCA of the tumour
   voxels' world coordinates).
2. **Brain and probe**: a brain mask from the MR (every present sequence, each scaled by
   its head's 99th percentile, averaged and thresholded, opened, the connected component
   holding the tumour kept, holes filled). On the demo cohort this drops the scalp,
   which the dark skull separates from the brain; on skull-stripped data (UPenn-GBM) it
   is the brain itself. The probe sits on the brain surface voxel nearest the tumour
   centroid, moved ``standoff_mm`` outwards (the demo simulator does the same).
3. **Sweep**: depth ``d`` = probe -> centroid; sweep direction ``s`` = the tumour's
   principal axis made perpendicular to ``d`` (the second axis when the first is almost
   parallel to ``d``); lateral ``l`` = ``d x s``. Plane ``k`` is perpendicular to ``s``
   at offset ``t_k`` from the centroid; the offsets are ``plane_spacing_mm`` apart with a
   seeded random phase, cover the tumour's extent along ``s`` plus ``margin_mm`` on each
   side, and at most ``max_planes`` of them, nearest the centroid, are kept. The fan's
   apex is the probe moved by ``t_k`` along ``s`` plus a seeded random lateral jitter
   (uniform in +-``jitter_mm`` along ``l``); the fan opens ``sector_angle_deg`` around
   ``d`` to ``depth_mm``. Pixels outside the fan are outside the field of view.
4. **Pixel grid and orientation**: every plane has the same in-plane axes, so the sweep
   is a regular 3D grid (``grid_affine`` in ``meta.json``; axis 2 indexes the planes).
   The training slices are axial slices (axis 2) of a grid on the iUS axes; the demo's
   iUS grids are aligned with the world axes (up to the <= 5 degree header misalignment),
   so a training slice has image axis 0 along R and axis 1 along A, and where the depth
   direction lies in the image depends on where the probe is (left, right, front or back
   of the head; from the top, depth crosses the slices). The sweep planes follow the same
   convention: their axes 0 and 1 are the in-plane directions closest to world R and A
   (a 2D rotation chosen to best match them, with the plane normal oriented towards S as
   the training slices stack along S). A sweep plane close to axial therefore looks
   exactly like the training slice through the same point, with depth running the same
   way across the image. The grid is centred on the fan's bounding box, as the training
   grid is centred on the iUS field of view.
5. **Sampling and normalisation**: each MR sequence is resampled at the pixels' world
   points (trilinear), the labels by nearest neighbour (zero outside the fan). Sequences
   are normalised as in preprocessing (``preprocessing.normalise``): foreground = samples
   > 0 inside the fan, statistics over all planes of the sweep per sequence (as training
   uses the whole iUS field of view of a subject), clip at ``clip_percentile``, min-max to
   [-255/256, 1], background -1.

The MR sequences and labels are taken to share one world frame (UPenn-GBM's are
co-registered in one space; the headers are trusted, no registration is run). The output
is a slice stack (:mod:`iusynth.preprocessing.slices`) with the US channel all -1 and not present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from iusynth.core import modalities
from iusynth.core.fileio import atomic_directory
from iusynth.core.geometry import unit, voxel_to_world, world_to_voxel
from iusynth.core.subject import SubjectRecord
from iusynth.experiments.segmentation.settings import VirtualSweepSettings
from iusynth.preprocessing.pipeline import normalise
from iusynth.preprocessing.slices import STACK_DTYPE

# Training slices' in-plane axes (grid axes 0 and 1) and stacking axis in world (RAS).
TRAINING_AXES = np.eye(3)
BRAIN_THRESHOLD = 0.15  # of the mean of the sequences, each scaled to its head's 99th percentile
BRAIN_OPENING = 2  # voxels of erosion / dilation cutting bridges between brain and scalp
PARALLEL_TOLERANCE = 0.2  # |sin| below which the principal axis counts as along depth


@dataclass(frozen=True)
class SweepGeometry:
    """Where the sweep is: probe, tumour, directions, and the planes' regular pixel grid.

    Pixel (i, j) of plane k is at ``origin + i*spacing*axis0 + j*spacing*axis1 +
    offsets[k]*sweep`` in world (RAS mm); ``apexes[k]`` is that plane's fan apex.
    """

    probe: np.ndarray
    centroid: np.ndarray
    depth: np.ndarray
    sweep: np.ndarray
    lateral: np.ndarray
    axis0: np.ndarray
    axis1: np.ndarray
    origin: np.ndarray
    offsets: np.ndarray
    apexes: np.ndarray
    size: tuple[int, int]
    spacing_mm: float
    plane_spacing_mm: float
    half_angle_rad: float
    depth_mm: float

    @property
    def grid_affine(self) -> np.ndarray:
        """4x4 map (i, j, k) -> world; k indexes the planes."""
        affine = np.eye(4)
        affine[:3, 0] = self.axis0 * self.spacing_mm
        affine[:3, 1] = self.axis1 * self.spacing_mm
        affine[:3, 2] = self.sweep * self.plane_spacing_mm
        affine[:3, 3] = self.origin + self.offsets[0] * self.sweep
        return affine

    def plane_origin(self, plane: int) -> np.ndarray:
        """World point of pixel (0, 0) of a plane."""
        return self.origin + self.offsets[plane] * self.sweep

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description (see :func:`plane_world_points` for its use)."""
        return {
            "probe_ras_mm": self.probe.tolist(),
            "centroid_ras_mm": self.centroid.tolist(),
            "depth_direction": self.depth.tolist(),
            "sweep_direction": self.sweep.tolist(),
            "lateral_direction": self.lateral.tolist(),
            "spacing_mm": self.spacing_mm,
            "plane_spacing_mm": self.plane_spacing_mm,
            "sector_angle_deg": float(np.degrees(2 * self.half_angle_rad)),
            "depth_mm": self.depth_mm,
            "planes": [
                {
                    "origin_ras_mm": self.plane_origin(k).tolist(),
                    "axis0": self.axis0.tolist(),
                    "axis1": self.axis1.tolist(),
                    "apex_ras_mm": self.apexes[k].tolist(),
                    "offset_mm": float(self.offsets[k]),
                }
                for k in range(len(self.offsets))
            ],
        }


def plane_world_points(
    plane: dict[str, Any], size: tuple[int, int], spacing_mm: float
) -> np.ndarray:
    """World points (H, W, 3) of a plane's pixels from its ``meta.json`` entry."""
    rows, cols = np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij")
    return (
        np.asarray(plane["origin_ras_mm"])
        + rows[..., None] * spacing_mm * np.asarray(plane["axis0"])
        + cols[..., None] * spacing_mm * np.asarray(plane["axis1"])
    )


def fan_mask(
    points: np.ndarray, apex: np.ndarray, depth: np.ndarray, half_angle_rad: float, depth_mm: float
) -> np.ndarray:
    """Whether world points (..., 3) lie in the fan: within ``depth_mm`` and the half-angle."""
    offset = points - apex
    radius = np.linalg.norm(offset, axis=-1)
    along = offset @ depth
    return (radius <= depth_mm) & (along >= radius * np.cos(half_angle_rad))


def training_aligned_axes(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-plane orthonormal axes closest to the training slices' axes 0 and 1 (R and A).

    The plane normal is oriented towards the training stacking axis (S), then the 2D
    rotation of an in-plane basis maximising ``axis0 . R + axis1 . A`` is taken, so
    ``axis0 x axis1`` points along the oriented normal, as R x A = S does.
    """
    e0, e1, e2 = TRAINING_AXES
    normal = unit(normal)
    if normal @ e2 < 0:
        normal = -normal
    seed_axis = e0 if abs(normal @ e0) < 0.9 else e1
    a = unit(seed_axis - (seed_axis @ normal) * normal)
    b = np.cross(normal, a)
    angle = np.arctan2(b @ e0 - a @ e1, a @ e0 + b @ e1)
    axis0 = np.cos(angle) * a + np.sin(angle) * b
    return axis0, np.cross(normal, axis0)


def _load_mr(record: SubjectRecord) -> dict[str, Any]:
    """The subject's MR sequences (headers checked), with a clear error when there is none."""
    if not record.mr_sequences:
        expected = [record.path(s).name for s in modalities.MR_SEQUENCES]
        raise FileNotFoundError(
            f"subject {record.subject} has no MR sequence in {record.folder}: expected at "
            f"least one of {expected}; convert the subject into the canonical layout first"
        )
    return {sequence: record.image(sequence) for sequence in record.mr_sequences}


def _load_tumour(record: SubjectRecord) -> tuple[Any, np.ndarray]:
    """The tumour label image and its voxels' world coordinates, refusing missing or empty."""
    path = record.path("tumor-MR")
    if not record.has("tumor-MR"):
        raise FileNotFoundError(
            f"subject {record.subject} has no tumour labels: {path} is missing; virtual sweeps "
            "are placed around the tumour, so add its MR tumour segmentation (BraTS labels or "
            "a binary mask) or drop the subject from the cohort"
        )
    image = record.image("tumor-MR")
    voxels = np.argwhere(np.asarray(image.dataobj) > 0)
    if len(voxels) == 0:
        raise ValueError(
            f"tumour labels {path} are empty (no voxel > 0): the segmentation is blank or was "
            "saved with the wrong data type; fix it or drop the subject"
        )
    return image, voxel_to_world(image.affine, voxels)


def _check_overlap(label_path: Path, label_image: Any, mr_path: Path, mr_image: Any) -> None:
    """Refuse labels whose grid does not lie inside the MR volume (a mismatched header)."""
    shape = np.array(label_image.shape)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * (shape - 1)
    voxels = world_to_voxel(mr_image.affine, voxel_to_world(label_image.affine, corners))
    lo, hi = voxels.min(axis=0), voxels.max(axis=0)
    overlap = np.clip(np.minimum(hi, np.array(mr_image.shape) - 1) - np.maximum(lo, 0), 0, None)
    fraction = float(np.prod(overlap) / max(np.prod(hi - lo), 1e-9))
    if fraction < 0.5:
        raise ValueError(
            f"tumour labels {label_path} do not match the grid of {mr_path}: only "
            f"{100 * fraction:.0f}% of the label volume lies inside the MR volume; the labels "
            "must be in the MR's world (same space, correct header), re-export them"
        )


def brain_mask(images: dict[str, Any], tumour_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brain mask on the first sequence's grid (mask, affine); see the module docstring.

    Each sequence is scaled by the 99th percentile of its voxels above its mean (the head),
    the sequences (resampled onto the first one's grid) are averaged (which also averages
    the noise) and thresholded at ``BRAIN_THRESHOLD``. An opening of ``BRAIN_OPENING``
    voxels cuts thin bridges to the scalp; the component holding most tumour voxels is
    kept, with the tumour added and holes filled.
    """
    reference = next(iter(images.values()))
    affine, shape = reference.affine, reference.shape
    mean = np.zeros(shape, np.float32)
    for image in images.values():
        data = np.asarray(image.dataobj, np.float32)
        if image.shape != shape or not np.allclose(image.affine, affine, atol=1e-3):
            voxel_map = np.linalg.inv(image.affine) @ affine
            data = ndimage.affine_transform(
                data, voxel_map[:3, :3], offset=voxel_map[:3, 3], output_shape=shape, order=1
            )
        head = data[data > data.mean()]
        if head.size:
            mean += data / (np.percentile(head, 99.0) * len(images))
    tumour_voxels = np.rint(world_to_voxel(affine, tumour_world)).astype(int)
    inside = np.all((tumour_voxels >= 0) & (tumour_voxels < np.array(shape)), axis=1)
    tumour = np.zeros(shape, bool)
    tumour[tuple(tumour_voxels[inside].T)] = True
    foreground = (mean > BRAIN_THRESHOLD) | tumour
    components, count = ndimage.label(
        ndimage.binary_erosion(foreground, iterations=BRAIN_OPENING) | tumour
    )
    hits = np.bincount(components[tumour], minlength=count + 1)
    hits[0] = 0
    kept = ndimage.binary_dilation(components == np.argmax(hits), iterations=BRAIN_OPENING)
    return ndimage.binary_fill_holes((kept & foreground) | tumour), affine


def _probe_and_directions(
    mask: np.ndarray, mask_affine: np.ndarray, centroid: np.ndarray, principal: np.ndarray,
    standoff_mm: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The probe (on the brain surface nearest the tumour), depth, sweep and lateral axes."""
    surface = mask & ~ndimage.binary_erosion(mask)
    points = voxel_to_world(mask_affine, np.argwhere(surface))
    nearest = points[np.argmin(np.linalg.norm(points - centroid, axis=1))]
    depth = unit(centroid - nearest)
    probe = nearest - standoff_mm * depth
    for axis in principal:
        across = axis - (axis @ depth) * depth
        if np.linalg.norm(across) > PARALLEL_TOLERANCE:
            sweep = unit(across)
            break
    return probe, depth, sweep, np.cross(depth, sweep)


def _plane_offsets(
    along: np.ndarray, settings: VirtualSweepSettings, rng: np.random.Generator
) -> np.ndarray:
    """Offsets (mm, along the sweep) of the planes over the tumour's extent plus the margin."""
    spacing = settings.plane_spacing_mm
    phase = rng.uniform(-0.5, 0.5) * spacing
    lo = np.ceil((along.min() - settings.margin_mm - phase) / spacing)
    hi = np.floor((along.max() + settings.margin_mm - phase) / spacing)
    steps = np.arange(lo, hi + 1)
    if len(steps) > settings.max_planes:
        steps = np.sort(
            steps[np.argsort(np.abs(steps + phase / spacing), kind="stable")][: settings.max_planes]
        )
    return steps * spacing + phase


def _grid_origin(
    centre_apex: np.ndarray, depth: np.ndarray, lateral: np.ndarray, axis0: np.ndarray,
    axis1: np.ndarray, half_angle: float, settings: VirtualSweepSettings,
) -> np.ndarray:  # fmt: skip
    """World point of pixel (0, 0): the pixel grid centred on the fan's bounding box."""
    angles = np.linspace(-half_angle, half_angle, 33)
    rays = np.cos(angles)[:, None] * depth + np.sin(angles)[:, None] * lateral
    fan = np.vstack([[0.0, 0.0, 0.0], settings.depth_mm * rays])
    fan = np.vstack([fan + j * lateral for j in (-settings.jitter_mm, settings.jitter_mm)])
    coords = np.stack([fan @ axis0, fan @ axis1], axis=1)
    centre_2d = (coords.min(axis=0) + coords.max(axis=0)) / 2.0
    half_extent = (np.array(settings.size) - 1) / 2.0 * settings.spacing_mm
    return (
        centre_apex
        + (centre_2d[0] - half_extent[0]) * axis0
        + (centre_2d[1] - half_extent[1]) * axis1
    )


def plan_sweep(
    mask: np.ndarray,
    mask_affine: np.ndarray,
    tumour_world: np.ndarray,
    settings: VirtualSweepSettings,
) -> SweepGeometry:
    """Probe, directions and planes of a sweep over the tumour (see the module docstring)."""
    rng = np.random.default_rng(settings.seed)
    centroid = tumour_world.mean(axis=0)
    _, eigenvectors = np.linalg.eigh(np.cov((tumour_world - centroid).T))
    principal = eigenvectors[:, ::-1].T  # largest variance first
    probe, depth, sweep, lateral = _probe_and_directions(
        mask, mask_affine, centroid, principal, settings.standoff_mm
    )
    offsets = _plane_offsets((tumour_world - centroid) @ sweep, settings, rng)
    jitter = rng.uniform(-settings.jitter_mm, settings.jitter_mm, len(offsets))
    centre_apex = probe + (centroid - probe) @ sweep * sweep
    apexes = centre_apex + offsets[:, None] * sweep + jitter[:, None] * lateral
    axis0, axis1 = training_aligned_axes(sweep)
    half_angle = np.radians(settings.sector_angle_deg) / 2.0
    return SweepGeometry(
        probe=probe,
        centroid=centroid,
        depth=depth,
        sweep=sweep,
        lateral=lateral,
        axis0=axis0,
        axis1=axis1,
        origin=_grid_origin(centre_apex, depth, lateral, axis0, axis1, half_angle, settings),
        offsets=offsets,
        apexes=apexes,
        size=settings.size,
        spacing_mm=settings.spacing_mm,
        plane_spacing_mm=settings.plane_spacing_mm,
        half_angle_rad=float(half_angle),
        depth_mm=settings.depth_mm,
    )


def _sample(image: Any, world: np.ndarray, order: int) -> np.ndarray:
    """Sample an image at world points (..., 3); zero outside its volume."""
    voxels = world_to_voxel(image.affine, world.reshape(-1, 3)).T
    data = np.asarray(image.dataobj, np.float32 if order else np.int32)
    values = ndimage.map_coordinates(data, voxels, order=order, mode="constant", cval=0)
    return values.reshape(world.shape[:-1])


def _plane_points(
    geometry: SweepGeometry, settings: VirtualSweepSettings
) -> tuple[np.ndarray, np.ndarray]:
    """World points of every pixel of every plane (planes x H x W x 3), and the fan masks."""
    rows, cols = np.meshgrid(
        np.arange(settings.size[0]), np.arange(settings.size[1]), indexing="ij"
    )
    in_plane = rows[..., None] * settings.spacing_mm * geometry.axis0 + (
        cols[..., None] * settings.spacing_mm * geometry.axis1
    )
    world = np.stack([geometry.plane_origin(k) + in_plane for k in range(len(geometry.offsets))])
    fov = np.stack(
        [
            fan_mask(
                world[k], geometry.apexes[k], geometry.depth, geometry.half_angle_rad,
                geometry.depth_mm,
            )
            for k in range(len(world))
        ]
    )  # fmt: skip
    return world, fov


def _sample_sequences(
    images: dict[str, Any], world: np.ndarray, fov: np.ndarray, settings: VirtualSweepSettings
) -> tuple[np.ndarray, list[bool], dict[str, Any]]:
    """The MR sequences on the planes, normalised as in preprocessing (missing: all -1)."""
    stack = np.full((len(world), len(modalities.MODALITIES), *settings.size), -1.0, STACK_DTYPE)
    present = [False] * len(modalities.MODALITIES)
    normalisation = {}
    for sequence, image in images.items():
        channel = modalities.MODALITIES.index(sequence)
        region = fov if settings.normalisation_region == "fov" else None
        values, normalisation[sequence] = normalise(
            _sample(image, world, order=1), region, settings.clip_percentile
        )
        stack[:, channel] = values
        present[channel] = True
    return stack, present, normalisation


def make_sweeps(
    record: SubjectRecord, output_dir: Path, settings: VirtualSweepSettings
) -> dict[str, Any]:
    """Write the virtual sweep of one MR-only subject as a slice stack; returns its metadata.

    ``output_dir`` gets ``images.npy`` (float32, planes x 4 x H x W: US all -1 and not
    present, T2, ceT1, FLAIR normalised, a missing sequence all -1), ``fov.npy`` (bool, the
    fan), ``tumor-MR.npy`` (uint8, binary tumour mask), ``tumor-MR-brats.npy`` (uint8, the
    source labels as they are) and ``meta.json`` (the slice stack fields, ``grid_affine``
    and ``grid_shape`` of the sweep's regular grid, and ``sweep``: the geometry).
    """
    images = _load_mr(record)
    label_image, tumour_world = _load_tumour(record)
    first = next(iter(images))
    _check_overlap(record.path("tumor-MR"), label_image, record.path(first), images[first])
    geometry = plan_sweep(*brain_mask(images, tumour_world), tumour_world, settings)
    world, fov = _plane_points(geometry, settings)
    stack, present, normalisation = _sample_sequences(images, world, fov, settings)
    labels = np.where(fov, _sample(label_image, world, order=0), 0).astype(np.uint8)
    meta = {
        "subject": record.subject,
        "modalities": list(modalities.MODALITIES),
        "present": present,
        "slice_axis": 2,
        "slice_indices": list(range(len(world))),
        "grid_shape": [*settings.size, len(world)],
        "grid_affine": geometry.grid_affine.tolist(),
        "labels": ["tumor-MR", "tumor-MR-brats"],
        "source": "virtual sweep",
        "clip_percentile": settings.clip_percentile,
        "normalisation": normalisation,
        "sweep": geometry.as_dict(),
    }
    with atomic_directory(output_dir) as folder:
        np.save(folder / "images.npy", stack)
        np.save(folder / "fov.npy", fov)
        np.save(folder / "tumor-MR.npy", (labels > 0).astype(np.uint8))
        np.save(folder / "tumor-MR-brats.npy", labels)
        (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
