"""Pix2Pix (Isola et al., CVPR 2017): one conditional U-Net GAN per evaluated direction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from iusynth.core.directions import Direction
from iusynth.core.modalities import MODALITIES
from iusynth.methods.base import TranslatorMethod

if TYPE_CHECKING:
    from iusynth.model.config import TranslatorConfig


class Pix2Pix(TranslatorMethod):
    """A network per direction: its inputs in, its one target out."""

    name = "pix2pix"
    title = "Pix2Pix"
    citation = "isola2017pix2pix"
    layout = "one U-Net per direction"

    def networks(self, directions: Sequence[str]) -> tuple[str, ...]:
        """One network per evaluated direction, named by it."""
        return tuple(directions)

    def modalities(self, network: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The direction's inputs (``T2+ceT1-to-US``) and its target."""
        direction = Direction.from_name(network)
        return direction.inputs, (direction.target,)

    def serves(self, config: TranslatorConfig, inputs: tuple[str, ...]) -> bool:
        """Exactly its direction's inputs."""
        return tuple(config.inputs) == inputs

    def learns_from(self, config: TranslatorConfig, acquired: frozenset[str]) -> bool:
        """Volumes with its inputs and its target."""
        return {*config.inputs, *config.targets} <= acquired

    def training_inputs(
        self, config: TranslatorConfig, available: Sequence[int], rng: Any
    ) -> list[int]:
        """Always its inputs."""
        return [MODALITIES.index(m) for m in config.inputs]

    def validation_inputs(self, config: TranslatorConfig) -> tuple[str, ...]:
        """Its inputs."""
        return tuple(config.inputs)
