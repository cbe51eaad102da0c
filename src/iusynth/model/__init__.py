"""MMHVAE: a multi-modal hierarchical VAE for MRI <-> iUS synthesis (and its relatives).

- :mod:`~iusynth.model.cells`: the building blocks (residual, NVAE and ResNet cells).
- :mod:`~iusynth.model.fusion`: Gaussian experts, their product, average and KL.
- :mod:`~iusynth.model.network`: encoders, the shared top-down decoder, heads.
- :mod:`~iusynth.model.discriminator`: per-modality PatchGAN discriminators.

The names users rely on are importable from here, loaded on first use (importing
:mod:`iusynth.model.config` alone, as the workflow does, must not import torch):
``MMHVAE``, ``ModelConfig``, ``load_authors_checkpoint``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_PUBLIC = {
    "MMHVAE": "iusynth.model.network",
    "ModelConfig": "iusynth.model.config",
    "load_authors_checkpoint": "iusynth.model.authors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """The public names, imported when first asked for (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'iusynth.model' has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name]), name)
