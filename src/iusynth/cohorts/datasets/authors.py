"""The MMHVAE authors' ReMIND preparation: their registrations, reference MRs, targets, folds.

Their repository (ReubenDo/MMHVAE at 31a988e, MIT) publishes how they prepared ReMIND;
the files are shipped unchanged in ``resources/authors_mmhvae/`` (with their licence) and
parsed whole here:

- ``refs_files.csv``: 103 cases (``CaseNNN``, IDC's ``ReMIND-NNN``), each with its pre-dura
  iUS and its *reference MR*, by file name of ReMIND's NRRD release
  (``CaseNNN-preop-MR-<series description>[-r].nrrd``);
- ``choice_target.csv``: the tumour segmentation of each case (``tumor`` or, for 3 cases,
  ``tumor_target``) and, in its name, the MR it was drawn on;
- ``registration/affine/CaseNNN/*.tfm``: per case the ITK affine ``iUS-to-<reference MR>``;
- ``registration/rigid/CaseNNN/*.tfm``: ITK rigids ``<reference MR>-to-<other MR>`` for every
  other pre-operative MR series of the case;
- ``splits/split_empty_{0,1,2}.csv``: their 3 folds (``training`` 70, ``validation`` 1,
  ``inference`` 33-34, the test set), case names with a trailing ``-``.

Their oddities, handled and reported in :attr:`AuthorsRelease.notes`: ``Case032`` is in
the folds and has an affine but no row in ``refs_files.csv`` (no data: listed, not
guessed); fold 0 lists ``Case067`` twice, as its validation case and in its test set (it
never trains fold 0, so it is scored there); ``Case021``'s iUS file name is a
synchronisation tool's "conflicted copy". A ``-r`` after a series description in an NRRD
name has no counterpart in IDC's descriptions (22 series; each case holds one series of
that description, so the match is unambiguous).

Direction of the files (ITK convention, see :mod:`iusynth.core.itk_transforms`): ``A-to-B``
maps B's points to A's. Their script reads the affine and takes its inverse to bring the
reference MR into the iUS, and reads each rigid and takes its inverse to bring the other
MR onto the reference. Only the standard library is imported here: the Snakefile plans
ReMIND with it.
"""

from __future__ import annotations

import csv
import functools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from iusynth.core.splits import AUTHORS_FOLD_COUNT

RELEASE = Path(__file__).resolve().parents[4] / "resources" / "authors_mmhvae"
AUTHORS_SOURCE = "ReubenDo/MMHVAE at 31a988e (MIT)"
_CASE = re.compile(r"^Case(?P<number>\d{3})$")
_SPLIT_NAMES = {"training": "train", "validation": "val", "inference": "test"}
_TARGET = re.compile(r"^(?P<case>Case\d{3})-preop-SEG-(?P<kind>tumor|tumor_target)-MR-(?P<mr>.+)$")


def subject_of(case: str) -> str:
    """IDC's patient id of one of their cases: ``Case007`` -> ``ReMIND-007``."""
    match = _CASE.match(case)
    if match is None:
        raise ValueError(f"{case!r} is not a case name of the authors' files (CaseNNN)")
    return f"ReMIND-{match.group('number')}"


def case_of(subject: str) -> str:
    """Their case name of an IDC patient id: ``ReMIND-007`` -> ``Case007``."""
    number = subject.removeprefix("ReMIND-")
    if not (subject.startswith("ReMIND-") and number.isdigit() and len(number) == 3):
        raise ValueError(f"{subject!r} is not a ReMIND patient id (ReMIND-NNN)")
    return f"Case{number}"


def description_of(mr_name: str) -> str:
    """The IDC SeriesDescription behind one of their MR names (their ``-r`` suffix removed)."""
    return mr_name.removesuffix("-r")


