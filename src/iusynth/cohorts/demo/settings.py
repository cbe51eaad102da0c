"""What the demo simulator reads of the config (``demo``; see :mod:`iusynth.core.settings`)."""

from __future__ import annotations

from dataclasses import dataclass

from iusynth.core.settings import InvalidField


@dataclass(frozen=True)
class UltrasoundSettings:
    """Acquisition settings of the simulated probe and scanner (``demo.ultrasound``)."""

    spacing_mm: float
    depth_mm: float
    lateral_angle_deg: float
    elevation_angle_deg: float
    psf_sigma_mm: tuple[float, float, float]  # axial, lateral, elevation
    tgc_db_per_mm: float  # round-trip gain compensation
    dynamic_range_db: float
    compounding_sigma: float  # smoothing (polar samples) of the 3D reconstruction


@dataclass(frozen=True)
class Misalignment:
    """The iUS header vs the MR (``demo.misalignment``): rigid, as tracking error and shift."""

    max_rotation_deg: float
    translation_mm: tuple[float, float]  # [low, high] of the translation's length

    def __post_init__(self) -> None:
        low, high = self.translation_mm
        if low > high:
            raise InvalidField(
                "translation_mm", f"{list(self.translation_mm)}: must be [low, high], low <= high"
            )


@dataclass(frozen=True)
class DemoSettings:
    """Simulation settings shared by all demo subjects (``demo``)."""

    seed: int
    mr_spacing_mm: float
    deformation_mm: float
    bias_strength: float
    noise_fraction: float
    landmarks_per_subject: int
    misalignment: Misalignment
    ultrasound: UltrasoundSettings


@dataclass(frozen=True)
class DemoCohortSettings:
    """How many subjects one demo cohort has and how they vary (``demo.cohorts.<name>``)."""

    subjects: int
    low_grade_fraction: float
    missing_sequence_fraction: float  # 0 where the simulated dataset has every sequence
