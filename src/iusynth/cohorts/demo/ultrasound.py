"""Intra-operative ultrasound simulated from tissue maps, the way a scanner forms a B-mode.

The simulation runs on the probe's own polar grid (depth x lateral angle x elevation
angle) from an apex placed on the brain surface over a craniotomy:

1. per-tissue echogenicity (scatter strength) and attenuation are sampled along each ray,
   with bright echoes at tissue interfaces (sulci, ventricle walls, tumour borders);
2. the round-trip attenuation accumulates along the ray, so strong attenuators (such as
   calcifications) cast acoustic shadows, and fluid gives posterior enhancement;
   time-gain compensation offsets the average loss;
3. speckle: complex Gaussian scatterers weighted by the echogenicity, blurred by an
   anisotropic point-spread function; the envelope is Rayleigh distributed in homogeneous
   tissue;
4. light smoothing as the 3D reconstruction of a freehand sweep does, log compression to
   8-bit B-mode, and scan conversion into a Cartesian grid of its own (axis-aligned with
   world axes, zero outside the sector).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from iusynth.cohorts.demo.settings import UltrasoundSettings
from iusynth.core.geometry import rotation_matrix, unit, world_to_voxel

# Scatter strength (arbitrary units) and attenuation (dB/mm, one way) per tissue. Bone and
# scalp under the probe were removed by the craniotomy: they behave like saline.
US_ECHOGENICITY: dict[str, float] = {
    "csf": 0.001, "gm": 0.035, "wm": 0.06, "skull": 0.001, "scalp": 0.001,
    "necrosis": 0.004, "solid": 0.45, "enhancing": 0.6, "oedema": 0.15, "calcification": 5.0,
}  # fmt: skip
US_ATTENUATION_DB_PER_MM: dict[str, float] = {
    "csf": 0.01, "gm": 0.30, "wm": 0.35, "skull": 0.01, "scalp": 0.01,
    "necrosis": 0.05, "solid": 0.40, "enhancing": 0.40, "oedema": 0.30, "calcification": 3.0,
}  # fmt: skip
INTERFACE_ECHO = 3.0  # echo added per unit gradient (per mm) of CSF and tumour maps


@dataclass(frozen=True)
class ProbeGeometry:
    """A 3D sector: apex, orthonormal beam axes, depth and half-angles (radians)."""

    apex: np.ndarray
    axial: np.ndarray
    lateral: np.ndarray
    elevation: np.ndarray
    depth_mm: float
    lateral_half_angle: float
    elevation_half_angle: float

    def direction(self, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """Unit ray direction(s) for lateral angle theta and elevation angle phi (..., 3)."""
        theta, phi = np.asarray(theta)[..., None], np.asarray(phi)[..., None]
        in_plane = np.sin(theta) * self.lateral + np.cos(theta) * self.axial
        return np.cos(phi) * in_plane + np.sin(phi) * self.elevation

    def to_polar(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (depth r, lateral angle theta, elevation angle phi) of world points (..., 3)."""
        offset = points - self.apex
        a, lat, e = offset @ self.axial, offset @ self.lateral, offset @ self.elevation
        r = np.sqrt(a * a + lat * lat + e * e)
        phi = np.arcsin(np.clip(e / np.maximum(r, 1e-9), -1.0, 1.0))
        return r, np.arctan2(lat, a), phi

    def contains(
        self, points: np.ndarray, margin_mm: float = 0.0, angle_fraction: float = 1.0
    ) -> np.ndarray:
        """Whether world points lie in the sector (shrunk by a depth margin and angle fraction)."""
        r, theta, phi = self.to_polar(points)
        return (
            (r >= margin_mm)
            & (r <= self.depth_mm - margin_mm)
            & (np.abs(theta) <= angle_fraction * self.lateral_half_angle)
            & (np.abs(phi) <= angle_fraction * self.elevation_half_angle)
        )

    def as_dict(self) -> dict[str, object]:
        """JSON-ready description."""
        return {
            "apex_ras_mm": self.apex.tolist(),
            "axial": self.axial.tolist(),
            "lateral": self.lateral.tolist(),
            "elevation": self.elevation.tolist(),
            "depth_mm": self.depth_mm,
            "lateral_half_angle_deg": float(np.degrees(self.lateral_half_angle)),
            "elevation_half_angle_deg": float(np.degrees(self.elevation_half_angle)),
        }


@dataclass
class UltrasoundVolume:
    """A simulated acquisition: B-mode in its Cartesian grid, plus the polar intermediates."""

    bmode: np.ndarray  # uint8, zero outside the sector
    clean: np.ndarray  # uint8, the same acquisition without speckle (the skill's target)
    fov: np.ndarray  # bool, inside the sector
    affine: np.ndarray  # true voxel -> world (RAS) map of the Cartesian grid
    envelope: np.ndarray  # polar (depth, lateral, elevation) envelope before log compression
    echo: np.ndarray  # polar echogenicity sampled from the tissues
    depths_mm: np.ndarray  # depth of each polar sample along axis 0