@dataclass(frozen=True)
class AuthorsCase:
    """One case of their preparation: its reference MR, transforms and tumour target."""

    case: str
    subject: str
    us_file: str  # their iUS NRRD name
    reference: str  # their reference MR, an NRRD series name without the case prefix
    affine: Path  # ``iUS-to-<reference>``: maps reference points to iUS points
    rigid: dict[str, Path]  # other MR name -> ``<reference>-to-<other>``: other -> reference
    target_kind: str  # ``tumor`` or ``tumor_target``
    target_on: str  # the MR name the target was drawn on

    @property
    def mr_names(self) -> tuple[str, ...]:
        """Every MR series of the case their files name (the reference first)."""
        return (self.reference, *sorted(self.rigid))

    def mr_name(self, description: str) -> str | None:
        """Their name of the MR series with this IDC SeriesDescription, if they name one."""
        found = [name for name in self.mr_names if description_of(name) == description]
        return found[0] if found else None

    @property
    def target_description(self) -> str:
        """The IDC SeriesDescription of their target segmentation."""
        return f"{self.target_kind} seg - MR ref: {description_of(self.target_on)}"


@dataclass(frozen=True)
class AuthorsFold:
    """One of their folds, in IDC patient ids; cases without data are kept apart."""

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    without_data: tuple[str, ...]  # listed in the fold, but no row in refs_files.csv


@dataclass(frozen=True)
class AuthorsRelease:
    """Their files, parsed: cases by IDC patient id, the folds, and what was odd."""

    root: Path
    cases: dict[str, AuthorsCase]
    folds: tuple[AuthorsFold, ...]
    affines: int  # transform files under registration/affine
    rigids: int  # transform files under registration/rigid
    notes: tuple[str, ...]

    def case(self, subject: str) -> AuthorsCase:
        """The case of one ReMIND subject, or an error naming the files."""
        if subject not in self.cases:
            raise KeyError(
                f"{subject} ({case_of(subject)}) is not a case of the authors' preparation "
                f"({self.root / 'refs_files.csv'} lists {len(self.cases)} cases)"
            )
        return self.cases[subject]


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the authors' ReMIND files ship in resources/authors_mmhvae/ "
            "of the repository; restore them (git checkout resources)"
        )
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _transform_files(folder: Path) -> dict[str, list[Path]]:
    """Per case folder, its ``.tfm`` files."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing from the authors' files: restore it")
    return {case.name: sorted(case.glob("*.tfm")) for case in sorted(folder.iterdir())}


def _case(
    case: str,
    row: dict[str, str],
    target: str,
    affines: dict[str, list[Path]],
    rigids: dict[str, list[Path]],
) -> AuthorsCase:
    """One case, its files checked to exist as their script names them."""
    reference = row["mr"].removesuffix(".nrrd").removeprefix(f"{case}-preop-MR-")
    expected = f"{case}-{case}-intraop-US-pre_dura-to-{case}-preop-MR-{reference}.tfm"
    affine = [path for path in affines.get(case, []) if path.name == expected]
    if not affine:
        raise ValueError(f"the authors' files have no affine {expected} for {case}")
    prefix = f"{case}-{case}-preop-MR-{reference}-to-{case}-preop-MR-"
    rigid = {}
    for path in rigids.get(case, []):
        if not path.name.startswith(prefix):
            raise ValueError(f"{path}: a rigid of {case} that does not start from its reference")
        rigid[path.name.removeprefix(prefix).removesuffix(".tfm")] = path
    match = _TARGET.match(target)
    if match is None or match.group("case") != case:
        raise ValueError(f"choice_target.csv: {case}'s target {target!r} is not a tumour SEG")
    target_on = match.group("mr")
    if target_on != reference and target_on not in rigid:
        raise ValueError(f"{case}: its target is drawn on {target_on}, which no rigid reaches")
    return AuthorsCase(
        case=case,
        subject=subject_of(case),
        us_file=row["us"],
        reference=reference,
        affine=affine[0],
        rigid=rigid,
        target_kind=match.group("kind"),
        target_on=target_on,
    )


def _fold(index: int, path: Path, with_data: set[str], notes: list[str]) -> AuthorsFold:
    """One split file, in IDC ids; a case listed twice or without data goes to the notes."""
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    without = []
    rows = _rows(path)
    for row in rows:
        case, split = row["case"].rstrip("-"), row["split"]
        if split not in _SPLIT_NAMES:
            raise ValueError(f"{path}: {row['case']} has an unknown split {split!r}")
        subject = subject_of(case)
        if subject not in with_data:
            without.append(subject)
            continue
        parts[_SPLIT_NAMES[split]].append(subject)
    for case, count in Counter(row["case"].rstrip("-") for row in rows).items():
        if count > 1:
            listed = [row["split"] for row in rows if row["case"].rstrip("-") == case]
            notes.append(f"fold {index} lists {case} {count} times ({', '.join(listed)})")
    overlap = set(parts["train"]) & (set(parts["val"]) | set(parts["test"]))
    if overlap:
        raise ValueError(f"{path}: {sorted(overlap)} both train and are held out")
    if without:
        notes.append(
            f"fold {index} lists {', '.join(case_of(s) for s in without)} without data "
            "(no row in refs_files.csv): left out"
        )
    return AuthorsFold(
        index,
        tuple(sorted(parts["train"])),
        tuple(sorted(parts["val"])),
        tuple(sorted(parts["test"])),
        tuple(sorted(without)),
    )


@functools.cache
def load_release(root: Path = RELEASE) -> AuthorsRelease:
    """Parse the authors' files (every case, transform and fold), or stop naming the file."""
    root = Path(root)
    references = {row[""]: row for row in _rows(root / "refs_files.csv")}
    targets = {row[""]: row["target"] for row in _rows(root / "choice_target.csv")}
    if set(references) != set(targets):
        raise ValueError(
            f"refs_files.csv and choice_target.csv of {root} list different cases: "
            f"{sorted(set(references) ^ set(targets))}"
        )
    affines = _transform_files(root / "registration" / "affine")
    rigids = _transform_files(root / "registration" / "rigid")
    notes = []
    for case, row in sorted(references.items()):
        if row["us"] != f"{case}-intraop-US-pre_dura.nrrd":
            notes.append(f"{case}'s iUS file is named {row['us']!r} (their script ignores it)")
    for case in sorted(set(affines) - set(references)):
        notes.append(f"{case} has an affine but no row in refs_files.csv: no data, left out")
    cases = {
        subject_of(case): _case(case, row, targets[case], affines, rigids)
        for case, row in sorted(references.items())
    }
    folds = tuple(
        _fold(index, root / "splits" / f"split_empty_{index}.csv", set(cases), notes)
        for index in range(AUTHORS_FOLD_COUNT)
    )
    tested = Counter(s for fold in folds for s in fold.test)
    for subject, count in sorted(tested.items()):
        if count > 1:
            listed = [str(fold.index) for fold in folds if subject in fold.test]
            notes.append(
                f"{case_of(subject)} is in the test list of folds {', '.join(listed)} (pooled "
                "over the folds it is scored once, by the first)"
            )
    never = sorted(set(cases) - set(tested))
    if never:
        notes.append(
            f"{', '.join(case_of(s) for s in never)} are in no fold's test list (never scored)"
        )
    return AuthorsRelease(
        root=root,
        cases=cases,
        folds=folds,
        affines=sum(len(files) for files in affines.values()),
        rigids=sum(len(files) for files in rigids.values()),
        notes=tuple(notes),
    )


