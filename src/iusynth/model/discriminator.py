"""PatchGAN discriminators and the GAN losses (least squares, and SPADE's hinge).

MMHVAE has one unconditional discriminator per modality (1 channel in), the authors'
``NLayerDiscriminator(n_layers=6, ndf=64)``; the Pix2Pix and MM-GAN baselines use a
conditional one that sees the inputs beside the outputs (Pix2Pix: 3 layers, widths up to
8 x 64).
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``layers`` strided 4x4 convolutions, a stride-1 one, a 1-channel 4x4 map.

    Widths ``channels`` x 1, 2, 4, ... capped at ``max_multiplier``; instance norms
    without affine parameters after every convolution but the first and the last;
    LeakyReLU(0.2). At 192 x 192 with 6 layers the output is 1 x 1.
    """

    def __init__(
        self, channels: int = 64, layers: int = 6, in_channels: int = 1, max_multiplier: int = 4
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        width = channels
        for n in range(1, layers + 1):
            out = channels * min(2**n, max_multiplier)
            blocks += [
                nn.Conv2d(width, out, 4, stride=2 if n < layers else 1, padding=1),
                nn.InstanceNorm2d(out),
                nn.LeakyReLU(0.2),
            ]
            width = out
        blocks.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.body = nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Realness score per patch."""
        return self.body(image)


def lsgan_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares loss of the discriminator: MSE(real, 1) + MSE(fake, 0)."""
    return ((real - 1.0) ** 2).mean() + (fake**2).mean()


def lsgan_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Least-squares loss of the generator: MSE(fake, 1)."""
    return ((fake - 1.0) ** 2).mean()


def hinge_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: mean(relu(1 - real)) + mean(relu(1 + fake))."""
    return torch.relu(1.0 - real).mean() + torch.relu(1.0 + fake).mean()


def hinge_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the generator: -mean(fake)."""
    return -fake.mean()
