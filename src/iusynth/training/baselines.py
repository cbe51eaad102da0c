"""Training of the GAN baselines (Pix2Pix, MM-GAN) on the same slices as MMHVAE.

Loss: lambda_L1 * L1 (on the target modalities the volume has, inside the field of view
as the outputs are masked to it) + LSGAN through a conditional PatchGAN that sees the
input channels beside the outputs. Adam (beta1 0.5) for both networks, with a linear decay
over the second half of training as in Pix2Pix.

Pix2Pix trains on the volumes that have its inputs and its target. MM-GAN draws, per
batch, a random non-empty proper subset of the volume's modalities as input; the others
present are its targets (its "implicit conditioning"; the curriculum is left out).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iusynth.core.modalities import MODALITIES
from iusynth.core.settings import build
from iusynth.core.torch_io import load_torch
from iusynth.methods import translator_method
from iusynth.model.discriminator import (
    PatchDiscriminator,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from iusynth.model.translator import TranslatorConfig, UNetTranslator, translator_inputs
from iusynth.preprocessing.slices import SliceStack
from iusynth.training.data import SliceSampler, training_digest
from iusynth.training.loop import EpochTrainer, fit, select_device
from iusynth.training.settings import TranslatorTraining

log = logging.getLogger(__name__)


def build_generator(config: TranslatorConfig) -> torch.nn.Module:
    """The generator of a baseline's network: its method's own, else the shared U-Net.

    Either carries its ``config`` (the synthesiser asks it which inputs it serves).
    """
    model = translator_method(config.kind).generator(config) or UNetTranslator(config)
    model.config = config
    return model


def linear_decay(epochs: int) -> Callable[[int], float]:
    """Pix2Pix's learning-rate factor: 1 over the first half of ``epochs``, then down to 0."""
    half = epochs // 2

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch - half) / max(epochs - half, 1)

    return factor


def translator_outputs(
    model: torch.nn.Module, images: torch.Tensor, observed: torch.Tensor
) -> torch.Tensor:
    """A baseline network's outputs (batch x targets x H x W) from the four modalities.

    ``images``: batch x 4 x H x W; ``observed``: batch x 4, True where given. One pass on
    its input channels, or the sampling of a sampled (diffusion) method.
    """
    if translator_method(model.config.kind).sampled:
        return model.sample(images, observed)
    return model(translator_inputs(model.config, images, observed))


def usable_stacks(stacks: list[SliceStack], config: TranslatorConfig) -> list[SliceStack]:
    """The volumes a baseline's network can learn from (its method says which)."""
    method = translator_method(config.kind)
    return [stack for stack in stacks if method.learns_from(config, stack.acquired)]


