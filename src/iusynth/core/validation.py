"""Checks at the door: a cohort's manifest against its folders, before any job runs.

:func:`iusynth.cohorts.registry.resolve_cohorts` (called by ``workflow/rules/common.smk``
while the DAG is built) runs :func:`check_cohort_files` on every cohort that already
exists on disk (a local cohort). It is cheap: one listing per subject folder, no image is
opened. The manifest is what the workflow plans from (which subjects have iUS, which MR
sequences exist), and the subject folders are what the jobs read, so the two must agree:
a sequence listed but missing would otherwise silently change the reference MR, and a
file present but not listed would be used by some stages and ignored by others.

Only stdlib is imported: the Snakefile imports this module through the registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from iusynth.core import layout


class CohortMismatch(ValueError):
    """A cohort's ``subjects.tsv`` disagrees with its subject folders."""


def _listed_files(folder: Path) -> set[str]:
    """The names of the plain files of a folder (one listing)."""
    with os.scandir(folder) as entries:
        return {entry.name for entry in entries if entry.is_file()}


def check_cohort_files(manifest: Path, entries: Iterable[layout.SubjectEntry]) -> None:
    """Refuse a manifest that disagrees with the subject folders beside it.

    Every listed subject must have a folder; every file kind marked 1 must be there; and
    no file kind marked 0 may be there. Raises :class:`CohortMismatch` naming the
    manifest, the line's subject, the file and the fix.
    """
    manifest = Path(manifest)
    root = manifest.parent
    for entry in entries:
        folder = root / entry.subject
        if not folder.is_dir():
            raise CohortMismatch(
                f"cohort manifest {manifest} lists subject {entry.subject}, but its folder "
                f"{folder} does not exist: add the folder, or delete the subject's row"
            )
        present = _listed_files(folder)
        for kind in layout.FILE_KINDS:
            path = layout.subject_file(folder, entry.subject, kind)
            if entry.has(kind) and path.name not in present:
                raise CohortMismatch(
                    f"cohort manifest {manifest} lists {kind} for subject {entry.subject} "
                    f"(column {kind} is 1), but {path} is missing: restore the file, or set "
                    "the column to 0 (no other sequence is used in its place silently)"
                )
            if not entry.has(kind) and path.name in present:
                raise CohortMismatch(
                    f"cohort manifest {manifest} says subject {entry.subject} has no {kind} "
                    f"(column {kind} is 0), but {path} exists: set the column to 1, or move "
                    "the file out of the cohort folder"
                )
