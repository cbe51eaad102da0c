"""PatchGAN discriminators and the least-squares GAN losses.

MMHVAE has one unconditional discriminator per modality (1 channel in); the Pix2Pix and
MM-GAN baselines use a conditional one that sees the inputs beside the outputs.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Strided 4x4 convolutions with IN and LeakyReLU(0.2), ending in a 1-channel patch map."""

    def __init__(
        self, channels: int = 64, layers: int = 6, max_channels: int = 256, in_channels: int = 1
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width = channels
        for _ in range(layers - 1):
            out = min(width * 2, max_channels)
            blocks += [
                nn.Conv2d(width, out, 4, stride=2, padding=1),
                nn.InstanceNorm2d(out, affine=True),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = out
        blocks.append(nn.Conv2d(width, 1, 3, padding=1))
        self.body = nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Realness score per patch."""
        return self.body(image)


def lsgan_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares loss of the discriminator: real -> 1, fake -> 0."""
    return 0.5 * (((real - 1.0) ** 2).mean() + (fake**2).mean())


def lsgan_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Least-squares loss of the generator: fake -> 1."""
    return ((fake - 1.0) ** 2).mean()
