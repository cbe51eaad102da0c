"""The generator of MMHVAE: encoders, a top-down decoder with fused posteriors, heads.

Per-modality encoders, a shared top-down decoder with priors and posterior experts
fused at every latent level, and one output head per modality.

The posterior expert network of a level is shared by the modalities (each modality's
skip makes its expert); the sampled latent map is the decoder's state, upsampled to the
next level. Latent widths are half the feature widths.

With the paper's settings (192 x 192, base width 16, widths capped at 128, six
poolings) the seven latent levels are a 256-d vector at the top (from the 128 x 3 x 3
features) and maps of 64 @ 6x6, 64 @ 12x12, 64 @ 24x24, 32 @ 48x48, 16 @ 96x96 and
8 @ 192x192. With ``latent_levels`` L < 7 only the L coarsest levels are stochastic;
finer stages decode deterministically (our reading of the paper's depth ablation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from iusynth.model.cells import (
    DecoderCell,
    EncoderResidualBlock,
    GaussianHead,
    ResnetBlock,
    SqueezeExcitation,
    Upsample,
    norm,
    soft_clamp,
)
from iusynth.model.fusion import (
    Gaussian,
    average_of_experts,
    kl_divergence,
    product_of_experts,
)

MODALITIES: tuple[str, ...] = ("US", "T2", "ceT1", "FLAIR")
FUSIONS = ("poe", "average", "concat")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the generator (and its discriminators)."""

    modalities: tuple[str, ...] = MODALITIES
    image_size: int = 192
    base_channels: int = 16
    max_channels: int = 128
    downsamplings: int = 6
    latent_levels: int = 7
    top_latent: int = 256
    head_channels: int = 16
    expand: int = 6
    head_blocks: int = 6
    fusion: str = "poe"
    discriminator_channels: int = 64
    discriminator_layers: int = 6

    def __post_init__(self) -> None:
        top = self.image_size // 2**self.downsamplings
        if top * 2**self.downsamplings != self.image_size or top < 1:
            raise ValueError(
                f"model: image_size {self.image_size} is not divisible by 2^{self.downsamplings}"
            )
        if not 1 <= self.latent_levels <= self.downsamplings + 1:
            raise ValueError(
                f"model: latent_levels must be in 1..{self.downsamplings + 1}, "
                f"not {self.latent_levels}"
            )
        if self.fusion not in FUSIONS:
            raise ValueError(f"model: fusion must be one of {FUSIONS}, not {self.fusion!r}")

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> ModelConfig:
        """Build from a config section (keys as the field names)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"model: unknown keys {sorted(unknown)}")
        values = dict(section)
        if "modalities" in values:
            values["modalities"] = tuple(values["modalities"])
        return cls(**values)

    def channels(self, stage: int) -> int:
        """Feature width at a stage (0: full resolution)."""
        return min(self.base_channels * 2**stage, self.max_channels)

    def latent_channels(self, stage: int) -> int:
        """Latent width of a spatial stage (half its feature width)."""
        return self.channels(stage) // 2

    def state_channels(self, stage: int) -> int:
        """Width of the decoder state leaving a stage: its latent, or its features."""
        if stage == self.downsamplings:
            return self.channels(stage)
        return self.latent_channels(stage) if self.stochastic(stage) else self.channels(stage)

    @property
    def top_size(self) -> int:
        """Side of the coarsest feature map."""
        return self.image_size // 2**self.downsamplings

    def stochastic(self, stage: int) -> bool:
        """Whether a spatial stage (below the top) carries a latent variable."""
        return stage >= self.downsamplings - (self.latent_levels - 1)


class Encoder(nn.Module):
    """One modality's encoder: a feature map per stage (the skips), finest first."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, config.channels(0), 3, padding=1)
        self.blocks = nn.ModuleList(
            EncoderResidualBlock(config.channels(s)) for s in range(config.downsamplings + 1)
        )
        self.downs = nn.ModuleList(
            nn.Conv2d(config.channels(s), config.channels(s + 1), 3, stride=2, padding=1)
            for s in range(config.downsamplings)
        )

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Skips of stages 0..downsamplings for a batch of 1-channel images."""
        x = self.stem(image)
        skips = []
        for stage, block in enumerate(self.blocks):
            x = block(x)
            skips.append(x)
            if stage < len(self.downs):
                x = self.downs[stage](x)
        return skips


class PosteriorExpert(nn.Module):
    """One modality's expert at one spatial level: (decoder features, skip) -> Gaussian."""

    def __init__(self, channels: int, skip_channels: int, latent_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            norm(channels + skip_channels),
            nn.SiLU(),
            nn.Conv2d(channels + skip_channels, channels, 3, padding=1),
            norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            SqueezeExcitation(channels),
        )
        self.head = GaussianHead(channels, latent_channels)

    def forward(self, features: torch.Tensor, skip: torch.Tensor) -> Gaussian:
        """The expert's Gaussian."""
        return Gaussian(*self.head(self.body(torch.cat([features, skip], dim=1))))


