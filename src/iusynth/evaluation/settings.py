"""What evaluation reads of the config, as settings (see :mod:`iusynth.core.settings`)."""

from __future__ import annotations

from dataclasses import dataclass

from iusynth.core.directions import Direction

SSIM_MODES = ("authors", "2d")
LPIPS_WEIGHTS_FILE = "lpips-alexnet-v0.1.pt"  # in evaluation.lpips_weights


@dataclass(frozen=True)
class MetricSettings:
    """How one subject's synthesis is scored (``evaluation``)."""

    ssim: str  # authors: their scikit-image call (1-D windows along rows) | 2d


@dataclass(frozen=True)
class TableSettings:
    """Tables 1 and 2 (``evaluation``): rows, columns, temperature, confidence intervals."""

    table1: dict[str, str]  # method -> row label
    table2: dict[str, str]
    directions: tuple[Direction, ...]
    table_temperature: float
    bootstrap_resamples: int
    seed: int


@dataclass(frozen=True)
class FigureSettings:
    """The synthesis figures (``evaluation``)."""

    table1: dict[str, str]  # the methods shown, in order, with their labels
    sweep_methods: tuple[str, ...]  # the first one's temperature sweep is plotted
    figure_direction: Direction
    figure_slices: int
    table_temperature: float
    figure_temperature: float | None  # None: table_temperature

    @property
    def example_temperature(self) -> float:
        """The temperature of the stochastic methods in the example figure."""
        if self.figure_temperature is None:
            return self.table_temperature
        return self.figure_temperature
