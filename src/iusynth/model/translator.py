"""The GAN baselines' generator: a U-Net image translator (Pix2Pix, MM-GAN).

- Pix2Pix (Isola et al. 2017): one network per direction, its input modalities stacked
  as channels, one target modality out.
- MM-GAN (Sharma & Hamarneh 2019): one network for every modality, all modalities in,
  the missing ones zero-filled, all modalities out ("implicit conditioning": the inputs
  given are passed through unchanged, the loss is on the imputed ones).

Both: strided 4x4 convolutions with instance norm and LeakyReLU down, transposed
convolutions with instance norm, ReLU (and dropout in the innermost half) up, skip
connections at every scale, tanh out; a conditional PatchGAN judges them.
"""

from __future__ import annotations

import torch
from torch import nn

from iusynth.core.modalities import MODALITIES
from iusynth.methods import translator_method
from iusynth.model.config import TranslatorConfig


def _down(in_channels: int, out_channels: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1)]
    if norm:
        layers.append(nn.InstanceNorm2d(out_channels, affine=True))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _up(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1),
        nn.InstanceNorm2d(out_channels, affine=True),
        nn.ReLU(inplace=True),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class UNetTranslator(nn.Module):
    """U-Net from the input modalities (channels) to the target modalities (channels)."""

    def __init__(self, config: TranslatorConfig) -> None:
        super().__init__()
        self.config = config
        depth = config.downsamplings
        widths = [config.channels(level) for level in range(depth)]
        self.down = nn.ModuleList(
            _down(len(config.inputs) if level == 0 else widths[level - 1], widths[level], level > 0)
            for level in range(depth)
        )
        up = []
        for level in reversed(range(1, depth)):
            in_channels = widths[level] * (1 if level == depth - 1 else 2)
            dropout = config.dropout if level >= depth - min(3, depth // 2) else 0.0
            up.append(_up(in_channels, widths[level - 1], dropout))
        self.up = nn.ModuleList(up)
        self.out = nn.Sequential(
            nn.ConvTranspose2d(widths[0] * 2, len(config.targets), 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Targets (batch x targets x H x W, in [-1, 1]) from inputs (batch x inputs x H x W)."""
        skips = []
        x = inputs
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()
        for layer in self.up:
            x = torch.cat([layer(x), skips.pop()], dim=1)
        return self.out(x)


def translator_inputs(
    config: TranslatorConfig, images: torch.Tensor, observed: torch.Tensor
) -> torch.Tensor:
    """The network's input channels from the four modalities (batch x 4 x H x W).

    Modalities not observed are filled with the method's ``missing_value`` (MM-GAN: 0,
    ResViT: -1); Pix2Pix requires all its inputs.
    """
    channels = [MODALITIES.index(m) for m in config.inputs]
    given = observed[:, channels][:, :, None, None]
    return torch.where(given, images[:, channels], translator_method(config.kind).missing_value)
