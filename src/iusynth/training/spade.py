"""SPADE's own objective (Park et al., CVPR 2019) on the baselines' data and epochs.

Generator: hinge GAN loss through the multi-scale discriminators (averaged over scales,
weight ``baselines.training.gan_weight``), feature matching (the L1 distance between the
discriminators' intermediate outputs on the synthesis and on the real image, averaged
over scales, weight ``feature_matching_weight``) and a perceptual term (weight
``perceptual_weight``): SPADE's VGG-19 loss with the LPIPS AlexNet trunk in place of
VGG-19, whose weights this workflow cannot fetch offline, so the L1 distance between
the five feature maps weighted 1/32, 1/16, 1/8, 1/4 and 1 as SPADE weighs VGG's. No L1
term on the images (``baselines.training.l1_weight`` is not used). Discriminators: hinge
loss, seeing the input channels beside the image as the other baselines' do. Two time
scales (SPADE's TTUR): the generator at half ``baselines.training.learning_rate``, the
discriminators at twice it, Adam (0, 0.9); the baselines' linear decay over the second
half. Validation: the shared L1 of the targets.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from iusynth.evaluation.perceptual import load_lpips
from iusynth.model.discriminator import hinge_discriminator_loss, hinge_generator_loss
from iusynth.model.spade import SPADEMultiscaleDiscriminator
from iusynth.model.translator import translator_inputs
from iusynth.training.baselines import TranslatorTrainer
from iusynth.training.settings import TranslatorTraining

# SPADE's weights of VGG-19's five feature maps, here AlexNet's five
FEATURE_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


class AlexNetPerceptualLoss(nn.Module):
    """Weighted L1 distance of LPIPS's AlexNet feature maps, one modality at a time."""

    def __init__(self, lpips_weights: Path | None) -> None:
        super().__init__()
        lpips = load_lpips(lpips_weights)
        if lpips is None:
            raise ValueError(
                f"SPADE's perceptual term needs the LPIPS weights in {lpips_weights} "
                "(evaluation.lpips_weights; rule lpips_weights makes them), or "
                "baselines.generators.spade.perceptual_weight: 0 to leave it out"
            )
        self.trunk = lpips.trunk.requires_grad_(False)
        self.register_buffer("shift", lpips.shift)
        self.register_buffer("scale", lpips.scale)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The distance of ``fake`` to ``real`` (batch x modalities x H x W, in [-1, 1])."""
        fake, real = (
            image.flatten(0, 1).unsqueeze(1).expand(-1, 3, -1, -1) for image in (fake, real)
        )
        taps_fake = self.trunk((fake - self.shift) / self.scale)
        with torch.no_grad():
            taps_real = self.trunk((real - self.shift) / self.scale)
        return sum(
            weight * (a - b).abs().mean()
            for weight, a, b in zip(FEATURE_WEIGHTS, taps_fake, taps_real, strict=True)
        )


class SPADETrainer(TranslatorTrainer):
    """The baselines' data, epochs and checkpoints with SPADE's networks and losses."""

    terms = ("loss", "gan_g", "feature_matching", "perceptual", "gan_d")

    def build_networks(self, training: TranslatorTraining) -> None:
        """The shared construction with SPADE's parts, and the perceptual network."""
        self.settings = self.method.settings(self.config)
        super().build_networks(training)
        self.perceptual = (
            AlexNetPerceptualLoss(self.lpips_weights).to(self.device).eval()
            if self.settings.perceptual_weight > 0
            else None
        )

    def build_discriminator(self) -> nn.Module:
        """SPADE's multi-scale discriminators, seeing the input channels beside the image."""
        config = self.config
        return SPADEMultiscaleDiscriminator(
            len(config.inputs) + len(config.targets),
            config.discriminator_channels,
            self.settings.discriminator_layers,
            self.settings.discriminator_scales,
        )

    def optimiser_settings(
        self, training: TranslatorTraining
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """SPADE's two time scales (G at half the rate, D at twice it, Adam (0, 0.9))."""
        if not self.settings.two_time_scales:
            return super().optimiser_settings(training)
        rate = training.learning_rate
        return (rate / 2, 2 * rate), (0.0, 0.9)

    def step(self, images: torch.Tensor, fov: torch.Tensor, present: torch.Tensor) -> list[float]:
        """One step of both networks; returns the loss and its terms, then the critic's."""
        images, fov, present = images.to(self.device), fov.to(self.device), present.to(self.device)
        observed = self._observed(present.cpu(), images.shape[0]).to(self.device)
        self.model.train()
        outputs, real, _ = self._losses(images, fov, present, observed)
        inputs = translator_inputs(self.config, images, observed)
        fake_scales = self.discriminator(torch.cat([inputs, outputs], 1))
        with torch.no_grad():  # the targets of feature matching
            real_scales = self.discriminator(torch.cat([inputs, real], 1))
        scales = len(fake_scales)
        gan_g = sum(hinge_generator_loss(fake[-1]) for fake in fake_scales) / scales
        feature_matching = (
            sum(
                (a - b).abs().mean()
                for fake, true in zip(fake_scales, real_scales, strict=True)
                for a, b in zip(fake[:-1], true[:-1], strict=True)
            )
            / scales
        )
        perceptual = (
            self.perceptual(outputs, real) if self.perceptual is not None else outputs.new_zeros(())
        )
        loss = (
            self.training.gan_weight * gan_g
            + self.settings.feature_matching_weight * feature_matching
            + self.settings.perceptual_weight * perceptual
        )
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.d_optimiser.zero_grad(set_to_none=True)
        fake_scales = self.discriminator(torch.cat([inputs, outputs.detach()], 1))
        real_scales = self.discriminator(torch.cat([inputs, real], 1))
        gan_d = (
            sum(
                hinge_discriminator_loss(true[-1], fake[-1])
                for fake, true in zip(fake_scales, real_scales, strict=True)
            )
            / scales
        )
        gan_d.backward()
        self.d_optimiser.step()
        terms = (loss, gan_g, feature_matching, perceptual, gan_d)
        return [float(t.detach()) for t in terms]
