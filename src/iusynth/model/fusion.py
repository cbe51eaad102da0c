"""Gaussian experts and how they are fused: product, average; and their KL divergence.

The product of experts includes the prior at every level, so a subset with no observed
modality falls back to the prior. Two weightings of the experts are offered:

- ``authors`` (default): each expert weighs 1 / sigma and the fused scale is
  1 / sum(1 / sigma), as in the authors' MMHVAE (their published weights use it);
- ``textbook``: precisions 1 / sigma^2, the exact product of Gaussian densities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from iusynth.model.config import POE_WEIGHTINGS


@dataclass
class Gaussian:
    """A diagonal Gaussian given by its mean and log standard deviation (same shapes)."""

    mean: torch.Tensor
    log_std: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        """Standard deviation."""
        return self.log_std.exp()

    def sample(self, temperature: float = 1.0) -> torch.Tensor:
        """A reparameterised sample with the std scaled by ``temperature`` (0: the mean).

        One standard normal draw shaped like the mean (the authors' draw order).
        """
        if temperature == 0:
            return self.mean
        return self.mean + (temperature * self.std) * torch.randn_like(self.mean)

    def log_density(self, value: torch.Tensor) -> torch.Tensor:
        """Elementwise log-density of ``value``."""
        z = (value - self.mean) * torch.exp(-self.log_std)
        return -0.5 * z * z - self.log_std - 0.5 * math.log(2 * math.pi)


def product_of_experts(
    experts: list[Gaussian], weights: torch.Tensor | None = None, weighting: str = "authors"
) -> Gaussian:
    """The product of Gaussian experts, some of them masked out (see the module docstring).

    ``weights`` (experts x batch, 0 or 1) switches experts off per sample; an expert with
    weight 0 contributes nothing.
    """
    if weighting not in POE_WEIGHTINGS:
        raise ValueError(f"poe must be one of {POE_WEIGHTINGS}, not {weighting!r}")
    scale = 1.0 if weighting == "authors" else 2.0
    precisions = torch.stack([torch.exp(-scale * e.log_std) for e in experts])
    means = torch.stack([e.mean for e in experts])
    if weights is not None:
        shape = weights.shape + (1,) * (means.dim() - 2)
        precisions = precisions * weights.reshape(shape).to(precisions.dtype)
    total = precisions.sum(dim=0)
    mean = (precisions * means).sum(dim=0) / total
    return Gaussian(mean, -torch.log(total) / scale)


def average_of_experts(
    experts: list[Gaussian], weights: torch.Tensor, fallback: Gaussian
) -> Gaussian:
    """The mean of the observed experts' means and standard deviations (ablation fusion).

    Samples with no observed expert get ``fallback`` (the prior).
    """
    means = torch.stack([e.mean for e in experts])
    stds = torch.stack([e.std for e in experts])
    shape = weights.shape + (1,) * (means.dim() - 2)
    w = weights.reshape(shape).to(means.dtype)
    count = w.sum(dim=0)
    safe = count.clamp(min=1.0)
    mean = (w * means).sum(dim=0) / safe
    std = (w * stds).sum(dim=0) / safe
    none = count == 0
    mean = torch.where(none, fallback.mean, mean)
    log_std = torch.where(none, fallback.log_std, torch.log(std.clamp(min=1e-8)))
    return Gaussian(mean, log_std)


def kl_divergence(q: Gaussian, p: Gaussian) -> torch.Tensor:
    """Closed-form KL(q || p) per sample, summed over every latent dimension."""
    var_ratio = torch.exp(2.0 * (q.log_std - p.log_std))
    squared = ((q.mean - p.mean) / p.std) ** 2
    kl = 0.5 * (var_ratio + squared - 1.0) - (q.log_std - p.log_std)
    return kl.flatten(1).sum(dim=1)


def sampled_kl(q: Gaussian, p: Gaussian, z: torch.Tensor) -> torch.Tensor:
    """Single-sample estimate log q(z) - log p(z) per sample (the authors' KL term)."""
    return (q.log_density(z) - p.log_density(z)).flatten(1).sum(dim=1)
