"""Synthesis directions and input subsets: names, order and display labels."""

from __future__ import annotations

from dataclasses import dataclass

from iusynth.core.modalities import LABELS, MODALITIES


def canonical_subset(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A subset of modalities in the canonical order (US, T2, ceT1, FLAIR)."""
    unknown = [name for name in names if name not in MODALITIES]
    if unknown or not names:
        raise ValueError(f"input subset {list(names)}: expected a non-empty subset of {MODALITIES}")
    return tuple(m for m in MODALITIES if m in names)


def subset_name(subset: tuple[str, ...]) -> str:
    """``T2+ceT1`` for (T2, ceT1)."""
    return "+".join(subset)


def temperature_tag(temperature: float | None) -> str:
    """``0.7``, or ``none`` for a deterministic method."""
    return "none" if temperature is None else f"{temperature:g}"


@dataclass(frozen=True)
class Direction:
    """A synthesis task: some modalities in, one out (input = target: reconstruction)."""

    inputs: tuple[str, ...]
    target: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", canonical_subset(self.inputs))
        if self.target not in MODALITIES:
            raise ValueError(f"direction target {self.target!r}: expected one of {MODALITIES}")

    @classmethod
    def from_name(cls, name: str) -> Direction:
        """The direction a :attr:`name` such as ``T2+ceT1-to-US`` stands for."""
        inputs, separator, target = name.partition("-to-")
        if not separator:
            raise ValueError(f"direction {name!r}: expected a name such as T2+ceT1-to-US")
        return cls(tuple(inputs.split("+")), target)

    @property
    def name(self) -> str:
        """File- and column-safe name, e.g. ``T2+ceT1-to-US``."""
        return f"{subset_name(self.inputs)}-to-{self.target}"

    @property
    def label(self) -> str:
        """Display name, e.g. ``T2+ceT1 → iUS``."""
        return f"{'+'.join(LABELS[m] for m in self.inputs)} → {LABELS[self.target]}"
