"""M2DN (Meng et al., IEEE TMI 2024), modality-masked diffusion: one network for every subset.

No public code exists; this is our reading of the paper, built on MONAI's diffusion U-Net
and DDIM scheduler (:mod:`iusynth.model.m2dn`): the missing modalities are diffused while
the given ones stay clean, an availability mask conditions the network, which predicts the
clean images of every modality; trained on every input subset but the empty and the whole
one, its loss on the missing modalities the volume has (our data are incomplete); sampled
by DDIM in ``sampling_steps`` steps (the MMHVAE paper: 18), the given modalities put back
after every step. Its sizes are ours: the paper's network is not published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iusynth.core.settings import InvalidField
from iusynth.methods.mmgan import MMGAN

if TYPE_CHECKING:
    from iusynth.model.config import TranslatorConfig

SCHEDULES = ("linear_beta", "scaled_linear_beta")


@dataclass(frozen=True)
class M2DNSettings:
    """The diffusion U-Net's size and the noise schedule (defaults: ours, MONAI's usual)."""

    DERIVED = ("image_size",)

    image_size: int = 192
    channels: tuple[int, ...] = (64, 128, 256, 256)  # per U-Net level
    attention_levels: tuple[bool, ...] = (False, False, True, True)
    res_blocks: int = 2  # per level
    head_channels: int = 32  # per attention head
    norm_groups: int = 32
    train_timesteps: int = 1000
    schedule: str = "linear_beta"
    sampling_steps: int = 18  # DDIM steps per synthesis (the MMHVAE paper's M2DN)

    def __post_init__(self) -> None:
        if len(self.attention_levels) != len(self.channels):
            raise InvalidField("attention_levels", "give one per entry of channels")
        if self.image_size % 2 ** (len(self.channels) - 1):
            raise InvalidField(
                "image_size",
                f"{len(self.channels)} U-Net levels need a slice side divisible by "
                f"{2 ** (len(self.channels) - 1)}, not {self.image_size}",
            )
        if any(width % self.norm_groups for width in self.channels):
            raise InvalidField("norm_groups", f"must divide every width of {self.channels}")
        if self.schedule not in SCHEDULES:
            raise InvalidField("schedule", f"{self.schedule!r}: expected one of {SCHEDULES}")
        if not 1 <= self.sampling_steps <= self.train_timesteps:
            raise InvalidField("sampling_steps", "must be in 1..train_timesteps")


class M2DN(MMGAN):
    """MM-GAN's layout and input subsets with a diffusion model and its own training loop."""

    name = "m2dn"
    title = "M2DN"
    citation = "meng2024m2dn"
    layout = (
        "one modality-masked diffusion U-Net for every modality (the missing ones diffused "
        "from noise, the given ones kept clean, their availability mask as input; DDIM "
        "sampling)"
    )
    generator_settings_type = M2DNSettings
    sampled = True

    def generator(self, config: TranslatorConfig) -> Any:
        """The diffusion network over every modality at ``config.generator``'s size."""
        from iusynth.model.m2dn import M2DNNetwork

        return M2DNNetwork(self.settings(config), len(config.inputs))

    def trainer_class(self) -> Any:
        """:class:`iusynth.training.diffusion.DiffusionTrainer`."""
        from iusynth.training.diffusion import DiffusionTrainer

        return DiffusionTrainer

    def network_passes(self, config: TranslatorConfig) -> int:
        """Its sampling steps."""
        return int(self.settings(config).sampling_steps)
