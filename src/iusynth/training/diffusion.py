"""Training of a diffusion baseline (M2DN) on the same slices as every other method.

Each step draws, per batch, the given modalities (a random non-empty proper subset of the
volume's, as MM-GAN), a timestep per slice and Gaussian noise; the missing modalities
are noised to their timestep, the given ones stay clean, and the network predicts the
clean images of every modality. The loss is the mean squared error on the missing
modalities the volume has, inside the field of view. Adam (0.9, 0.999) at
``baselines.training.learning_rate`` with the baselines' linear decay over the second
half. Validation: the L1 of a full DDIM synthesis from the method's validation inputs,
drawn with its own seed so that the training stream is the same with or without it.
"""

from __future__ import annotations

from typing import Any

import torch

from iusynth.training.baselines import TranslatorTrainer, linear_decay
from iusynth.training.settings import TranslatorTraining


class DiffusionTrainer(TranslatorTrainer):
    """The baselines' data and epochs with a denoising objective and no discriminator."""

    terms = ("loss",)

    def build_networks(self, training: TranslatorTraining) -> None:
        """One optimiser and its learning-rate decay."""
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=training.learning_rate)
        self.schedulers = [
            torch.optim.lr_scheduler.LambdaLR(self.optimiser, linear_decay(training.epochs))
        ]

    def parts(self) -> dict[str, Any]:
        """What a checkpoint saves besides the configs, epoch, random states and history."""
        return {"model": self.model, "optimiser": self.optimiser, "schedulers": self.schedulers}

    def step(self, images: torch.Tensor, fov: torch.Tensor, present: torch.Tensor) -> list[float]:
        """One denoising step on a batch; returns its loss."""
        images, fov, present = images.to(self.device), fov.to(self.device), present.to(self.device)
        batch = images.shape[0]
        observed = self._observed(present.cpu(), batch).to(self.device)
        self.model.train()
        timesteps = torch.randint(0, self.model.train_timesteps, (batch,), device=self.device)
        noise = torch.randn_like(images)
        noisy = self.model.diffused(images, observed, noise, timesteps)
        predicted = self.model.denoise(noisy, observed, timesteps)
        predicted = torch.where(fov.unsqueeze(1), predicted, torch.full_like(predicted, -1.0))
        per_image = (predicted - images).pow(2).flatten(2).mean(dim=2)  # batch x modalities
        weights = (present.unsqueeze(0) & ~observed).to(images.dtype)
        loss = (per_image * weights).sum() / weights.sum().clamp(min=1.0)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return [float(loss.detach())]

    @torch.no_grad()
    def validate(self) -> float:
        """L1 of DDIM syntheses of the validation batches, under a fixed seed of their own."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            return super().validate()
