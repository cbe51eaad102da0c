"""The SPADE generator (Park et al., CVPR 2019) used image to image, written from its paper.

The source image takes the place of SPADE's one-hot label map (its channels are the
input modalities, no instance map). The generator starts from the source resized to
1/32 of the slice (nearest) and a 3 x 3 convolution to ``16 * base_channels``, then
seven SPADE residual blocks (three at the top width, then halving to ``base_channels``)
with x2 nearest upsampling after the first, the third and each of the next three, and
a LeakyReLU, 3 x 3 convolution and tanh. Every normalisation is parameter-free batch norm
modulated per pixel by a scale and shift predicted from the source image (a 3 x 3
convolution to ``hidden_channels``, ReLU, two 3 x 3 convolutions); the residual blocks'
convolutions carry spectral norm, as in SPADE's default generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from iusynth.methods.spade import UPSAMPLINGS, SPADESettings


class SPADENorm(nn.Module):
    """Parameter-free batch norm, scaled and shifted per pixel from the source image."""

    def __init__(self, channels: int, source_channels: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(source_channels, hidden, 3, padding=1), nn.ReLU())
        self.scale = nn.Conv2d(hidden, channels, 3, padding=1)
        self.shift = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``x`` normalised and modulated by ``source`` resized to it."""
        features = self.shared(F.interpolate(source, size=x.shape[2:], mode="nearest"))
        return self.norm(x) * (1 + self.scale(features)) + self.shift(features)


class SPADEBlock(nn.Module):
    """Two modulated 3 x 3 convolutions added to the (projected, when widths differ) input."""

    def __init__(
        self, in_channels: int, out_channels: int, source: int, settings: SPADESettings
    ) -> None:
        super().__init__()
        middle = min(in_channels, out_channels)
        hidden = settings.hidden_channels

        def conv(channels_in: int, channels_out: int, size: int, bias: bool = True) -> nn.Module:
            layer = nn.Conv2d(channels_in, channels_out, size, padding=size // 2, bias=bias)
            return spectral_norm(layer) if settings.spectral_norm else layer

        self.norm_0 = SPADENorm(in_channels, source, hidden)
        self.conv_0 = conv(in_channels, middle, 3)
        self.norm_1 = SPADENorm(middle, source, hidden)
        self.conv_1 = conv(middle, out_channels, 3)
        self.learned_skip = in_channels != out_channels
        if self.learned_skip:
            self.norm_skip = SPADENorm(in_channels, source, hidden)
            self.conv_skip = conv(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The block's output features."""
        skip = self.conv_skip(self.norm_skip(x, source)) if self.learned_skip else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, source), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, source), 0.2))
        return skip + dx


class SPADEGenerator(nn.Module):
    """SPADE from ``in_channels`` source images to ``out_channels`` images in [-1, 1]."""

    def __init__(self, settings: SPADESettings, in_channels: int, out_channels: int) -> None:
        super().__init__()
        base = settings.base_channels
        widths = [16 * base, 16 * base, 16 * base, 16 * base, 8 * base, 4 * base, 2 * base, base]
        self.start = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList(
            SPADEBlock(widths[i], widths[i + 1], in_channels, settings) for i in range(7)
        )
        self.out = nn.Conv2d(base, out_channels, 3, padding=1)
        self.top = settings.image_size // 2**UPSAMPLINGS

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs (batch x out_channels x H x W) from the source (batch x in_channels x H x W)."""
        x = self.start(F.interpolate(inputs, size=(self.top, self.top), mode="nearest"))
        for index, block in enumerate(self.blocks):
            # upsampled after the first block, the third and each of the next three
            if index in (1, 3, 4, 5, 6):
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, inputs)
        return torch.tanh(self.out(F.leaky_relu(x, 0.2)))


class SPADEPatchDiscriminator(nn.Module):
    """SPADE's PatchGAN at one scale, returning every layer's output for feature matching.

    ``layers`` 4 x 4 convolutions (stride 2 but the last, which keeps the size), each with
    spectral norm and, after the first, parameter-free instance norm, LeakyReLU(0.2); then
    a 4 x 4 convolution to a one-channel map of scores.
    """

    def __init__(self, in_channels: int, channels: int, layers: int) -> None:
        super().__init__()
        stages: list[nn.Module] = [
            nn.Sequential(
                spectral_norm(nn.Conv2d(in_channels, channels, 4, stride=2, padding=2)),
                nn.LeakyReLU(0.2),
            )
        ]
        width = channels
        for n in range(1, layers):
            out = min(width * 2, 8 * channels)
            stride = 1 if n == layers - 1 else 2
            stages.append(
                nn.Sequential(
                    spectral_norm(nn.Conv2d(width, out, 4, stride=stride, padding=2)),
                    nn.InstanceNorm2d(out),
                    nn.LeakyReLU(0.2),
                )
            )
            width = out
        stages.append(nn.Conv2d(width, 1, 4, stride=1, padding=2))
        self.stages = nn.ModuleList(stages)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output; the last is the score map."""
        outputs = []
        for stage in self.stages:
            image = stage(image)
            outputs.append(image)
        return outputs


class SPADEMultiscaleDiscriminator(nn.Module):
    """SPADE's discriminators: one PatchGAN per scale, each on the input halved once more.

    Halving is a 3 x 3 average pooling of stride 2 that ignores the padding.
    """

    def __init__(self, in_channels: int, channels: int, layers: int, scales: int) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            SPADEPatchDiscriminator(in_channels, channels, layers) for _ in range(scales)
        )

    def forward(self, image: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per scale, every stage's output (the score map last)."""
        results = []
        for index, discriminator in enumerate(self.scales):
            if index:
                image = F.avg_pool2d(image, 3, stride=2, padding=1, count_include_pad=False)
            results.append(discriminator(image))
        return results
