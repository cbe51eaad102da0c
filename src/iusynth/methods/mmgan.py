"""MM-GAN (Sharma and Hamarneh, IEEE TMI 2020): one U-Net GAN for every input subset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from iusynth.core.modalities import MODALITIES
from iusynth.methods.base import TranslatorMethod

if TYPE_CHECKING:
    from iusynth.model.config import TranslatorConfig

NETWORK = "any"


class MMGAN(TranslatorMethod):
    """One network: every modality in (the missing ones zero-filled), every one out."""

    name = "mmgan"
    title = "MM-GAN"
    citation = "sharma2020mmgan"
    layout = "one U-Net for every modality with the missing inputs zero-filled"

    def networks(self, directions: Sequence[str]) -> tuple[str, ...]:
        """One network, whatever the directions."""
        return (NETWORK,)

    def modalities(self, network: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Every modality, in and out."""
        if network != NETWORK:
            raise ValueError(f"{self.title} network {network!r}: it has one, named {NETWORK!r}")
        return MODALITIES, MODALITIES

    def serves(self, config: TranslatorConfig, inputs: tuple[str, ...]) -> bool:
        """Any proper subset of its modalities."""
        return set(inputs) < set(config.inputs)

    def learns_from(self, config: TranslatorConfig, acquired: frozenset[str]) -> bool:
        """Volumes with at least two modalities (one in, one out)."""
        return len(acquired) >= 2

    def training_inputs(
        self, config: TranslatorConfig, available: Sequence[int], rng: Any
    ) -> list[int]:
        """A random proper subset of the available modalities."""
        size = int(rng.integers(1, len(available)))
        return [int(i) for i in rng.choice(available, size=size, replace=False)]

    def validation_inputs(self, config: TranslatorConfig) -> tuple[str, ...]:
        """The iUS alone: every MR sequence out."""
        return (MODALITIES[0],)
