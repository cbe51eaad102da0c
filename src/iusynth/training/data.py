"""Training batches: contiguous slices of one volume, the authors' window and flip."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from iusynth.preprocessing.slices import SliceStack


@dataclass
class Batch:
    """Slices of one volume: images (B x M x H x W), fov (B x H x W), present (M,).

    ``present``: acquired, and not all background in these slices.
    """

    images: torch.Tensor
    fov: torch.Tensor
    present: torch.Tensor


class SliceSampler:
    """Batches of contiguous slices from the training volumes, seeded."""

    def __init__(
        self, stacks: list[SliceStack], modalities: tuple[str, ...], batch_slices: int
    ) -> None:
        if not stacks:
            raise ValueError("no training volume: the split's train list is empty")
        self.stacks = stacks
        self.batch_slices = batch_slices
        self.channels = [
            [stack.meta["modalities"].index(m) for m in modalities] for stack in stacks
        ]

    def batch(
        self, index: int, rng: np.random.Generator, flip: bool = True, start: int | None = None
    ) -> Batch:
        """One batch from volume ``index`` (random window and flip unless given).

        The window starts in [0, slices - size - 1), the authors' draw; the flip reverses
        the rows (the volume's first array axis).
        """
        stack = self.stacks[index]
        count = stack.images.shape[0]
        size = min(self.batch_slices, count)
        if start is None:
            start = int(rng.integers(0, max(count - size - 1, 1)))
        channels = self.channels[index]
        images = np.asarray(stack.images[start : start + size][:, channels], dtype=np.float32)
        fov = np.array(stack.fov[start : start + size], dtype=bool)
        if flip and rng.random() < 0.5:
            images, fov = images[..., ::-1, :], fov[..., ::-1, :]
        present = stack.present[channels] & (images > -1).any(axis=(0, 2, 3))
        return Batch(
            torch.from_numpy(np.ascontiguousarray(images)),
            torch.from_numpy(np.ascontiguousarray(fov)),
            torch.from_numpy(present.copy()),
        )


def _array_digest(digest: Any, array: np.ndarray) -> None:
    """Feed an array's dtype, shape and bytes to a hash, in chunks (memory maps stay small)."""
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    rows = array.reshape(len(array), -1) if array.ndim else array.reshape(1, -1)
    step = max(1, (64 << 20) // max(rows[:1].nbytes, 1))
    for start in range(0, len(rows), step):
        digest.update(np.ascontiguousarray(rows[start : start + step]).data)


def stack_digest(stack: SliceStack) -> str:
    """SHA-256 of what training reads of a slice stack: images, field of view, metadata."""
    digest = hashlib.sha256()
    digest.update(json.dumps(stack.meta, sort_keys=True, default=str).encode())
    _array_digest(digest, np.asarray(stack.images))
    _array_digest(digest, np.asarray(stack.fov))
    return digest.hexdigest()


def training_digest(
    settings: dict[str, Any], train_stacks: list[SliceStack], val_stacks: list[SliceStack]
) -> str:
    """SHA-256 of everything that decides a training run's result.

    The settings (JSON), the training and validation subjects in order, and each stack's
    content (:func:`stack_digest`). A checkpoint records it; one of another digest is not
    resumed (:func:`iusynth.training.loop.fit`).
    """
    record = {
        "settings": settings,
        "train": [[s.meta.get("subject"), stack_digest(s)] for s in train_stacks],
        "val": [[s.meta.get("subject"), stack_digest(s)] for s in val_stacks],
    }
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
