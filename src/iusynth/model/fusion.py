"""Gaussian experts and how they are fused: product, average; and their KL divergence.

The product of experts uses the textbook precisions 1 / sigma^2 (the authors' code
weights by 1 / sigma); the prior takes part in the product at every level, so a subset
with no observed modality falls back to the prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
        """A reparameterised sample with the std scaled by ``temperature`` (0: the mean)."""
        if temperature == 0:
            return self.mean
        return self.mean + temperature * self.std * torch.randn_like(self.mean)


def product_of_experts(experts: list[Gaussian], weights: torch.Tensor | None = None) -> Gaussian:
    """The product of Gaussian experts (precision-weighted), some of them masked out.

    ``weights`` (experts x batch, 0 or 1) switches experts off per sample; an expert with
    weight 0 contributes nothing. The fused precision is the sum of the precisions.
    """
    precisions = torch.stack([torch.exp(-2.0 * e.log_std) for e in experts])
    means = torch.stack([e.mean for e in experts])
    if weights is not None:
        shape = weights.shape + (1,) * (means.dim() - 2)
        precisions = precisions * weights.reshape(shape).to(precisions.dtype)
    total = precisions.sum(dim=0)
    mean = (precisions * means).sum(dim=0) / total
    return Gaussian(mean, -0.5 * torch.log(total))


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
    """KL(q || p) per sample, summed over every latent dimension."""
    var_ratio = torch.exp(2.0 * (q.log_std - p.log_std))
    squared = ((q.mean - p.mean) / p.std) ** 2
    kl = 0.5 * (var_ratio + squared - 1.0) - (q.log_std - p.log_std)
    return kl.flatten(1).sum(dim=1)
