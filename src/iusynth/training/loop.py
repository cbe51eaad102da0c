"""The training loop every trainer shares: resume, epochs, checkpoints, the final model.

A trainer (MMHVAE's :class:`iusynth.training.mmhvae.Trainer`, the GAN baselines'
:class:`iusynth.training.baselines.TranslatorTrainer`) subclasses :class:`EpochTrainer`,
which owns seeding, checkpoint content and the random states; :func:`fit` runs any of them
to its last epoch.

A checkpoint is bound to its data: it records the digest of everything that decides the
result (:func:`iusynth.training.data.training_digest`: settings, subjects in order, the
content of their slice stacks). One of another digest (another split, re-exported slices,
other settings), or one that cannot be read, is never resumed: it is renamed
``<name>.stale-<digest>.pt`` beside it (kept, not deleted) and training starts afresh.
One trainer at a time works on a checkpoint (a lock file beside it).
"""

from __future__ import annotations

import csv
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from iusynth.core.fileio import atomic_path, remove_stale_parts, set_aside
from iusynth.core.processes import exclusive_lock
from iusynth.core.torch_io import load_checkpoint_or_set_aside

log = logging.getLogger(__name__)


class Stateful(Protocol):
    """A part of a trainer saved in its checkpoint: a module, optimiser or scheduler."""

    def state_dict(self) -> dict[str, Any]:
        """The part's state."""
        ...

    def load_state_dict(self, state_dict: dict[str, Any], /) -> Any:
        """Restore a :meth:`state_dict`."""
        ...


