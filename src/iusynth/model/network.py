"""The generator of MMHVAE: encoders, a top-down decoder with fused posteriors, heads.

Per-modality encoders, a shared top-down decoder with a prior and posterior experts
fused at every latent level, and one output head per modality, computed as the
authors' ``MHVAE2D`` does (``load_authors_checkpoint`` loads their weights into it):

- the top latent is a vector of ``2 * max_channels`` from a weight-normed linear layer on
  each given modality's coarsest features (shared by the modalities), decoded by another
  into a ``max_channels`` map;
- each spatial stage upsamples the state (bilinear x2, conv3x3), runs a decoder cell,
  takes the prior from the features and, per given modality, a posterior expert from the
  features and that modality's skip (one network shared by the modalities); the fused
  Gaussian's sample, half the stage's width, is the state passed on;
- the heads turn the finest latent into each modality (tanh), masked by ``first given
  modality > -1`` (order of ``modalities``).

With the paper's settings (192 x 192, base width 16, widths capped at 128, six
poolings) the seven latent levels are a 256-d vector at the top (from the 128 x 3 x 3
features) and maps of 64 @ 6x6, 64 @ 12x12, 64 @ 24x24, 32 @ 48x48, 16 @ 96x96 and
8 @ 192x192.

``latent_levels`` L = 1 is the authors' non-hierarchical network (``MVAE2D``): only the
top latent is stochastic and every stage ends in a deterministic block of the posterior
network's shape instead of a latent. 1 < L < 7 (the paper's depth ablation, absent from
the authors' code) is our reading: the L - 1 coarsest stages are stochastic, the finer
ones deterministic as in the L = 1 network. The fusions ``average`` and ``concat``
(zero-filled concatenation of the skips into one expert) are our reading of the paper's
fusion ablation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from iusynth.model.cells import (
    ConvStack,
    DecoderCell,
    EncoderResidualBlock,
    GaussianHead,
    ResnetBlock,
    Upsample,
    norm,
    soft_clamp,
)
from iusynth.model.config import ModelConfig
from iusynth.model.fusion import (
    Gaussian,
    average_of_experts,
    kl_divergence,
    product_of_experts,
    sampled_kl,
)

# Inference on the CPU runs the batch in chunks of at most this many pixels: each slice's
# activations then stay in the caches. Measured at paper size (192 x 192, one thread):
# 336 ms per slice one slice at a time, 697 at batch 8, 1,055 at batch 16; at the demo's
# size (64 x 64, narrower) the batch size made no difference (12-15 ms per slice).
CPU_INFERENCE_PIXELS = 192 * 192


def cpu_inference_chunk(height: int, width: int) -> int:
    """Slices per chunk of CPU inference at this slice size (at least one)."""
    return max(1, CPU_INFERENCE_PIXELS // (height * width))


class Encoder(nn.Module):
    """One modality's encoder: the skips of stages 0..depth-1 and the top features."""

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
        """Feature maps of stages 0..depth (finest first) for a batch of 1-channel images."""
        x = self.stem(image)
        features = []
        for stage, block in enumerate(self.blocks):
            x = block(x)
            features.append(x)
            if stage < len(self.downs):
                x = self.downs[stage](x)
        return features


class PosteriorExpert(nn.Module):
    """The expert network of one level: (decoder features, a skip) -> Gaussian."""

    def __init__(self, in_channels: int, channels: int, latent_channels: int) -> None:
        super().__init__()
        self.net = ConvStack(in_channels, channels, 2 * latent_channels)

    def forward(self, features_and_skip: torch.Tensor) -> Gaussian:
        """The expert's Gaussian from the concatenated features and skip."""
        mean, log_std = self.net(features_and_skip).chunk(2, dim=1)
        return Gaussian(soft_clamp(mean), soft_clamp(log_std))


class TopExpert(nn.Module):
    """The expert of the top vector latent, from a modality's coarsest features."""

    def __init__(self, in_features: int, latent: int) -> None:
        super().__init__()
        self.linear = weight_norm(nn.Linear(in_features, 2 * latent))

    def forward(self, features: torch.Tensor) -> Gaussian:
        """The expert's Gaussian."""
        mean, log_std = self.linear(features.flatten(1)).chunk(2, dim=1)
        return Gaussian(soft_clamp(mean), soft_clamp(log_std))


