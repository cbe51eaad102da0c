"""The segmentation network of Table 4, behind one small protocol.

A :class:`Segmenter` trains k folds on 2D iUS planes and ensembles them on new planes. It
owns everything under the folder the workflow gives it per method (datasets, plans,
models); the workflow only sees that folder's ``data`` sub-folder (made by
:meth:`Segmenter.prepare`), the splits file and one record per trained fold. nnU-Net v2
is the one adapter today (:mod:`iusynth.experiments.segmentation.nnunet`); another network
is a class with these four methods, registered in :data:`SEGMENTERS` and named by
``segmentation.network`` (see ``docs/extending.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from iusynth.experiments.segmentation.planes import SubjectPlanes

# segmentation.network -> (module, class); imported only when used (they import torch)
SEGMENTERS = {"nnunet": ("iusynth.experiments.segmentation.nnunet", "NnunetSegmenter")}
DATA = "data"  # the sub-folder prepare() makes: the workflow's handle on it


class Segmenter(Protocol):
    """A 2D segmentation network trained k-fold, then ensembled."""

    def prepare(self, folder: Path, training: Iterable[SubjectPlanes]) -> None:
        """Make ``folder/data`` from the training planes (export, planning, preprocessing)."""

    def write_splits(self, folder: Path, output: Path) -> None:
        """Write the folds (grouped by subject) to ``output``, once, before any fold trains."""

    def train(self, folder: Path, fold: int, splits: Path) -> Path:
        """Train one fold; return the file of its trained weights."""

    def predict(
        self, folder: Path, folds: Sequence[int], subjects: Iterable[SubjectPlanes]
    ) -> dict[str, np.ndarray]:
        """The ensemble of ``folds`` on each subject's planes: {subject: (n, H, W) masks}."""


def segmenter_for(network: str, settings: Any) -> Segmenter:
    """The segmenter ``network`` (``segmentation.network``) with its settings."""
    if network not in SEGMENTERS:
        raise ValueError(f"segmentation.network {network!r}: expected one of {sorted(SEGMENTERS)}")
    module, name = SEGMENTERS[network]
    return getattr(importlib.import_module(module), name)(settings)
