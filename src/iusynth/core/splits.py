"""Seeded subject splits: k folds of train/validation over the paired cohort, and a test cohort."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any


def kfold(subjects: list[str], folds: int, seed: int) -> list[dict[str, list[str]]]:
    """Split subjects into ``folds`` folds; fold i validates on part i and trains on the rest."""
    repeated = sorted(s for s, n in Counter(subjects).items() if n > 1)
    if repeated:
        raise ValueError(
            f"subjects {repeated} are listed more than once: a repeated subject would be in "
            "both training and validation; remove the duplicated rows of the cohort's "
            "subjects.tsv"
        )
    if folds < 2:
        raise ValueError(f"at least 2 folds are needed, not {folds}")
    if folds > len(subjects):
        raise ValueError(
            f"{folds} folds need at least {folds} subjects, but only {len(subjects)} are given"
        )
    shuffled = sorted(subjects)
    random.Random(seed).shuffle(shuffled)
    parts = [sorted(shuffled[i::folds]) for i in range(folds)]
    return [
        {
            "train": sorted(s for j, part in enumerate(parts) if j != i for s in part),
            "val": parts[i],
        }
        for i in range(folds)
    ]


def make_splits(
    trainval_cohort: str,
    trainval: list[str],
    test_cohort: str,
    test: list[str],
    folds: int,
    seed: int,
) -> dict[str, Any]:
    """The JSON-ready split description used by training and evaluation."""
    return {
        "seed": seed,
        "trainval_cohort": trainval_cohort,
        "test_cohort": test_cohort,
        "folds": kfold(trainval, folds, seed),
        "test": sorted(test),
    }
