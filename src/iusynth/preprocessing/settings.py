"""What preprocessing reads of the config, as settings (see :mod:`iusynth.core.settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class RegistrationOptions:
    """Options of one ``reg_aladin`` run (``preprocessing.registration``)."""

    RUNTIME: ClassVar[tuple[str, ...]] = ("threads",)

    transform: str  # "rigid" (-rigOnly) or "affine"
    symmetric: bool  # reg_aladin's symmetric block matching (else -noSym)
    levels: int  # pyramid levels (-ln)
    levels_performed: int | None  # levels performed, from the coarsest (-lp); None: all
    reference_smoothing_mm: float  # Gaussian smoothing of the reference (-smooR)
    mask_erosion_mm: float  # erosion of the iUS sector mask, keeps blocks off its border
    threads: int  # the job's


@dataclass(frozen=True)
class RegistrationChecks:
    """What a registration must satisfy to be trusted (``preprocessing.registration_checks``).

    See :mod:`iusynth.preprocessing.checks`.
    """

    max_rotation_deg: float  # largest plausible rotation away from the headers
    max_translation_mm: float  # largest plausible displacement of the compared region
    similarity_tolerance: float  # NMI differences below this are ties
    allow_worse_landmarks: bool  # accept a registration that worsens the landmarks


@dataclass(frozen=True)
class RegistrationSettings:
    """What the MR -> MR and iUS -> MR registrations read (``preprocessing``)."""

    reference_order: tuple[str, ...]
    align_mr_sequences: bool
    registration: RegistrationOptions
    registration_checks: RegistrationChecks


@dataclass(frozen=True)
class PreprocessingSettings:
    """What resampling and normalisation read (``preprocessing``)."""

    reference_order: tuple[str, ...]
    grid: str  # authors: their iUS crop, resampling and crop-or-pad | fov (ours)
    spacing_mm: float
    slice_size: tuple[int, int]
    normalisation_region: str  # grid: foreground over the whole grid (authors) | fov
    clip_percentile: float
    label_interpolation: str


@dataclass(frozen=True)
class SplitSettings:
    """The folds of the train/validation cohort (``preprocessing.splits``).

    ``source`` is resolved (``authors`` or ``seeded``; see :func:`iusynth.jobs.split_source`);
    ``folds`` and ``seed`` apply to ``seeded``.
    """

    DERIVED: ClassVar[tuple[str, ...]] = ("source",)

    source: str
    folds: int
    seed: int
