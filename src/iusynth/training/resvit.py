"""ResViT's two training stages on the baselines' data, loss and checkpoints.

ResViT (Dalmaz et al.) first trains a ResNet, its generator without the transformer
branches (100 epochs at 2e-4: 50, then 50 decaying), then the whole generator from it
(50 epochs at 1e-3: 25, then 25 decaying), each stage a training of its own: fresh
optimisers and discriminator. Here both stages are one job of ``baselines.training.epochs``:
the first ``cnn_stage_fraction`` of them (at least none, at most all but one) without
the transformers, the rest whole at ``transformer_learning_rate_factor`` times the
learning rate; at the change the discriminator is re-initialised and both optimisers
forget their moments. The loss is the shared adversarial one (L1 x 100 + LSGAN, as
ResViT's). With ``vit_weights`` the shared ViT encoder starts from those weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from iusynth.model.resvit import load_vit_weights
from iusynth.training.baselines import TranslatorTrainer, linear_decay
from iusynth.training.settings import TranslatorTraining


def cnn_stage_epochs(epochs: int, fraction: float) -> int:
    """Epochs of the CNN-only stage: ``fraction`` of ``epochs``, leaving one for the rest."""
    return min(int(epochs * fraction), max(epochs - 1, 0))


def two_stage_factor(cnn_epochs: int, epochs: int, factor: float) -> Callable[[int], float]:
    """The learning-rate factor at an epoch: each stage constant, then decaying to 0."""
    first, second = linear_decay(cnn_epochs), linear_decay(epochs - cnn_epochs)

    def rate(epoch: int) -> float:
        return first(epoch) if epoch < cnn_epochs else factor * second(epoch - cnn_epochs)

    return rate


class ResViTTrainer(TranslatorTrainer):
    """The adversarial loop in ResViT's stages: without its transformers, then whole."""

    def build_networks(self, training: TranslatorTraining) -> None:
        """The shared networks and optimisers, the ViT's weights, the first stage's layout."""
        settings = self.method.settings(self.config)
        self.cnn_epochs = cnn_stage_epochs(training.epochs, settings.cnn_stage_fraction)
        super().build_networks(training)
        if settings.vit_weights:
            load_vit_weights(self.model.vit, Path(settings.vit_weights))
        self.model.use_transformers(self.cnn_epochs == 0)

    def learning_rate_factor(self, training: TranslatorTraining) -> Callable[[int], float]:
        """Each stage's rate held, then decaying; the second at its factor."""
        factor = self.method.settings(self.config).transformer_learning_rate_factor
        return two_stage_factor(self.cnn_epochs, training.epochs, factor)

    def enter_transformer_stage(self) -> None:
        """Fresh discriminator and optimiser moments; the generator whole from now on."""
        for module in self.discriminator.modules():
            if module is not self.discriminator and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for optimiser in (self.optimiser, self.d_optimiser):
            optimiser.state.clear()
        self.model.use_transformers(True)

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch of the stage the run is in (entering the second when due)."""
        if self.cnn_epochs and self.epoch == self.cnn_epochs:
            self.enter_transformer_stage()
        self.model.use_transformers(self.epoch >= self.cnn_epochs)
        return super().run_epoch()