class TopExpert(nn.Module):
    """One modality's expert for the top vector latent, from its coarsest features."""

    def __init__(self, channels: int, size: int, latent: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels * size * size, 2 * latent)

    def forward(self, skip: torch.Tensor) -> Gaussian:
        """The expert's Gaussian."""
        mean, log_std = self.linear(skip.flatten(1)).chunk(2, dim=1)
        return Gaussian(soft_clamp(mean), soft_clamp(log_std))


class OutputHead(nn.Module):
    """conv3x3 to the head width, ResNet blocks, conv7x7, IN, LeakyReLU, conv7x7, tanh."""

    def __init__(self, in_channels: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            *(ResnetBlock(channels) for _ in range(blocks)),
            nn.Conv2d(channels, channels, 7, padding=3),
            norm(channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, 1, 7, padding=3),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """An image in [-1, 1]."""
        return self.body(x)


@dataclass
class Synthesis:
    """What one pass of the generator gives: images, and the KL per level (per sample)."""

    images: torch.Tensor  # batch x modalities x H x W, in [-1, 1], background -1
    kl: list[torch.Tensor] = field(default_factory=list)  # one (batch,) tensor per level
    latents: list[torch.Tensor] = field(default_factory=list)  # samples, coarsest first


class MMHVAE(nn.Module):
    """The generator: any subset of modalities in (a mask), every modality out."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        n = len(config.modalities)
        depth = config.downsamplings
        concat = config.fusion == "concat"
        top_c, top_s = config.channels(depth), config.top_size
        self.encoders = nn.ModuleList(Encoder(config) for _ in range(n))
        self.top_expert = TopExpert(top_c * (n if concat else 1), top_s, config.top_latent)
        self.top_decode = nn.Linear(config.top_latent, top_c * top_s * top_s)
        self.ups = nn.ModuleList(
            Upsample(config.state_channels(s + 1), config.channels(s)) for s in range(depth)
        )
        self.cells = nn.ModuleList(
            DecoderCell(config.channels(s), config.expand) for s in range(depth)
        )
        self.priors = nn.ModuleDict()
        self.experts = nn.ModuleDict()
        for stage in range(depth):
            if config.stochastic(stage):
                c, zc = config.channels(stage), config.latent_channels(stage)
                self.priors[str(stage)] = GaussianHead(c, zc)
                self.experts[str(stage)] = PosteriorExpert(c, c * (n if concat else 1), zc)
        self.heads = nn.ModuleList(
            OutputHead(config.state_channels(0), config.head_channels, config.head_blocks)
            for _ in range(n)
        )

    def _fuse(self, experts: list[Gaussian], prior: Gaussian, observed: torch.Tensor) -> Gaussian:
        """The posterior at one level from the observed experts (and the prior)."""
        fusion = self.config.fusion
        if fusion == "poe":
            ones = torch.ones_like(observed[:, :1])
            weights = torch.cat([ones, observed], dim=1).t()
            return product_of_experts([prior, *experts], weights)
        if fusion == "average":
            return average_of_experts(experts, observed.t(), prior)
        return experts[0]

    def _skips(self, images: torch.Tensor, observed: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per modality, its encoder skips (zeros for an unobserved modality)."""
        skips = []
        for index, encoder in enumerate(self.encoders):
            present = observed[:, index]
            if not bool(present.any()):
                skips.append([])
                continue
            modality_skips = encoder(images[:, index : index + 1])
            gate = present.to(images.dtype).view(-1, 1, 1, 1)
            skips.append([skip * gate for skip in modality_skips])
        return skips

    def _level_experts(
        self, expert: nn.Module, skips: list[list[torch.Tensor]], stage: int, features=None
    ) -> list[Gaussian]:
        """The shared expert applied to each modality's skip (all skips at once for concat)."""

        def run(skip: torch.Tensor) -> Gaussian:
            return expert(skip) if features is None else expert(features, skip)

        if self.config.fusion == "concat":
            return [
                run(torch.cat([m[stage] if m else self._zeros(skips, stage) for m in skips], dim=1))
            ]
        return [run(m[stage] if m else self._zeros(skips, stage)) for m in skips]

    def _zeros(self, skips: list[list[torch.Tensor]], stage: int) -> torch.Tensor:
        """A zero skip shaped like an observed one."""
        reference = next(modality[stage] for modality in skips if modality)
        return torch.zeros_like(reference)

    def forward(
        self,
        images: torch.Tensor,
        observed: torch.Tensor,
        fov: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> Synthesis:
        """Synthesise every modality from the observed ones.

        ``images``: batch x modalities x H x W in [-1, 1]; ``observed``: batch x modalities
        booleans, the inputs used (missing modalities must be False); ``fov``: batch x H x W
        mask the outputs are restricted to (outside: -1).
        """
        observed = observed.bool()
        batch = images.shape[0]
        config = self.config
        any_observed = bool(observed.any())
        skips = self._skips(images, observed) if any_observed else []
        top_prior = Gaussian(
            torch.zeros(batch, config.top_latent, device=images.device, dtype=images.dtype),
            torch.zeros(batch, config.top_latent, device=images.device, dtype=images.dtype),
        )
        kl = []
        if any_observed:
            experts = self._level_experts(self.top_expert, skips, config.downsamplings)
            posterior = self._fuse(experts, top_prior, observed)
        else:
            posterior = top_prior
        kl.append(kl_divergence(posterior, top_prior))
        z = posterior.sample(temperature)
        latents = [z]
        size = config.top_size
        x = self.top_decode(z).view(batch, config.channels(config.downsamplings), size, size)
        for stage in reversed(range(config.downsamplings)):
            x = self.cells[stage](self.ups[stage](x))
            key = str(stage)
            if key not in self.priors:
                continue
            prior = Gaussian(*self.priors[key](x))
            if any_observed:
                experts = self._level_experts(self.experts[key], skips, stage, features=x)
                posterior = self._fuse(experts, prior, observed)
            else:
                posterior = prior
            kl.append(kl_divergence(posterior, prior))
            x = posterior.sample(temperature)
            latents.append(x)
        outputs = torch.cat([head(x) for head in self.heads], dim=1)
        if fov is not None:
            outputs = torch.where(fov.unsqueeze(1).bool(), outputs, torch.full_like(outputs, -1.0))
        return Synthesis(outputs, kl, latents)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per top-level part of a module (and the total)."""
    counts: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        part = name.split(".")[0]
        counts[part] = counts.get(part, 0) + parameter.numel()
    counts["total"] = sum(counts.values())
    return counts
