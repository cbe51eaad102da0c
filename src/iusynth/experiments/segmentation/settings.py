"""What the segmentation experiment reads of the config (see :mod:`iusynth.core.settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from iusynth.core.settings import InvalidField


@dataclass(frozen=True)
class VirtualSweepSettings:
    """The virtual sweeps' geometry (``segmentation.sweeps``); planes like training slices.

    ``size``, ``spacing_mm``, ``clip_percentile`` and ``normalisation_region`` are the
    training slices' (``preprocessing.slice_size``, ``spacing_mm``, ...).
    """

    DERIVED: ClassVar[tuple[str, ...]] = (
        "size",
        "spacing_mm",
        "clip_percentile",
        "normalisation_region",
    )

    max_planes: int  # nearest the tumour centroid
    plane_spacing_mm: float  # along the tumour's principal axis
    margin_mm: float  # beyond the tumour's extent along the sweep
    jitter_mm: float  # random shift of the probe across the fan, per plane
    size: tuple[int, int]
    spacing_mm: float
    sector_angle_deg: float  # opening of the fan
    depth_mm: float
    standoff_mm: float  # probe apex outside the brain surface
    clip_percentile: float
    normalisation_region: str  # grid: over the whole plane (the authors) | fov: in the fan
    seed: int

    def __post_init__(self) -> None:
        positive = ("max_planes", "plane_spacing_mm", "spacing_mm", "depth_mm")
        bad = [name for name in positive if getattr(self, name) <= 0]
        if bad or min(self.size) <= 0 or not 0 < self.sector_angle_deg < 180:
            raise ValueError(
                f"sweep settings {self}: {bad or 'size or sector_angle_deg'} out of range "
                "(sizes, spacings and depth must be > 0, the sector angle in (0, 180) degrees)"
            )


@dataclass(frozen=True)
class SyntheticIusSettings:
    """Synthetic iUS on the sweep planes (``segmentation``)."""

    temperatures: tuple[float, ...]  # one set of planes per temperature (augmentation)
    seed: int
    device: str


@dataclass(frozen=True)
class NnunetSettings:
    """nnU-Net training and inference (``segmentation.nnunet``)."""

    RUNTIME: ClassVar[tuple[str, ...]] = ("threads",)

    folds: int
    seed: int
    epochs: int
    iterations_per_epoch: int
    val_iterations_per_epoch: int
    initial_lr: float
    batch_size: int | None  # None: as nnU-Net plans it
    gpu_memory_target_gb: float | None  # None: nnU-Net's default target
    device: str
    threads: int  # the job's: worker processes and torch threads
    tile_step_size: float
    mirroring: bool
    validate: bool

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise InvalidField("folds", f"segmentation folds must be at least 2, not {self.folds}")
        for name in ("epochs", "iterations_per_epoch", "val_iterations_per_epoch", "threads"):
            if getattr(self, name) < 1:
                raise InvalidField(
                    name, f"segmentation {name} must be at least 1, not {getattr(self, name)}"
                )
        if not 0 < self.tile_step_size <= 1:
            raise InvalidField("tile_step_size", f"must be in (0, 1], not {self.tile_step_size}")


@dataclass(frozen=True)
class SegmentationTableSettings:
    """Table 4 (``segmentation``): its rows."""

    methods: dict[str, str]  # method -> row label


NETWORK_SETTINGS: dict[str, type] = {"nnunet": NnunetSettings}  # segmentation.network -> settings
