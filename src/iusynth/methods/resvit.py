"""ResViT (Dalmaz et al., IEEE TMI 2022) in its unified mode: one network for every subset.

As its maintainers describe the unified (missing-modality) mode: every modality is an
input channel and an output, the ones not given are set to -1 (an empty image), and a
random subset is given at each step. The generator is :mod:`iusynth.model.resvit`.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """The generator's size; the defaults are ResViT's published ones (ViT-B/16 encoder)."""

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
        "missing inputs set to -1"
    )
    generator_settings_type = ResViTSettings
    missing_value = -1.0

    def generator(self, config: TranslatorConfig) -> Any:
        """ResViT at ``config.generator``'s size, every modality in and out."""
        from iusynth.model.resvit import ResViTGenerator

        settings = self.settings(config)
        return ResViTGenerator(settings, len(config.inputs), len(config.targets))