class TranslatorTrainer(EpochTrainer):
    """Owns a generator, its discriminator, optimisers and data; trains an epoch at a time.

    A method with a training objective of its own (``TranslatorMethod.trainer_class``)
    subclasses it: :meth:`build_networks`, :meth:`parts`, :meth:`step` and :attr:`terms`.
    """

    terms: tuple[str, ...] = ("loss", "l1", "gan_g", "gan_d")  # what step returns

    @property
    def columns(self) -> tuple[str, ...]:  # type: ignore[override]
        """The loss CSV's columns: the epoch, :attr:`terms`, learning rate, validation, time."""
        return ("epoch", *self.terms, "lr", "val_l1", "seconds")

    def __init__(
        self,
        config: TranslatorConfig,
        training: TranslatorTraining,
        train_stacks: list[SliceStack],
        val_stacks: list[SliceStack],
        lpips_weights: Path | None = None,
    ) -> None:
        super().__init__({"translator_config": config, "training": training}, training)
        self.config = config
        # the LPIPS weights' folder, for a method whose objective uses their AlexNet
        self.lpips_weights = lpips_weights
        train_stacks = usable_stacks(train_stacks, config)
        if not train_stacks:
            raise ValueError(
                f"{config.kind} {'+'.join(config.inputs)} -> {'+'.join(config.targets)}: "
                "no training volume has these modalities"
            )
        self.method = translator_method(config.kind)
        self.model = build_generator(config).to(self.device)
        self.build_networks(training)
        self.train = SliceSampler(train_stacks, MODALITIES, training.batch_slices)
        val_stacks = usable_stacks(val_stacks, config)
        self.val = (
            SliceSampler(val_stacks, MODALITIES, training.batch_slices) if val_stacks else None
        )
        self.targets = [MODALITIES.index(m) for m in config.targets]

    def build_networks(self, training: TranslatorTraining) -> None:
        """The discriminator, both optimisers and their learning-rate schedule.

        A subclass changes the parts that differ: :meth:`build_discriminator`,
        :meth:`optimiser_settings`, :meth:`learning_rate_factor`.
        """
        self.discriminator = self.build_discriminator().to(self.device)
        (rate, d_rate), betas = self.optimiser_settings(training)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=rate, betas=betas)
        self.d_optimiser = torch.optim.Adam(self.discriminator.parameters(), lr=d_rate, betas=betas)
        factor = self.learning_rate_factor(training)
        self.schedulers = [
            torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
            for optimiser in (self.optimiser, self.d_optimiser)
        ]

    def build_discriminator(self) -> torch.nn.Module:
        """Pix2Pix's conditional PatchGAN, seeing the input channels beside the outputs."""
        config = self.config
        return PatchDiscriminator(
            config.discriminator_channels,
            config.discriminator_layers,
            in_channels=len(config.inputs) + len(config.targets),
            max_multiplier=8,
        )

    def optimiser_settings(
        self, training: TranslatorTraining
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """The generator's and the discriminator's learning rates, and Adam's betas."""
        return (training.learning_rate, training.learning_rate), (0.5, 0.999)

    def learning_rate_factor(self, training: TranslatorTraining) -> Callable[[int], float]:
        """The learning rates' factor per epoch: Pix2Pix's linear decay."""
        return linear_decay(training.epochs)

    def parts(self) -> dict[str, Any]:
        """What a checkpoint saves besides the configs, epoch, random states and history."""
        return {
            "model": self.model,
            "discriminator": self.discriminator,
            "optimiser": self.optimiser,
            "d_optimiser": self.d_optimiser,
            "schedulers": self.schedulers,
        }

    def _observed(self, present: torch.Tensor, batch: int) -> torch.Tensor:
        """The input mask of a batch, among the present modalities (its method chooses)."""
        observed = torch.zeros(len(MODALITIES), dtype=torch.bool)
        available = np.flatnonzero(present.numpy())
        observed[self.method.training_inputs(self.config, available, self.rng)] = True
        return observed.unsqueeze(0).expand(batch, -1)

    def _losses(
        self, images: torch.Tensor, fov: torch.Tensor, present: torch.Tensor, observed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs (masked to the field of view), real targets and the L1 weights.

        The outputs come through :func:`translator_outputs`: one pass, or the sampling of
        a sampled method, so every trainer validates the way the synthesis stage runs.
        """
        outputs = translator_outputs(self.model, images, observed)
        outputs = torch.where(fov.unsqueeze(1), outputs, torch.full_like(outputs, -1.0))
        real = images[:, self.targets]
        weights = (present[self.targets] & ~observed[0, self.targets]).to(images.dtype)
        return outputs, real, weights

    def step(self, images: torch.Tensor, fov: torch.Tensor, present: torch.Tensor) -> list[float]:
        """One step of both networks; returns loss, L1, generator and discriminator terms."""
        images, fov, present = images.to(self.device), fov.to(self.device), present.to(self.device)
        observed = self._observed(present.cpu(), images.shape[0]).to(self.device)
        self.model.train()
        outputs, real, weights = self._losses(images, fov, present, observed)
        inputs = translator_inputs(self.config, images, observed)  # what the critic is shown
        per_target = (outputs - real).abs().flatten(2).mean(dim=2).mean(dim=0)
        l1 = (per_target * weights).sum() / weights.sum().clamp(min=1.0)
        gan_g = lsgan_generator_loss(self.discriminator(torch.cat([inputs, outputs], 1)))
        loss = self.training.l1_weight * l1 + self.training.gan_weight * gan_g
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.d_optimiser.zero_grad(set_to_none=True)
        fake_pairs = torch.cat([inputs, outputs.detach()], 1)
        real_pairs = torch.cat([inputs, real], 1)
        # Pix2Pix halves the discriminator's loss to slow it relative to the generator
        gan_d = 0.5 * lsgan_discriminator_loss(
            self.discriminator(real_pairs), self.discriminator(fake_pairs)
        )
        gan_d.backward()
        self.d_optimiser.step()
        return [float(t.detach()) for t in (loss, l1, gan_g, gan_d)]

    @torch.no_grad()
    def validate(self) -> float:
        """L1 of the targets on central validation batches (MM-GAN: from iUS alone or MR)."""
        if self.val is None:
            return float("nan")
        self.model.eval()
        errors = []
        rng = np.random.default_rng(0)
        for index, stack in enumerate(self.val.stacks):
            start = max(0, (stack.images.shape[0] - self.val.batch_slices) // 2)
            batch = self.val.batch(index, rng, flip=False, start=start)
            images, fov = batch.images.to(self.device), batch.fov.to(self.device)
            present = batch.present.to(self.device)
            given = self.method.validation_inputs(self.config)
            observed = torch.tensor([m in given for m in MODALITIES], device=self.device)
            observed = observed.unsqueeze(0).expand(images.shape[0], -1)
            outputs, real, weights = self._losses(images, fov, present, observed)
            per_target = (outputs - real).abs().flatten(2).mean(dim=2).mean(dim=0)
            errors.append(float((per_target * weights).sum() / weights.sum().clamp(min=1.0)))
        return float(np.mean(errors))

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch; return its row of the loss history."""
        start = time.perf_counter()
        order = self.rng.permutation(len(self.train.stacks))
        terms = []
        for index in order:
            batch = self.train.batch(int(index), self.rng)
            terms.append(self.step(batch.images, batch.fov, batch.present))
        for scheduler in self.schedulers:
            scheduler.step()
        means = np.mean(terms, axis=0)
        self.epoch += 1
        row = {
            "epoch": self.epoch,
            **{term: float(mean) for term, mean in zip(self.terms, means, strict=True)},
            "lr": self.optimiser.param_groups[0]["lr"],
            "val_l1": self.validate() if self.checkpoint_due() else float("nan"),
            "seconds": 0.0,
        }
        row["seconds"] = time.perf_counter() - start
        self.history.append(row)
        return row


def build_trainer(
    config: TranslatorConfig,
    training: TranslatorTraining,
    train_stacks: list[SliceStack],
    val_stacks: list[SliceStack],
    lpips_weights: Path | None = None,
) -> TranslatorTrainer:
    """The trainer of a baseline's network: its method's own, else the adversarial loop.

    ``lpips_weights``: the LPIPS weights' folder, for a method whose objective uses them
    (``TranslatorMethod.uses_feature_network``).
    """
    trainer_class = translator_method(config.kind).trainer_class() or TranslatorTrainer
    return trainer_class(config, training, train_stacks, val_stacks, lpips_weights)


def train_translator(
    config: TranslatorConfig,
    training: TranslatorTraining,
    train_stacks: list[SliceStack],
    val_stacks: list[SliceStack],
    output: Path,
    checkpoint: Path,
    losses: Path,
    stop_after: int | None = None,
    lpips_weights: Path | None = None,
) -> TranslatorTrainer:
    """Train a baseline (resuming from ``checkpoint``); write the model and loss curves.

    Only a checkpoint of the same settings and slice stacks is resumed (:func:`fit`).
    ``lpips_weights`` as in :func:`build_trainer`.
    """
    settings = {"translator_config": asdict(config), "training": asdict(training)}
    return fit(
        lambda: build_trainer(config, training, train_stacks, val_stacks, lpips_weights),
        output,
        checkpoint,
        losses,
        training_digest(settings, train_stacks, val_stacks),
        stop_after,
    )


def load_translator(path: Path, device: str = "auto") -> torch.nn.Module:
    """A trained baseline generator from its ``model.pt``, in eval mode."""
    state = load_torch(path, "rule train_baseline")
    if "translator_config" not in state:
        raise ValueError(f"{path} is not a GAN baseline's model.pt (no translator_config)")
    config = build(TranslatorConfig, state["translator_config"], str(path))
    model = build_generator(config)
    model.load_state_dict(state["model"])
    return model.to(select_device(device)).eval()
