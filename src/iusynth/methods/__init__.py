"""The synthesis methods the workflow trains and compares, found by name.

Two kinds:

- the MMHVAE family: MMHVAE, MHVAE, their ablations and the VAE baselines (MVAE, MoPoE)
  are variants of one model (:class:`iusynth.model.network.MMHVAE`), each a named entry of
  ``models.variants`` in the config; a new one is a config entry;
- the GAN baselines: a :class:`~iusynth.methods.base.TranslatorMethod` subclass each, in
  its own module here, listed once in :data:`TRANSLATORS`. Everything else (the rules,
  the trainer, the synthesiser, the config checks, the methods text) iterates this.

See docs/extending.md for adding one.
"""

from __future__ import annotations

from iusynth.methods.base import TranslatorMethod
from iusynth.methods.mmgan import MMGAN
from iusynth.methods.pix2pix import Pix2Pix

TRANSLATORS: dict[str, TranslatorMethod] = {method.name: method for method in (Pix2Pix(), MMGAN())}
GAN_BASELINES: tuple[str, ...] = tuple(TRANSLATORS)


def translator_method(name: str) -> TranslatorMethod:
    """The GAN baseline called ``name``, or a clear error listing the known ones."""
    try:
        return TRANSLATORS[name]
    except KeyError:
        raise ValueError(
            f"{name!r} is not a GAN baseline; the registered ones: {list(TRANSLATORS)} "
            "(iusynth.methods)"
        ) from None


__all__ = ["GAN_BASELINES", "TRANSLATORS", "TranslatorMethod", "translator_method"]
