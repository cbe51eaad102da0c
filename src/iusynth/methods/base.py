"""What a GAN baseline method states about itself, for every stage that handles it.

A :class:`TranslatorMethod` is a family of generators that translate the given
modalities into the missing ones, deterministically (no temperature), trained with the
shared adversarial loop of :mod:`iusynth.training.baselines`. A subclass, in its own
module of :mod:`iusynth.methods`, states only what makes it itself: which networks it
trains (one per direction, or one for every input subset), which inputs and targets
each network has, which volumes it learns from, which inputs it is shown while training
and validating, its generator, and its sentence and citation in the methods text. The
workflow, the trainer, the synthesiser and the reports ask it; none names it.

Only the standard library is imported at module level: the Snakefile imports this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from iusynth.model.config import TranslatorConfig


class TranslatorMethod(ABC):
    """A GAN baseline: generators from given modalities to missing ones."""

    name: ClassVar[str]  # its name in the config (evaluation.table1, segmentation.methods)
    title: ClassVar[str]  # its name in the methods text
    citation: ClassVar[str]  # its key in iusynth.reporting.citations
    layout: ClassVar[str]  # the methods text's words on how its networks are laid out

    @abstractmethod
    def networks(self, directions: Sequence[str]) -> tuple[str, ...]:
        """The networks trained (folder names) for the evaluated ``directions`` (``T2-to-US``)."""

    @abstractmethod
    def modalities(self, network: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The inputs and the targets of one of its networks."""

    @abstractmethod
    def serves(self, config: TranslatorConfig, inputs: tuple[str, ...]) -> bool:
        """Whether the network of ``config`` synthesises from exactly the given ``inputs``."""

    @abstractmethod
    def learns_from(self, config: TranslatorConfig, acquired: frozenset[str]) -> bool:
        """Whether a training volume with the ``acquired`` modalities teaches the network."""

    @abstractmethod
    def training_inputs(
        self, config: TranslatorConfig, available: Sequence[int], rng: Any
    ) -> list[int]:
        """The modality indices given for one training batch, among the ``available`` ones.

        ``rng`` is the trainer's numpy generator.
        """

    @abstractmethod
    def validation_inputs(self, config: TranslatorConfig) -> tuple[str, ...]:
        """The modalities given to the network when its validation loss is measured."""

    def generator(self, config: TranslatorConfig) -> Any:
        """A generator network of the method's own, or None for the shared U-Net.

        The U-Net (:class:`iusynth.model.translator.UNetTranslator`) is built by the
        trainer: this module imports no torch (the Snakefile imports it).
        """
        return None
