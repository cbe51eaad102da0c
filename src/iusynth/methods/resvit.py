"""ResViT (Dalmaz et al., IEEE TMI 2022) in its unified mode: one network for every subset.

As its maintainers describe the unified (missing-modality) mode: every modality is an
input channel and an output, the ones not given are set to -1 (an empty image), and a
random subset is given at each step. The generator is :mod:`iusynth.model.resvit`; it
trains in ResViT's two stages (:mod:`iusynth.training.resvit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iusynth.core.settings import InvalidField
from iusynth.methods.mmgan import MMGAN

if TYPE_CHECKING:
    from iusynth.model.config import TranslatorConfig

# the transformer branch halves the bottleneck's resolution twice more: a 192 x 192 slice
# gives a 12 x 12 token grid
TOKEN_STRIDE = 16


@dataclass(frozen=True)
class ResViTSettings:
    """The generator's size and recipe; the defaults are ResViT's published ones (ViT-B/16).

    Recipe: the first ``cnn_stage_fraction`` of ``baselines.training.epochs`` train the
    network without its transformer branches (ResViT's pre-trained ResNet: 100 of its 150
    epochs), the rest train it whole at ``transformer_learning_rate_factor`` times the
    learning rate (its 1e-3 after 2e-4), each stage with fresh optimisers and
    discriminator and its own linear decay over its second half. ``vit_weights``: an
    ``.npz`` of ViT-B/16 weights in Google's layout (e.g. ``R50+ViT-B_16.npz``, ImageNet-21k)
    for the shared encoder; None trains it from random weights (this workflow cannot
    download them).
    """

    DERIVED = ("image_size",)

    image_size: int = 192
    base_channels: int = 64
    art_blocks: int = 9
    transformer_blocks: tuple[int, ...] = (1, 6)  # which ART blocks (from 1) have the ViT
    branch_channels: int = 1024  # width the transformer branch embeds from
    vit_layers: int = 12
    vit_width: int = 768
    vit_heads: int = 12
    vit_mlp: int = 3072
    vit_dropout: float = 0.1
    cnn_stage_fraction: float = 2 / 3
    transformer_learning_rate_factor: float = 5.0
    vit_weights: str | None = None

    def __post_init__(self) -> None:
        if self.image_size % TOKEN_STRIDE:
            raise InvalidField(
                "image_size",
                f"ResViT needs a slice side divisible by {TOKEN_STRIDE}, not {self.image_size}",
            )
        if self.vit_width % self.vit_heads:
            raise InvalidField(
                "vit_heads", f"vit_width {self.vit_width} is not divisible by {self.vit_heads}"
            )
        if not 0 <= self.cnn_stage_fraction < 1:
            raise InvalidField(
                "cnn_stage_fraction",
                f"a share of the epochs in [0, 1), not {self.cnn_stage_fraction}",
            )
        if self.transformer_learning_rate_factor <= 0:
            raise InvalidField("transformer_learning_rate_factor", "must be positive")
        outside = [b for b in self.transformer_blocks if not 1 <= b <= self.art_blocks]
        if outside:
            raise InvalidField(
                "transformer_blocks", f"{outside} are not ART blocks 1..{self.art_blocks}"
            )


class ResViT(MMGAN):
    """MM-GAN's layout and training inputs with ResViT's generator and -1 for a missing input."""

    name = "resvit"
    title = "ResViT"
    citation = "dalmaz2022resvit"
    layout = (
        "one ResViT generator (a convolutional encoder-decoder whose bottleneck has residual "
        "blocks, two of them with a shared vision transformer) for every modality, the "
        "missing inputs set to -1, trained first without its transformers, then whole"
    )
    generator_settings_type = ResViTSettings
    missing_value = -1.0

    def trainer_class(self) -> Any:
        """ResViT's two stages (:class:`iusynth.training.resvit.ResViTTrainer`)."""
        from iusynth.training.resvit import ResViTTrainer

        return ResViTTrainer

    def description(self, config: TranslatorConfig) -> str:
        """Its layout and where the ViT's weights came from."""
        weights = self.settings(config).vit_weights
        start = (
            f"the ViT from the weights of {Path(weights).name}"
            if weights
            else "the ViT from random weights (not ResViT's ImageNet-21k ones)"
        )
        return f"{self.layout}, {start}"

    def training_files(self, config: TranslatorConfig) -> tuple[str, ...]:
        """The ViT weight file the user gave (``vit_weights``), if any."""
        weights = self.settings(config).vit_weights
        return (weights,) if weights else ()

    def generator(self, config: TranslatorConfig) -> Any:
        """ResViT at ``config.generator``'s size, every modality in and out."""
        from iusynth.model.resvit import ResViTGenerator

        settings = self.settings(config)
        return ResViTGenerator(settings, len(config.inputs), len(config.targets))
