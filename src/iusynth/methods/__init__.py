"""The synthesis methods the workflow trains and compares, found by name.

Two kinds:

- the MMHVAE family: MMHVAE, MHVAE, their ablations and the VAE baselines (MVAE, MoPoE)
  are variants of one model (:class:`iusynth.model.network.MMHVAE`), each a named entry of
  ``models.variants`` in the config; a new one is a config entry;
- the GAN baselines: a :class:`~iusynth.methods.base.TranslatorMethod` subclass each, in
  its own module here, found by :func:`_discovered` (every module of this package is
  searched for the subclasses it defines, as nnU-Net finds its trainers) into
  :data:`TRANSLATORS`. Everything else (the rules, the trainer, the synthesiser, the
  config checks, the methods text) iterates this.

See docs/extending.md for adding one.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from iusynth.methods.base import TranslatorMethod


def _discovered() -> dict[str, TranslatorMethod]:
    """Every concrete TranslatorMethod defined in a module of this package, by name.

    In module name order; a name claimed twice is an error naming both classes.
    """
    found: dict[str, TranslatorMethod] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for cls in vars(module).values():
            if not (
                inspect.isclass(cls)
                and issubclass(cls, TranslatorMethod)
                and cls.__module__ == module.__name__
                and not inspect.isabstract(cls)
            ):
                continue
            if cls.name in found:
                raise TypeError(
                    f"GAN baseline name {cls.name!r} is claimed by {type(found[cls.name])} "
                    f"and {cls}: rename one"
                )
            found[cls.name] = cls()
    return found


TRANSLATORS: dict[str, TranslatorMethod] = _discovered()
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
