"""The training loop every trainer shares: resume, epochs, checkpoints, the final model.

A trainer (MMHVAE's :class:`iusynth.training.mmhvae.Trainer`, the GAN baselines'
:class:`iusynth.training.baselines.TranslatorTrainer`) follows :class:`EpochTrainer`;
:func:`fit` runs any of them to its last epoch.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from iusynth.core.fileio import atomic_path, remove_stale_parts, set_aside
from iusynth.core.processes import exclusive_lock

log = logging.getLogger(__name__)


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

    def state(self) -> dict[str, Any]:
        """Everything needed to resume bit-identically (a checkpoint's content)."""
        ...

    def load_state(self, state: dict[str, Any]) -> None:
        """Resume from a checkpoint (ValueError when it belongs to other settings)."""
        ...

    def final_state(self) -> dict[str, Any]:
        """The finished model's file content."""
        ...


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
    try:
        state = torch.load(checkpoint, map_location=trainer.device, weights_only=False)
    except Exception as error:  # torch raises many types for a truncated or foreign file
        set_aside(checkpoint, "unreadable", f"is not a readable checkpoint ({error})")
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
