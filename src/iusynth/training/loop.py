"""The training loop every trainer shares: resume, epochs, checkpoints, the final model.

A trainer (MMHVAE's :class:`iusynth.training.mmhvae.Trainer`, the GAN baselines'
:class:`iusynth.training.baselines.TranslatorTrainer`) follows :class:`EpochTrainer`;
:func:`fit` runs any of them to its last epoch.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from iusynth.core.fileio import atomic_path, load_torch

log = logging.getLogger(__name__)
# The rules whose runs write (and resume from) a checkpoint.pt
TRAINING_RULES = "its training rule (train_model or train_baseline; training restarts from epoch 0)"


class EpochTrainer(Protocol):
    """What :func:`fit` needs of a trainer."""

    device: torch.device
    epoch: int  # epochs completed
    history: list[dict[str, Any]]  # one row per completed epoch
    columns: tuple[str, ...]  # the loss CSV's columns

    @property
    def epochs(self) -> int:
        """The epochs of the whole schedule."""
        ...

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch; its row of the history (with a ``loss``)."""
        ...

    def checkpoint_due(self) -> bool:
        """Whether a checkpoint is written after this epoch."""
        ...

    def save_checkpoint(self, path: Path) -> None:
        """Everything needed to resume bit-identically, atomically."""
        ...

    def load_state(self, state: dict[str, Any]) -> None:
        """Resume from a checkpoint (ValueError when it belongs to other settings)."""
        ...

    def final_state(self) -> dict[str, Any]:
        """The finished model's file content."""
        ...


def select_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU; or the device named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def write_history(path: Path, history: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """The loss curves as CSV, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def fit(
    make_trainer: Callable[[], EpochTrainer],
    output: Path,
    checkpoint: Path,
    losses: Path,
    stop_after: int | None = None,
) -> EpochTrainer:
    """Run a trainer to its last epoch, resuming from ``checkpoint``; write model and curves.

    ``make_trainer`` builds an :class:`EpochTrainer` (MMHVAE's or a GAN baseline's).
    ``stop_after`` ends the run after that many epochs (a simulated kill, for tests).
    """
    from tqdm import tqdm

    trainer = make_trainer()
    if Path(checkpoint).is_file():
        state = load_torch(checkpoint, TRAINING_RULES, map_location=trainer.device)
        try:
            trainer.load_state(state)
            log.info("resumed from %s at epoch %d", checkpoint, trainer.epoch)
        except ValueError as error:
            log.warning("%s: %s; training from scratch (it will be overwritten)", checkpoint, error)
            trainer = make_trainer()
    log.info("training on %s", trainer.device)
    progress = tqdm(
        total=trainer.epochs, initial=trainer.epoch, desc="epochs", unit="epoch", mininterval=5.0
    )
    with progress:
        while trainer.epoch < trainer.epochs:
            if stop_after is not None and trainer.epoch >= stop_after:
                return trainer
            row = trainer.run_epoch()
            progress.update(1)
            progress.set_postfix(loss=f"{row['loss']:.4f}")
            if trainer.checkpoint_due():
                trainer.save_checkpoint(checkpoint)
                write_history(losses, trainer.history, trainer.columns)
    with atomic_path(output) as tmp:
        torch.save(trainer.final_state(), tmp)
    write_history(losses, trainer.history, trainer.columns)
    return trainer
