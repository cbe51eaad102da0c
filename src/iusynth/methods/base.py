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

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from iusynth.core.settings import ConfigError, build

if TYPE_CHECKING:
    from iusynth.model.config import TranslatorConfig


class TranslatorMethod(ABC):
    """A GAN baseline: generators from given modalities to missing ones."""

    name: ClassVar[str]  # its name in the config (evaluation.table1, segmentation.methods)
    title: ClassVar[str]  # its name in the methods text
    citation: ClassVar[str]  # its key in iusynth.reporting.citations
    layout: ClassVar[str]  # the methods text's words on how its networks are laid out
    # the settings dataclass of a generator of its own (its defaults the published size,
    # overridden by baselines.generators.<name>), or None: the shared U-Net
    generator_settings_type: ClassVar[type | None] = None
    # what a modality not given is filled with in the network's input channels
    missing_value: ClassVar[float] = 0.0
    # True for a sampled (diffusion) network: a synthesis calls its sample(images, observed)
    # on all four modalities and their mask; False: one pass on its input channels
    sampled: ClassVar[bool] = False

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

    def generator_settings(
        self, overrides: Mapping[str, Any], key: str, image_size: int
    ) -> dict[str, Any]:
        """Its generator's settings, whole: the defaults with ``overrides`` (config ``key``).

        Checked at the slice side ``image_size``, which is left out of the result (the
        translator's config holds it). Empty for a method on the shared U-Net, which takes
        no overrides. Raises :class:`ConfigError` naming the key for an unknown or refused
        setting.
        """
        settings_type = self.generator_settings_type
        if settings_type is None:
            if overrides:
                raise ConfigError(
                    f"config key '{key}': {self.title} uses the shared U-Net of "
                    "baselines.architecture and takes no generator settings; remove the key"
                )
            return {}
        defaults = dataclasses.asdict(settings_type())
        unknown = sorted(set(overrides) - set(defaults) - set(settings_type.DERIVED))
        if unknown:
            raise ConfigError(
                f"config key '{key}': {unknown} are not {self.title} generator settings; "
                f"it has {sorted(set(defaults) - set(settings_type.DERIVED))}"
            )
        settings = build(settings_type, {**defaults, **overrides}, key, image_size=image_size)
        # the derived fields (the slice side) come from the translator's own config
        return {
            name: value
            for name, value in dataclasses.asdict(settings).items()
            if name not in settings_type.DERIVED
        }

    def settings(self, config: TranslatorConfig) -> Any:
        """The generator settings object saved in ``config`` (``config.generator``)."""
        if self.generator_settings_type is None:
            raise ValueError(f"{self.title} has no generator settings: it uses the shared U-Net")
        return build(
            self.generator_settings_type,
            config.generator,
            f"{self.name} generator",
            image_size=config.image_size,
        )

    def description(self, config: TranslatorConfig) -> str:
        """Its methods-text words for the network of ``config`` (default: :attr:`layout`)."""
        return self.layout

    def trainer_class(self) -> Any:
        """A trainer of its own (a ``TranslatorTrainer`` subclass), or None: the shared one.

        The shared one is the adversarial loop of :mod:`iusynth.training.baselines`.
        """
        return None

    def uses_feature_network(self, config: TranslatorConfig) -> bool:
        """Whether training needs the LPIPS AlexNet weights (``evaluation.lpips_weights``).

        Its trainer is then given their folder (``--lpips-weights``).
        """
        return False

    def training_files(self, config: TranslatorConfig) -> tuple[str, ...]:
        """Files its training reads besides the slices (e.g. user-supplied weights).

        The rule lists them as inputs, so a changed file retrains the network.
        """
        return ()

    def network_passes(self, config: TranslatorConfig) -> int:
        """Network evaluations per synthesis (a diffusion model's sampling steps)."""
        return 1

    def generator(self, config: TranslatorConfig) -> Any:
        """A generator network of the method's own, or None for the shared U-Net.

        The U-Net (:class:`iusynth.model.translator.UNetTranslator`) is built by the
        trainer: this module imports no torch (the Snakefile imports it), so a method
        with a generator of its own imports its network module here.
        """
        return None
