"""The folds of the paired train/validation cohort, and its test cohort.

Each fold has three lists: ``train`` (the synthesis models learn from it), ``val``
(monitored while training) and ``test`` (held out and scored). Two sources:

- ``seeded`` (ours): k seeded folds; fold i holds out part i, which is both its
  validation and its test list;
- ``authors``: the MMHVAE authors' 3 folds of ReMIND (70 training / 1 validation / 33
  test), restricted to the cohort's subjects (:mod:`iusynth.cohorts.datasets.authors`).

Standard library only: the Snakefile computes the evaluated subjects with it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

SOURCES = ("seeded", "authors")
AUTHORS_FOLD_COUNT = 3  # their splits/split_empty_{0,1,2}.csv


def kfold(subjects: list[str], folds: int, seed: int) -> list[dict[str, list[str]]]:
    """Split subjects into ``folds`` folds; fold i holds out part i (``val`` = ``test``)."""
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
            "test": parts[i],
        }
        for i in range(folds)
    ]


def authors_folds(subjects: list[str]) -> list[dict[str, list[str]]]:
    """The authors' 3 folds of ReMIND, restricted to ``subjects`` (IDC ``ReMIND-NNN`` ids).

    A subject their folds do not list stops the split, naming it.
    """
    from iusynth.cohorts.datasets.authors import load_release

    release = load_release()
    chosen = set(subjects)
    unknown = sorted(chosen - set(release.cases))
    if unknown:
        raise ValueError(
            f"preprocessing.splits.source 'authors': {unknown[:5]} are not cases of the "
            f"authors' ReMIND folds ({release.root / 'splits'}); use source: seeded for "
            "other subjects"
        )
    return [
        {
            part: sorted(s for s in getattr(fold, part) if s in chosen)
            for part in ("train", "val", "test")
        }
        for fold in release.folds
    ]


def fold_lists(
    source: str, subjects: list[str], folds: int, seed: int
) -> list[dict[str, list[str]]]:
    """The folds of ``subjects`` from one source (``seeded``: ``folds`` and ``seed`` apply)."""
    if source == "authors":
        return authors_folds(subjects)
    if source == "seeded":
        return kfold(subjects, folds, seed)
    raise ValueError(f"preprocessing.splits.source must be one of {SOURCES}, not {source!r}")


def make_splits(
    trainval_cohort: str,
    trainval: list[str],
    test_cohort: str,
    test: list[str],
    source: str,
    folds: int,
    seed: int,
) -> dict[str, Any]:
    """The JSON-ready split description used by training and evaluation."""
    return {
        "source": source,
        "seed": seed,
        "trainval_cohort": trainval_cohort,
        "test_cohort": test_cohort,
        "folds": fold_lists(source, trainval, folds, seed),
        "test": sorted(test),
    }


def split_source(config: Mapping[str, Any]) -> str:
    """Where the folds come from: ``preprocessing.splits.source``, ``auto`` resolved.

    ``auto`` is ``authors`` when the train/validation cohort is the real ReMIND (source
    dataset), else ``seeded``.
    """
    source = config["preprocessing"]["splits"]["source"]
    if source != "auto":
        return source
    row = config["cohorts"].get(config["preprocessing"]["trainval_cohort"], {})  # unknown:
    real_remind = row.get("dataset") == "remind" and row.get("source") == "dataset"  # named later
    return "authors" if real_remind else "seeded"


def fold_count(config: Mapping[str, Any]) -> int:
    """How many folds the split has (the authors': 3; seeded: ``preprocessing.splits.folds``)."""
    if split_source(config) == "authors":
        return AUTHORS_FOLD_COUNT
    return int(config["preprocessing"]["splits"]["folds"])


def trained_folds(config: Mapping[str, Any]) -> tuple[int, ...]:
    """The folds whose models are trained: all with cross-validation, else ``models.fold``.

    ``models.cross_validation: auto`` is true with the authors' folds.
    """
    chosen = config["models"]["cross_validation"]
    if chosen == "auto":
        chosen = split_source(config) == "authors"
    return tuple(range(fold_count(config))) if chosen else (int(config["models"]["fold"]),)
