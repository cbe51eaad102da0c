"""Architectures of the networks, as settings (no torch here: the workflow reads them).

:class:`ModelConfig` is MMHVAE's (``models.architecture``), :class:`TranslatorConfig` the
GAN baselines' U-Net (``baselines.architecture``); see :mod:`iusynth.core.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from iusynth.core.modalities import MODALITIES
from iusynth.methods import GAN_BASELINES
from iusynth.methods.mmgan import MMGAN

POE_WEIGHTINGS = ("authors", "textbook")
KL_ESTIMATORS = ("sampled", "analytic")
FUSIONS = ("poe", "average", "concat")
OUTPUT_MASKS = ("first_input", "fov")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the generator and its discriminators (``models.architecture``).

    ``ModelConfig()`` is the paper's model (the authors' MMHVAE: 13.77 M generator
    parameters for four modalities at 192 x 192); the workflow builds it from the config,
    whose ``config/paper.yaml`` states the same values (a test keeps them equal) and whose
    default ``config/config.yaml`` shrinks it for the demo. ``poe: authors``, ``kl:
    sampled`` and ``output_mask: first_input`` are the authors' behaviour; the other values
    are our alternatives.
    """

    DERIVED: ClassVar[tuple[str, ...]] = ("image_size",)  # from preprocessing.slice_size

    modalities: tuple[str, ...] = MODALITIES
    image_size: int = 192
    base_channels: int = 16
    max_channels: int = 128
    downsamplings: int = 6
    latent_levels: int = 7
    head_channels: int = 8
    expand: int = 6
    head_blocks: int = 6
    fusion: str = "poe"
    poe: str = "authors"
    kl: str = "sampled"
    output_mask: str = "first_input"
    discriminator_channels: int = 64
    discriminator_layers: int = 6

    def __post_init__(self) -> None:
        top = self.image_size // 2**self.downsamplings
        if top * 2**self.downsamplings != self.image_size or top < 1:
            raise ValueError(
                f"model: image_size {self.image_size} is not divisible by 2^{self.downsamplings}"
            )
        if not 1 <= self.latent_levels <= self.downsamplings + 1:
            raise ValueError(
                f"model: latent_levels must be in 1..{self.downsamplings + 1}, "
                f"not {self.latent_levels}"
            )
        for key, value, allowed in (
            ("fusion", self.fusion, FUSIONS),
            ("poe", self.poe, POE_WEIGHTINGS),
            ("kl", self.kl, KL_ESTIMATORS),
            ("output_mask", self.output_mask, OUTPUT_MASKS),
        ):
            if value not in allowed:
                raise ValueError(f"model: {key} must be one of {allowed}, not {value!r}")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(f"model: modalities {list(self.modalities)} not among {MODALITIES}")

    def channels(self, stage: int) -> int:
        """Feature width at a stage (0: full resolution)."""
        return min(self.base_channels * 2**stage, self.max_channels)

    def latent_channels(self, stage: int) -> int:
        """Width of the state leaving a spatial stage (its latent): half its feature width."""
        return self.channels(stage) // 2

    def state_channels(self, stage: int) -> int:
        """Width of the state entering the stage below ``stage`` (the top: max_channels)."""
        return self.max_channels if stage == self.downsamplings else self.latent_channels(stage)

    @property
    def top_latent(self) -> int:
        """Size of the top latent vector: twice ``max_channels`` (the authors' rule)."""
        return 2 * self.max_channels

    @property
    def top_size(self) -> int:
        """Side of the coarsest feature map."""
        return self.image_size // 2**self.downsamplings

    def stochastic(self, stage: int) -> bool:
        """Whether a spatial stage (below the top) carries a latent variable."""
        return stage >= self.downsamplings - (self.latent_levels - 1)


@dataclass(frozen=True)
class TranslatorConfig:
    """Which modalities go in and out, and the U-Net's size (``baselines.architecture``).

    ``TranslatorConfig()`` is MM-GAN at the paper's size (every modality in and out, the
    U-Net and PatchGAN of ``config/paper.yaml``, which a test keeps equal).
    """

    DERIVED: ClassVar[tuple[str, ...]] = ("kind", "inputs", "targets", "image_size", "generator")

    kind: str = MMGAN.name
    inputs: tuple[str, ...] = MODALITIES
    targets: tuple[str, ...] = MODALITIES
    image_size: int = 192
    downsamplings: int = 6
    base_channels: int = 64
    max_channels: int = 512
    dropout: float = 0.5
    discriminator_channels: int = 64
    discriminator_layers: int = 3
    # a method's own generator's settings, whole (TranslatorMethod.generator_settings from
    # baselines.generators.<kind>); empty for the U-Net, which the fields above size
    generator: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in GAN_BASELINES:
            raise ValueError(f"translator kind {self.kind!r}: expected one of {GAN_BASELINES}")
        for name in (*self.inputs, *self.targets):
            if name not in MODALITIES:
                raise ValueError(f"translator modality {name!r}: expected one of {MODALITIES}")
        if not self.inputs or not self.targets:
            raise ValueError("a translator needs at least one input and one target modality")
        if self.image_size % 2**self.downsamplings:
            raise ValueError(
                f"translator image_size {self.image_size} is not divisible by "
                f"2^downsamplings = {2**self.downsamplings}"
            )

    def channels(self, level: int) -> int:
        """Feature channels after ``level`` + 1 downsamplings."""
        return min(self.base_channels * 2**level, self.max_channels)
