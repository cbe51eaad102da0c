"""SPADE (Park et al., CVPR 2019) used image to image: one network per evaluated direction.

The MHVAE paper compares SPADE on T2 -> iUS with the source image in place of SPADE's
label map. Laid out and trained on Pix2Pix's volumes and inputs; the generator is
:mod:`iusynth.model.spade`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iusynth.core.settings import InvalidField
from iusynth.methods.pix2pix import Pix2Pix

if TYPE_CHECKING:
    from iusynth.model.config import TranslatorConfig

# the generator's five x2 upsamplings
UPSAMPLINGS = 5


@dataclass(frozen=True)
class SPADESettings:
    """The generator's size; the defaults are SPADE's published ones."""

    DERIVED = ("image_size",)

    image_size: int = 192
    base_channels: int = 64  # SPADE's ngf: the last block's width, 16 x it at the top
    hidden_channels: int = 128  # the modulation networks' width
    spectral_norm: bool = True

    def __post_init__(self) -> None:
        if self.image_size % 2**UPSAMPLINGS:
            raise InvalidField(
                "image_size",
                f"SPADE needs a slice side divisible by {2**UPSAMPLINGS}, not {self.image_size}",
            )


class SPADE(Pix2Pix):
    """Pix2Pix's layout and inputs with SPADE's generator conditioned on the source image."""

    name = "spade"
    title = "SPADE"
    citation = "park2019spade"
    layout = (
        "one SPADE generator per direction, its source image in place of the label map "
        "that modulates every normalisation"
    )
    generator_settings_type = SPADESettings

    def generator(self, config: TranslatorConfig) -> Any:
        """SPADE at ``config.generator``'s size from the direction's inputs."""
        from iusynth.model.spade import SPADEGenerator

        settings = self.settings(config)
        return SPADEGenerator(settings, len(config.inputs), len(config.targets))
