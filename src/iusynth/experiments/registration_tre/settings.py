"""What the registration experiment reads of the config (see :mod:`iusynth.core.settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from iusynth.core import modalities
from iusynth.core.settings import InvalidField
from iusynth.preprocessing.settings import RegistrationOptions

METHODS: tuple[str, ...] = ("direct", "synthesis")


@dataclass(frozen=True)
class ExperimentRegistration:
    """``reg_aladin`` of the experiment: rigid, the iUS side as reference."""

    RUNTIME: ClassVar[tuple[str, ...]] = ("threads",)

    levels: int
    levels_performed: int | None  # None: all
    reference_smoothing_mm: float  # the raw iUS, against speckle (direct)
    synthesis_smoothing_mm: float  # the synthetic MR (synthesis-assisted)
    mask_erosion_mm: float  # keeps blocks off the sector's edge
    threads: int  # the job's

    def __post_init__(self) -> None:
        performed = self.levels_performed
        if self.levels < 1 or (performed is not None and not 1 <= performed <= self.levels):
            raise InvalidField(
                "levels_performed",
                f"registration levels {self.levels} / levels_performed {performed}: expected "
                "levels >= 1 and 1 <= levels_performed <= levels",
            )

    def options(self, method: str) -> RegistrationOptions:
        """The ``reg_aladin`` options of one method (rigid, non-symmetric, masked reference)."""
        smoothing = (
            self.reference_smoothing_mm if method == "direct" else self.synthesis_smoothing_mm
        )
        return RegistrationOptions(
            transform="rigid",
            symmetric=False,
            levels=self.levels,
            levels_performed=self.levels_performed,
            reference_smoothing_mm=smoothing,
            mask_erosion_mm=self.mask_erosion_mm,
            threads=self.threads,
        )


@dataclass(frozen=True)
class ExperimentSettings:
    """The experiment (``registration_experiment.experiment``)."""

    bins_mm: tuple[float, ...]  # edges of the initial-displacement bins
    per_bin: int
    max_rotation_deg: float
    seed: int
    temperature: float  # of the MR synthesised from the iUS (0: the mean)
    sequences: tuple[str, ...]
    methods: tuple[str, ...]
    registration: ExperimentRegistration

    def __post_init__(self) -> None:
        edges = np.asarray(self.bins_mm, dtype=float)
        if edges.size < 2 or edges[0] < 0 or np.any(np.diff(edges) <= 0):
            raise InvalidField(
                "bins_mm",
                f"{list(self.bins_mm)}: expected at least two strictly increasing, "
                "non-negative bin edges in mm; list them in increasing order, e.g. "
                "[0, 4, 8, 12, 16]",
            )
        if self.per_bin < 1:
            raise InvalidField("per_bin", f"must be at least 1, not {self.per_bin}")
        if not 0 <= self.max_rotation_deg < 180:
            raise InvalidField(
                "max_rotation_deg", f"must be in [0, 180), not {self.max_rotation_deg}"
            )
        if self.temperature < 0:
            raise InvalidField("temperature", f"must be >= 0, not {self.temperature}")
        unknown = [s for s in self.sequences if s not in modalities.MR_SEQUENCES]
        if unknown or not self.sequences:
            raise InvalidField(
                "sequences",
                f"{list(self.sequences)}: expected a non-empty subset of "
                f"{list(modalities.MR_SEQUENCES)}",
            )
        if not self.methods or any(m not in METHODS for m in self.methods):
            raise InvalidField(
                "methods", f"{list(self.methods)}: expected a non-empty subset of {list(METHODS)}"
            )

    @property
    def bins(self) -> list[tuple[float, float]]:
        """The displacement bins as ``[low, high)`` pairs in mm."""
        return list(zip(self.bins_mm[:-1], self.bins_mm[1:], strict=True))


@dataclass(frozen=True)
class MrSynthesisSettings:
    """The MR synthesised from each subject's iUS (``registration_experiment``)."""

    DERIVED: ClassVar[tuple[str, ...]] = ("sequences", "temperature")

    device: str
    sequences: tuple[str, ...]
    temperature: float
