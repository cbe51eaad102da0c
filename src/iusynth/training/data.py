"""Training batches: contiguous slices of one volume, the authors' window and flip."""

from __future__ import annotations

from dataclasses import dataclass

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
