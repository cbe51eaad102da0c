"""What synthesis reads of the config, as settings (see :mod:`iusynth.core.settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from iusynth.core.directions import canonical_subset


@dataclass(frozen=True)
class SweepSettings:
    """What to synthesise per subject and method (``evaluation``).

    ``temperatures``: the sweep (``evaluation.temperatures``) for the methods of
    ``evaluation.sweep_methods``; 0 (deterministic, scored for skill) and
    ``evaluation.table_temperature`` for the others.
    """

    DERIVED: ClassVar[tuple[str, ...]] = ("temperatures",)

    subsets: tuple[tuple[str, ...], ...]
    temperatures: tuple[float, ...]
    samples: int
    slice_step: int
    batch_slices: int
    seed: int
    device: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "subsets", tuple(canonical_subset(s) for s in self.subsets))