def place_probe(
    brain_mask: np.ndarray,
    affine: np.ndarray,
    target_world: np.ndarray,
    rng: np.random.Generator,
    settings: UltrasoundSettings,
    max_tilt_deg: float = 10.0,
) -> ProbeGeometry:
    """Put the probe on the brain surface nearest the target, aimed at it (tilted a little)."""
    surface = brain_mask & ~ndimage.binary_erosion(brain_mask)
    points = np.argwhere(surface) @ affine[:3, :3].T + affine[:3, 3]
    nearest = points[np.argmin(np.linalg.norm(points - target_world, axis=1))]
    axial = unit(target_world - nearest)
    tilt_axis = unit(np.cross(axial, rng.standard_normal(3)))
    axial = rotation_matrix(tilt_axis, np.radians(rng.uniform(0, max_tilt_deg))) @ axial
    lateral = unit(np.cross(axial, rng.standard_normal(3)))
    return ProbeGeometry(
        apex=nearest - 2.0 * axial,
        axial=axial,
        lateral=lateral,
        elevation=np.cross(axial, lateral),
        depth_mm=settings.depth_mm,
        lateral_half_angle=float(np.radians(settings.lateral_angle_deg)),
        elevation_half_angle=float(np.radians(settings.elevation_angle_deg)),
    )


