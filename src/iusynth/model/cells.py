"""Building blocks of the encoders, decoder and heads (NVAE-style cells).

Every instance norm is a plain one (no affine parameters, no running statistics), as in
the authors' MMHVAE; squeeze-excitation gates are two linear layers on the channel means.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def soft_clamp(x: torch.Tensor, bound: float = 10.0) -> torch.Tensor:
    """Smoothly keep values within (-bound, bound): bound * tanh(x / bound)."""
    return bound * torch.tanh(x / bound)


def norm(channels: int) -> nn.Module:
    """Instance normalisation without affine parameters."""
    return nn.InstanceNorm2d(channels)


class SqueezeExcitation(nn.Module):
    """Channel attention: channel means, a bottleneck MLP (max(C / 16, 4)), sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 16, 4)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight the channels of ``x``."""
        return x * self.gate(x.mean(dim=(2, 3)))[:, :, None, None]


class EncoderResidualBlock(nn.Module):
    """IN, SiLU, conv3x3, IN, SiLU, conv3x3, squeeze-excitation, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            SqueezeExcitation(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update of ``x``."""
        return x + self.body(x)


class DecoderCell(nn.Module):
    """NVAE-style cell: IN, 3x3 expand, IN, SiLU, depthwise 5x5, IN, SiLU, SE, 1x1 back."""

    def __init__(self, channels: int, expand: int = 6) -> None:
        super().__init__()
        hidden = channels * expand
        self.body = nn.Sequential(
            norm(channels),
            nn.Conv2d(channels, hidden, 3, padding=1),
            norm(hidden),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden),
            norm(hidden),
            nn.SiLU(),
            SqueezeExcitation(hidden),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update of ``x``."""
        return x + self.body(x)


class Upsample(nn.Module):
    """Bilinear x2, then a 3x3 convolution (no bias) to the next stage's width."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Double the resolution of ``x``."""
        x = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv(x)


class ConvStack(nn.Module):
    """IN, SiLU, conv3x3, IN, SiLU, conv3x3, SE, then a weight-normed 1x1 (no bias).

    The posterior networks (``in`` = decoder features + a modality's skip, ``out`` = mean
    and log-std) and the deterministic stages of the L = 1 network (``out`` = the state)
    share this shape.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            norm(in_channels),
            nn.SiLU(),
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            norm(hidden),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            SqueezeExcitation(hidden),
        )
        self.out = weight_norm(nn.Conv2d(hidden, out_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output map."""
        return self.out(self.body(x))


class GaussianHead(nn.Module):
    """A weight-normed 1x1 convolution (no bias) to (mean, log-std), both soft-clamped."""

    def __init__(self, in_channels: int, latent_channels: int) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv2d(in_channels, 2 * latent_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std maps."""
        mean, log_std = self.conv(x).chunk(2, dim=1)
        return soft_clamp(mean), soft_clamp(log_std)


class ResnetBlock(nn.Module):
    """ResNet block of the output heads: reflect-padded conv3x3, IN, ReLU, conv3x3, IN, + x."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            norm(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update of ``x``."""
        return x + self.body(x)
