"""What evaluation reads of the config, as settings (see :mod:`iusynth.core.settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from iusynth.core.directions import Direction

SSIM_MODES = ("authors", "2d")
LPIPS_WEIGHTS_FILE = "lpips-alexnet-v0.1.pt"  # in evaluation.lpips_weights


@dataclass(frozen=True)
class MetricSettings:
    """How one subject's synthesis is scored (``evaluation``)."""

    ssim: str  # authors: their scikit-image call (1-D windows along rows) | 2d


@dataclass(frozen=True)
class TableSettings:
    """Tables 1 and 2 (``evaluation``): rows, columns, temperature, confidence intervals.

    ``split`` (the folds' source, resolved), ``fold_count``, ``folds`` (those trained) and
    ``primary_fold`` (``models.fold``) say which models scored the tables.
    """

    DERIVED: ClassVar[tuple[str, ...]] = ("split", "fold_count", "folds", "primary_fold")

    table1: dict[str, str]  # method -> row label
    table2: dict[str, str]
    directions: tuple[Direction, ...]
    table_temperature: float
    bootstrap_resamples: int
    seed: int
    split: str
    fold_count: int
    folds: tuple[int, ...]
    primary_fold: int

    def scope(self) -> str:
        """Which folds' models scored the train/validation cohort, in one sentence."""
        split = "the authors' split" if self.split == "authors" else "seeded folds"
        if len(self.folds) > 1:
            listed = ", ".join(str(fold) for fold in self.folds)
            return (
                f"Cross-validation over folds {listed} of {split}: each subject of the "
                "train/validation cohort is scored by the models of the fold whose test "
                f"list holds it, pooled; the test cohort by fold {self.primary_fold}'s."
            )
        return (
            f"One fold: fold {self.folds[0]} of {self.fold_count} ({split}); its models "
            "score its test list and the test cohort."
        )


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
