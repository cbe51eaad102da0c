"""SPADE (Park et al., CVPR 2019) used image to image: one network per evaluated direction.

The MHVAE paper compares SPADE on T2 -> iUS with the source image in place of SPADE's
label map. Laid out on Pix2Pix's volumes and inputs; the generator and discriminators are
:mod:`iusynth.model.spade`, the objective :mod:`iusynth.training.spade` (SPADE's own:
hinge loss, feature matching, a perceptual term, two time-scale learning rates).
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
    """The generator's size and SPADE's objective; the defaults are SPADE's published ones."""

    DERIVED = ("image_size",)

    image_size: int = 192
    base_channels: int = 64  # SPADE's ngf: the last block's width, 16 x it at the top
    hidden_channels: int = 128  # the modulation networks' width
    spectral_norm: bool = True
    discriminator_scales: int = 2  # SPADE's num_D
    discriminator_layers: int = 4  # SPADE's n_layers_D
    feature_matching_weight: float = 10.0  # SPADE's lambda_feat
    # SPADE's lambda_vgg, on AlexNet features (the LPIPS trunk) in place of VGG-19's;
    # 0 leaves the term out
    perceptual_weight: float = 10.0
    # SPADE's TTUR: the generator at half baselines.training.learning_rate, the
    # discriminators at twice it, Adam (0, 0.9); false: both at it, Adam (0.5, 0.999)
    two_time_scales: bool = True

    def __post_init__(self) -> None:
        if self.image_size % 2**UPSAMPLINGS:
            raise InvalidField(
                "image_size",
                f"SPADE needs a slice side divisible by {2**UPSAMPLINGS}, not {self.image_size}",
            )
        if self.discriminator_scales < 1:
            raise InvalidField("discriminator_scales", "SPADE needs at least one discriminator")
        if self.discriminator_layers < 2:
            raise InvalidField("discriminator_layers", "SPADE's discriminator needs two layers")
        for name in ("feature_matching_weight", "perceptual_weight"):
            if getattr(self, name) < 0:
                raise InvalidField(
                    name, f"a loss weight must not be negative, not {getattr(self, name)}"
                )


class SPADE(Pix2Pix):
    """Pix2Pix's layout and inputs with SPADE's generator conditioned on the source image."""

    name = "spade"
    title = "SPADE"
    citation = "park2019spade"
    layout = (
        "one SPADE generator per direction, its source image in place of the label map "
        "that modulates every normalisation, trained with SPADE's objective: hinge loss "
        "through multi-scale discriminators and feature matching"
    )
    generator_settings_type = SPADESettings

    def description(self, config: TranslatorConfig) -> str:
        """Its layout and whether the perceptual term was used."""
        if self.uses_feature_network(config):
            return f"{self.layout}, with a perceptual term on AlexNet features, not VGG-19's"
        return f"{self.layout}, without a perceptual term"

    def trainer_class(self) -> Any:
        """SPADE's objective (:class:`iusynth.training.spade.SPADETrainer`)."""
        from iusynth.training.spade import SPADETrainer

        return SPADETrainer

    def uses_feature_network(self, config: TranslatorConfig) -> bool:
        """Whether the perceptual term is on (it needs the LPIPS AlexNet weights)."""
        return self.settings(config).perceptual_weight > 0

    def generator(self, config: TranslatorConfig) -> Any:
        """SPADE at ``config.generator``'s size from the direction's inputs."""
        from iusynth.model.spade import SPADEGenerator

        settings = self.settings(config)
        return SPADEGenerator(settings, len(config.inputs), len(config.targets))