class OutputHead(nn.Module):
    """[1x1 to the head width], ResNet blocks, conv7x7, IN, LeakyReLU, conv7x7, tanh."""

    def __init__(self, in_channels: int, channels: int, blocks: int) -> None:
        super().__init__()
        reduce = [] if in_channels == channels else [nn.Conv2d(in_channels, channels, 1)]
        self.body = nn.Sequential(
            *reduce,
            *(ResnetBlock(channels) for _ in range(blocks)),
            nn.Conv2d(channels, channels, 7, padding=3, padding_mode="reflect"),
            norm(channels),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 1, 7, padding=3, padding_mode="reflect"),
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
        fan_in = n if config.fusion == "concat" else 1
        top_c, top_s = config.channels(depth), config.top_size
        self.encoders = nn.ModuleList(Encoder(config) for _ in range(n))
        self.top_expert = TopExpert(fan_in * top_c * top_s * top_s, config.top_latent)
        self.top_decode = weight_norm(
            nn.Linear(config.top_latent, config.max_channels * top_s * top_s)
        )
        self.ups = nn.ModuleList(
            Upsample(config.state_channels(s + 1), config.channels(s)) for s in range(depth)
        )
        self.cells = nn.ModuleList(
            DecoderCell(config.channels(s), config.expand) for s in range(depth)
        )
        self.priors = nn.ModuleDict()
        self.experts = nn.ModuleDict()
        self.deterministic = nn.ModuleDict()
        for stage in range(depth):
            c, zc = config.channels(stage), config.latent_channels(stage)
            if config.stochastic(stage):
                self.priors[str(stage)] = GaussianHead(c, zc)
                self.experts[str(stage)] = PosteriorExpert(c + fan_in * c, c, zc)
            else:
                self.deterministic[str(stage)] = ConvStack(c, c, zc)
        self.heads = nn.ModuleList(
            OutputHead(config.latent_channels(0), config.head_channels, config.head_blocks)
            for _ in range(n)
        )

    def _fuse(self, experts: list[Gaussian], prior: Gaussian, observed: torch.Tensor) -> Gaussian:
        """The posterior at one level from the experts of the active modalities (and prior)."""
        fusion = self.config.fusion
        if fusion == "poe":
            ones = torch.ones_like(observed[:, :1])
            weights = torch.cat([ones, observed], dim=1).t()
            return product_of_experts([prior, *experts], weights, self.config.poe)
        if fusion == "average":
            return average_of_experts(experts, observed.t(), prior)
        return experts[0]

    def _experts(
        self,
        expert: nn.Module,
        skips: list[torch.Tensor],
        active: list[int],
        features: torch.Tensor | None = None,
    ) -> list[Gaussian]:
        """The shared expert on each active modality's skip, in one batched call.

        ``skips``: one map per modality (``None`` for inactive ones). With ``concat`` one
        expert sees every skip, zeros for the modalities not given.
        """
        batch = skips[active[0]].shape[0]
        if self.config.fusion == "concat":
            zeros = torch.zeros_like(skips[active[0]])
            inputs = torch.cat([zeros if s is None else s for s in skips], dim=1)
            if features is not None:
                inputs = torch.cat([features, inputs], dim=1)
            return [expert(inputs)]
        stacked = torch.cat([skips[m] for m in active], dim=0)
        if features is not None:
            stacked = torch.cat([features.repeat(len(active), 1, 1, 1), stacked], dim=1)
        fused = expert(stacked)
        means, log_stds = fused.mean.split(batch), fused.log_std.split(batch)
        return [Gaussian(mean, log_std) for mean, log_std in zip(means, log_stds, strict=True)]

    def _kl(self, posterior: Gaussian, prior: Gaussian, z: torch.Tensor, temperature: float):
        """The KL term of one level per sample (``kl``: sampled or analytic)."""
        if self.config.kl == "analytic":
            return kl_divergence(posterior, prior)
        if temperature > 0:
            posterior = Gaussian(
                posterior.mean,
                posterior.log_std
                + torch.log(torch.tensor(temperature, dtype=posterior.mean.dtype, device=z.device)),
            )
        return sampled_kl(posterior, prior, z)

    def output_mask(
        self, images: torch.Tensor, observed: torch.Tensor, fov: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Where the outputs are kept (elsewhere -1): per sample, batch x H x W, or None.

        ``first_input``: the first given modality (in ``modalities`` order) above -1;
        samples with no input keep everything. ``fov``: the field of view passed in.
        """
        if self.config.output_mask == "fov":
            return None if fov is None else fov.bool()
        first = observed.int().argmax(dim=1)
        first_images = images[torch.arange(images.shape[0], device=images.device), first]
        return (first_images > -1) | ~observed.any(dim=1)[:, None, None]

    def forward(
        self,
        images: torch.Tensor,
        observed: torch.Tensor,
        fov: torch.Tensor | None = None,
        temperature: float = 1.0,
        with_kl: bool = True,
    ) -> Synthesis:
        """Synthesise every modality from the observed ones.

        ``images``: batch x modalities x H x W in [-1, 1]; ``observed``: batch x modalities
        booleans, the inputs used (missing modalities must be False); ``fov``: batch x H x W,
        only for ``output_mask: fov``. ``with_kl=False`` (inference): no KL terms, chunks.
        """
        chunked = self._forward_in_chunks(images, observed, fov, temperature, with_kl)
        if chunked is not None:
            return chunked
        observed = observed.bool()
        config = self.config
        batch = images.shape[0]
        depth = config.downsamplings
        active = [m for m in range(len(config.modalities)) if bool(observed[:, m].any())]
        features: list[list[torch.Tensor] | None] = [None] * len(config.modalities)
        for m in active:
            features[m] = self.encoders[m](images[:, m : m + 1])

        def skips(stage: int) -> list[torch.Tensor | None]:
            return [None if f is None else f[stage] for f in features]

        zeros = images.new_zeros(batch, config.top_latent)
        prior = Gaussian(zeros, zeros)
        posterior = prior
        if active:
            experts = self._experts(self.top_expert, skips(depth), active)
            posterior = self._fuse(experts, prior, observed[:, active])
        z = posterior.sample(temperature)
        kl = [self._kl(posterior, prior, z, temperature)] if with_kl else []
        latents = [z]
        size = config.top_size
        x = self.top_decode(z).view(batch, config.max_channels, size, size)
        for stage in reversed(range(depth)):
            h = self.cells[stage](self.ups[stage](x))
            key = str(stage)
            if key in self.deterministic:
                x = self.deterministic[key](h)
                continue
            prior = Gaussian(*self.priors[key](h))
            posterior = prior
            if active:
                experts = self._experts(self.experts[key], skips(stage), active, features=h)
                posterior = self._fuse(experts, prior, observed[:, active])
            x = posterior.sample(temperature)
            if with_kl:
                kl.append(self._kl(posterior, prior, x, temperature))
            latents.append(x)
        outputs = torch.cat([head(x) for head in self.heads], dim=1)
        mask = self.output_mask(images, observed, fov)
        if mask is not None:
            outputs = torch.where(mask.unsqueeze(1), outputs, torch.full_like(outputs, -1.0))
        return Synthesis(outputs, kl, latents)

    def _forward_in_chunks(
        self,
        images: torch.Tensor,
        observed: torch.Tensor,
        fov: torch.Tensor | None,
        temperature: float,
        with_kl: bool,
    ) -> Synthesis | None:
        """Inference on the CPU in chunks of ``CPU_INFERENCE_PIXELS``.

        None where it does not apply: KL terms asked, gradients on, another device, or a
        batch that fits in one chunk. At T 0 each chunk's images equal the training
        forward's on that chunk; against one whole-batch forward they differ by float32
        rounding alone (the CPU's convolution kernels depend on the batch size: max |d|
        2.5e-5 at paper size, the same as the training forward's own spread).
        """
        chunk = cpu_inference_chunk(images.shape[-2], images.shape[-1])
        inference = not with_kl and not torch.is_grad_enabled() and images.device.type == "cpu"
        if not inference or images.shape[0] <= chunk:
            return None
        parts = [
            self(
                images[start : start + chunk],
                observed[start : start + chunk],
                None if fov is None else fov[start : start + chunk],
                temperature,
                with_kl=False,
            )
            for start in range(0, images.shape[0], chunk)
        ]
        latents = [torch.cat(level) for level in zip(*(p.latents for p in parts), strict=True)]
        return Synthesis(torch.cat([p.images for p in parts]), [], latents)

    def translate(
        self, images: dict[str, torch.Tensor], temperature: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """Every modality from any non-empty subset of them (public API).

        ``images``: keyed by modality name (``US``, ``T2``, ``ceT1``, ``FLAIR``; those of
        the model), each ``(B, 1, H, W)`` in [-1, 1] with background -1. Returns all the
        model's modalities, each ``(B, 1, H, W)``; the outputs are masked by the first
        given modality in the model's order, as the authors' code does. Wrap the call in
        ``torch.inference_mode()`` when no gradient is needed.
        """
        modalities = self.config.modalities
        unknown = [name for name in images if name not in modalities]
        if unknown or not images:
            raise ValueError(
                f"translate: expected a non-empty subset of {list(modalities)}, got {list(images)}"
            )
        reference = next(iter(images.values()))
        if reference.dim() != 4 or reference.shape[1] != 1:
            raise ValueError(
                f"translate: images must be (B, 1, H, W), got {tuple(reference.shape)}"
            )
        batch, _, height, width = reference.shape
        stacked = reference.new_full((batch, len(modalities), height, width), -1.0)
        observed = torch.zeros(batch, len(modalities), dtype=torch.bool, device=reference.device)
        for name, image in images.items():
            index = modalities.index(name)
            stacked[:, index] = image[:, 0]
            observed[:, index] = True
        result = self(stacked, observed, temperature=temperature, with_kl=False).images
        return {name: result[:, i : i + 1] for i, name in enumerate(modalities)}


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per top-level part of a module (and the total)."""
    counts: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        part = name.split(".")[0]
        counts[part] = counts.get(part, 0) + parameter.numel()
    counts["total"] = sum(counts.values())
    return counts