def check_fair_scoring(
    subjects: list[str], fold: int, allowed: bool, key: str, source: str = ""
) -> list[str]:
    """Refuse real ReMIND subjects outside the test list of the authors' ``fold`` checkpoint.

    Their weights of a fold were trained (and validated) on every other case of their
    split: a score on such a case is inflated. Subjects that are not the real ReMIND's
    (the demo's, RESECT's) are fair. Returns the unfair subjects when ``allowed`` (scored
    knowingly); else raises ValueError naming how many, the file and the option of the
    config ``key`` (``models.variants.<name>.pretrained``; ``source``: the model file).
    """
    release = load_release()
    test = set(release.folds[fold].test)
    unfair = sorted(s for s in subjects if s in release.cases and s not in test)
    if unfair and not allowed:
        shown = ", ".join(unfair[:5]) + (" ..." if len(unfair) > 5 else "")
        where = f"config key '{key}'" + (f" ({source})" if source else "")
        raise ValueError(
            f"{where}: {len(unfair)} of the {len(subjects)} subjects to score ({shown}) are "
            f"not in the test list of the authors' fold-{fold} weights ('inference' in "
            f"{release.root / 'splits' / f'split_empty_{fold}.csv'}): those weights were "
            "trained on them, so their scores would be inflated. Score the weights on their "
            f"test list (preprocessing.splits.source: authors, models.fold: {fold}), or set "
            f"{key}.score_training_subjects: true to score them knowingly"
        )
    return unfair