def acoustic_maps(
    tissues: dict[str, np.ndarray], spacing_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Echogenicity and attenuation (dB/mm) maps on the tissue grid, interfaces included."""
    echo = np.zeros(next(iter(tissues.values())).shape, np.float32)
    attenuation = np.zeros_like(echo)
    for name, membership in tissues.items():
        echo += US_ECHOGENICITY[name] * membership
        attenuation += US_ATTENUATION_DB_PER_MM[name] * membership
    boundaries = (
        tissues["csf"] + tissues["necrosis"] + 0.5 * (tissues["solid"] + tissues["enhancing"])
    )
    gradient = ndimage.gaussian_gradient_magnitude(boundaries, sigma=max(0.5 / spacing_mm, 0.5))
    echo += INTERFACE_ECHO * gradient / spacing_mm
    return echo, attenuation


def speckle_envelope(
    amplitude: np.ndarray, rng: np.random.Generator, psf_sigma: tuple[float, ...]
) -> np.ndarray:
    """Envelope of complex Gaussian scattering weighted by ``amplitude`` and blurred by a PSF.

    The PSF (Gaussian, sigma in samples per axis) is normalised to unit energy, so in a
    homogeneous region of amplitude A the envelope is Rayleigh distributed with mean
    square A**2 (scale A / sqrt(2)).
    """
    impulse = np.zeros(tuple(2 * int(np.ceil(4 * s)) + 1 for s in psf_sigma))
    impulse[tuple(n // 2 for n in impulse.shape)] = 1.0
    energy = np.sqrt(np.sum(ndimage.gaussian_filter(impulse, psf_sigma, mode="constant") ** 2))
    channels = []
    for _ in range(2):
        scatter = amplitude * rng.standard_normal(amplitude.shape, dtype=np.float32)
        channels.append(ndimage.gaussian_filter(scatter, psf_sigma, mode="wrap") / energy)
    return np.sqrt(0.5 * (channels[0] ** 2 + channels[1] ** 2)).astype(np.float32)


def log_compress(envelope: np.ndarray, reference: float, dynamic_range_db: float) -> np.ndarray:
    """B-mode grey levels (0..255, float32): the envelope in dB below ``reference``."""
    decibels = 20.0 * np.log10(np.maximum(envelope / reference, 1e-12))
    return (np.clip(1.0 + decibels / dynamic_range_db, 0.0, 1.0) * 255.0).astype(np.float32)


def _polar_grid(
    geometry: ProbeGeometry, spacing_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample depths and angles of the polar grid: arcs at full depth are ~one spacing apart."""
    depths = (np.arange(int(np.ceil(geometry.depth_mm / spacing_mm))) + 0.5) * spacing_mm
    n_theta = int(np.ceil(2 * geometry.lateral_half_angle * geometry.depth_mm / spacing_mm)) + 1
    n_phi = int(np.ceil(2 * geometry.elevation_half_angle * geometry.depth_mm / spacing_mm)) + 1
    thetas = np.linspace(-geometry.lateral_half_angle, geometry.lateral_half_angle, n_theta)
    phis = np.linspace(-geometry.elevation_half_angle, geometry.elevation_half_angle, n_phi)
    return depths, thetas, phis


def sector_grid(
    geometry: ProbeGeometry, spacing_mm: float
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Axis-aligned Cartesian grid (affine, shape) just enclosing the sector."""
    thetas = np.linspace(-geometry.lateral_half_angle, geometry.lateral_half_angle, 15)
    phis = np.linspace(-geometry.elevation_half_angle, geometry.elevation_half_angle, 15)
    directions = geometry.direction(*np.meshgrid(thetas, phis, indexing="ij")).reshape(-1, 3)
    corners = np.vstack([geometry.apex[None], geometry.apex + geometry.depth_mm * directions])
    lo = corners.min(axis=0) - 0.5 * spacing_mm
    shape = tuple(int(n) for n in np.ceil((corners.max(axis=0) - lo) / spacing_mm).astype(int) + 1)
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = lo
    return affine, shape


def _sample_polar(
    maps: tuple[np.ndarray, ...],
    map_affine: np.ndarray,
    geometry: ProbeGeometry,
    depths: np.ndarray,
    thetas: np.ndarray,
    phis: np.ndarray,
) -> list[np.ndarray]:
    """Each map sampled (linearly) on the probe's polar grid (depth, lateral, elevation)."""
    directions = geometry.direction(*np.meshgrid(thetas, phis, indexing="ij"))
    points = geometry.apex + depths[:, None, None, None] * directions[None]
    voxels = world_to_voxel(map_affine, points.reshape(-1, 3)).T
    shape = points.shape[:3]
    return [
        ndimage.map_coordinates(m, voxels, order=1, mode="nearest").reshape(shape) for m in maps
    ]


def simulate_ultrasound(
    echo_map: np.ndarray,
    attenuation_map: np.ndarray,
    map_affine: np.ndarray,
    geometry: ProbeGeometry,
    settings: UltrasoundSettings,
    rng: np.random.Generator,
) -> UltrasoundVolume:
    """Simulate one 3D B-mode acquisition from echogenicity and attenuation maps."""
    spacing = settings.spacing_mm
    depths, thetas, phis = _polar_grid(geometry, spacing)
    echo, attenuation = _sample_polar(
        (echo_map, attenuation_map), map_affine, geometry, depths, thetas, phis
    )

    # Attenuation accumulated before each sample (half of the sample's own): a strong
    # reflector stays bright at its front and shadows what lies behind it.
    travelled_db = (np.cumsum(attenuation, axis=0) - 0.5 * attenuation) * spacing
    round_trip_db = 2.0 * travelled_db - settings.tgc_db_per_mm * depths[:, None, None]
    transmission = 10.0 ** (-round_trip_db / 20.0)
    lateral_step, elevation_step = (thetas[1] - thetas[0]), (phis[1] - phis[0])
    psf = (
        settings.psf_sigma_mm[0] / spacing,
        settings.psf_sigma_mm[1] / (lateral_step * geometry.depth_mm * 0.5),
        settings.psf_sigma_mm[2] / (elevation_step * geometry.depth_mm * 0.5),
    )
    envelope = (
        speckle_envelope(np.sqrt(np.maximum(echo, 0.0)).astype(np.float32), rng, psf) * transmission
    )

    compounded = ndimage.gaussian_filter(envelope, settings.compounding_sigma)
    reference = np.percentile(compounded, 99.5) + 1e-12
    # Without speckle: the mean Rayleigh envelope of the same amplitude (sqrt(pi) / 2 of it),
    # through the same attenuation, TGC, compounding and log compression.
    expected = np.sqrt(np.pi) / 2 * np.sqrt(np.maximum(echo, 0.0)) * transmission
    clean = ndimage.gaussian_filter(expected.astype(np.float32), settings.compounding_sigma)

    affine, grid_shape = sector_grid(geometry, spacing)
    indices = np.indices(grid_shape, dtype=np.float32).reshape(3, -1).T
    world = indices @ affine[:3, :3].T + affine[:3, 3]
    r, theta, phi = geometry.to_polar(world)
    fov = geometry.contains(world)
    polar_index = np.stack(
        [r / spacing - 0.5, (theta - thetas[0]) / lateral_step, (phi - phis[0]) / elevation_step]
    )

    def to_cartesian(polar: np.ndarray) -> np.ndarray:
        bmode_polar = log_compress(polar, reference, settings.dynamic_range_db)
        values = ndimage.map_coordinates(bmode_polar, polar_index, order=1, mode="nearest")
        return np.where(fov, np.rint(values), 0.0).astype(np.uint8).reshape(grid_shape)

    return UltrasoundVolume(
        bmode=to_cartesian(compounded),
        clean=to_cartesian(clean),
        fov=fov.reshape(grid_shape),
        affine=affine,
        envelope=envelope,
        echo=echo,
        depths_mm=depths,
    )