class EpochTrainer(ABC):
    """The base of every trainer :func:`fit` runs: seeds, epochs, checkpoints, random states.

    A subclass builds its networks, optimisers and data after ``super().__init__`` (which
    seeds torch, :attr:`rng` and :attr:`python_rng` from ``training.seed`` and picks the
    device), names what its checkpoint saves in :meth:`parts` and its generator
    ``self.model``, and trains one epoch in :meth:`run_epoch`. Checkpoint and model file
    contents, and the check that a checkpoint was written with the same configs, are
    the base's: every trainer saves and restores the torch, CUDA, NumPy and Python random
    states, so a resumed run ends with the weights of an uninterrupted one on any device.
    """

    columns: tuple[str, ...]  # the loss CSV's columns
    model: torch.nn.Module  # the generator a model file holds

    def __init__(self, configs: dict[str, Any], training: Any) -> None:
        """Seed, pick the device and start at epoch 0.

        ``configs``: the dataclasses a checkpoint must match, by key; ``training`` holds
        ``device``, ``seed``, ``epochs`` and ``checkpoint_every``.
        """
        self.configs = configs
        self.training = training
        self.device = select_device(training.device)
        torch.manual_seed(training.seed)
        self.rng = np.random.default_rng(training.seed)
        self.python_rng = random.Random(training.seed)
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []  # one row per completed epoch

    @abstractmethod
    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch, advance :attr:`epoch`; its row of the history (with a ``loss``)."""

    @abstractmethod
    def parts(self) -> dict[str, Stateful | list[Stateful]]:
        """What a checkpoint saves, by key: networks, optimisers, schedulers (in load order)."""

    @property
    def epochs(self) -> int:
        """The epochs of the whole schedule."""
        return int(self.training.epochs)

    def checkpoint_due(self) -> bool:
        """Whether the epoch just finished ends with a checkpoint (and a validation)."""
        return self.epoch % self.training.checkpoint_every == 0 or self.epoch == self.epochs

    def _config_state(self) -> dict[str, Any]:
        return {name: asdict(config) for name, config in self.configs.items()}

    def random_states(self) -> dict[str, Any]:
        """The torch, CUDA (every device), NumPy and Python random states."""
        return {
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy_rng": self.rng.bit_generator.state,
            "python_rng": self.python_rng.getstate(),
        }

    def restore_random_states(self, state: dict[str, Any]) -> None:
        """Restore :meth:`random_states` (the CUDA ones where CUDA is present)."""
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.python_rng.setstate(state["python_rng"])

    def state(self) -> dict[str, Any]:
        """Everything needed to resume bit-identically (a checkpoint's content)."""
        parts = {
            name: [p.state_dict() for p in part] if isinstance(part, list) else part.state_dict()
            for name, part in self.parts().items()
        }
        return {
            **self._config_state(),
            "epoch": self.epoch,
            **parts,
            **self.random_states(),
            "history": self.history,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Resume from a :meth:`state` (ValueError when it was written with other configs)."""
        for name, config in self._config_state().items():
            if state.get(name) != config:
                raise ValueError(f"the checkpoint was written with another {name}")
        self.epoch = state["epoch"]
        for name, part in self.parts().items():
            if isinstance(part, list):
                for item, saved in zip(part, state[name], strict=True):
                    item.load_state_dict(saved)
            else:
                part.load_state_dict(state[name])
        self.restore_random_states(state)
        self.history = state["history"]

    def final_state(self) -> dict[str, Any]:
        """The finished model's file content: the configs and the generator's weights."""
        return {**self._config_state(), "epochs": self.epoch, "model": self.model.state_dict()}


def select_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU; or the device named.

    On CUDA, cuDNN is made deterministic (no autotuning), as the authors' training and
    inference scripts set it (MONAI's ``set_determinism``).
    """
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    )
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return device


def write_history(path: Path, history: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """The loss curves as CSV, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def resume(trainer: EpochTrainer, checkpoint: Path, digest: str) -> bool:
    """Load ``checkpoint`` into ``trainer`` if it was written for ``digest``.

    Otherwise (other data or settings, unreadable) the checkpoint is set aside
    (:func:`set_aside`) and False returned: the caller trains a fresh trainer.
    """
    state = load_checkpoint_or_set_aside(checkpoint, "this training", map_location=trainer.device)
    if state is None:
        return False
    recorded = state.get("digest") if isinstance(state, dict) else None
    if recorded != digest:
        label = str(recorded)[:12] if recorded else "undigested"
        why = (
            f"was trained on other data or settings (digest {label}, this run {digest[:12]})"
            if recorded
            else "records no data digest (written before checkpoints were bound to data)"
        )
        set_aside(checkpoint, label, why)
        return False
    try:
        trainer.load_state(state)
    except (ValueError, KeyError) as error:
        set_aside(checkpoint, digest[:12], f"does not fit this trainer ({error})")
        return False
    log.info("resumed from %s at epoch %d (digest %s)", checkpoint, trainer.epoch, digest[:12])
    return True


def fit(
    make_trainer: Callable[[], EpochTrainer],
    output: Path,
    checkpoint: Path,
    losses: Path,
    digest: str,
    stop_after: int | None = None,
) -> EpochTrainer:
    """Run a trainer to its last epoch, resuming from ``checkpoint``; write model and curves.

    ``make_trainer`` builds an :class:`EpochTrainer` (MMHVAE's or a GAN baseline's);
    ``digest`` identifies its data and settings (:func:`training_digest`): only a
    checkpoint of that digest is resumed (:func:`resume`). Holds the checkpoint's lock
    throughout, and first removes temporary files a killed write left beside the outputs.
    ``stop_after`` ends the run after that many epochs (a simulated kill, for tests).
    """
    from tqdm import tqdm

    checkpoint, output, losses = Path(checkpoint), Path(output), Path(losses)
    with exclusive_lock(checkpoint, "checkpoint"):
        for path in (checkpoint, output, losses):
            for part in remove_stale_parts(path):
                log.warning("removed %s, left by a write that was killed", part)
        trainer = make_trainer()
        if checkpoint.is_file() and not resume(trainer, checkpoint, digest):
            trainer = make_trainer()
        log.info("training on %s", trainer.device)
        progress = tqdm(
            total=trainer.epochs,
            initial=trainer.epoch,
            desc="epochs",
            unit="epoch",
            mininterval=5.0,
        )
        with progress:
            while trainer.epoch < trainer.epochs:
                if stop_after is not None and trainer.epoch >= stop_after:
                    return trainer
                row = trainer.run_epoch()
                progress.update(1)
                progress.set_postfix(loss=f"{row['loss']:.4f}")
                if trainer.checkpoint_due():
                    with atomic_path(checkpoint) as tmp:
                        torch.save({**trainer.state(), "digest": digest}, tmp)
                    write_history(losses, trainer.history, trainer.columns)
        with atomic_path(output) as tmp:
            torch.save({**trainer.final_state(), "digest": digest}, tmp)
        write_history(losses, trainer.history, trainer.columns)
    return trainer
