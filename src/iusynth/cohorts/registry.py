"""The cohorts of a run, from the ``cohorts`` table of the config.

Each row names a cohort and says where it comes from (``source``: generated demo,
downloaded ``dataset``, or a ``local`` folder in the canonical layout) and which dataset
it is or simulates (``dataset``: remind, upenn, resect). A cohort's role in the
experiments is given by the keys that name it (``preprocessing.trainval_cohort``,
``preprocessing.test_cohort``, ``segmentation.cohort``), so a second paired dataset or a
private cohort is one more row. Imported by the Snakefile: standard library and the
dataset catalog only, no torch.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iusynth.cohorts.datasets import catalog, upenn
from iusynth.cohorts.demo.plan import COHORT_ROLES, plan_cohort
from iusynth.cohorts.demo.settings import DemoCohortSettings
from iusynth.core import layout, validation
from iusynth.core.settings import ConfigError, build
from iusynth.core.splits import split_source
from iusynth.methods import GAN_BASELINES

NIFTYREG = "niftyreg"  # registrations by reg_aladin (ours)
AUTHORS = "authors"  # ReMIND: the authors' ITK transforms (resources/authors_mmhvae)
SUBJECT_FOLDERS = "subject_folders"  # ITK files beside each subject's images


@dataclass(frozen=True)
class Cohort:
    """A cohort as the workflow sees it: where it lives and which subjects it has."""

    name: str
    source: str
    dataset: str | None  # the dataset it is or simulates; None for a local cohort of its own
    root: Path
    subjects: tuple[str, ...]
    ultrasound_subjects: tuple[str, ...]  # the subjects that have an iUS volume
    raw: Path | None = None  # where a downloaded dataset's files go
    transforms: str = NIFTYREG  # where its registrations come from (see transforms_of)


def resolve_cohorts(config: dict[str, Any]) -> dict[str, Cohort]:
    """Locate every cohort and list its subjects, before any job runs.

    Demo cohorts and downloaded datasets are built under ``<results>/cohorts/<name>``:
    demo subjects follow from ``demo.cohorts.<name>``, dataset subjects from the row's
    list or the dataset's own (shipped for ReMIND and RESECT, read from the package for
    UPenn-GBM). Local cohorts must already exist in the canonical layout. Then the
    cohorts named by the experiments are checked against what they hold.
    """
    results = Path(config["results"])
    cohorts = {}
    for name, row in config["cohorts"].items():
        _check_row(name, row)
        if row["source"] == "demo":
            cohort = demo_cohort(name, row["dataset"], config["demo"], results)
        elif row["source"] == "dataset":
            cohort = _dataset_cohort(name, row, results)
        else:
            cohort = _local_cohort(name, row)
        cohorts[name] = dataclasses.replace(cohort, transforms=transforms_of(name, row))
    _check_unique(cohorts)
    _check_preprocessing(config, cohorts)
    _check_segmentation(config, cohorts)
    return cohorts


def downloaded(cohorts: dict[str, Cohort], dataset: str) -> Cohort | None:
    """The cohort downloading ``dataset`` (at most one does), if any."""
    return next(
        (c for c in cohorts.values() if c.source == "dataset" and c.dataset == dataset), None
    )


def demo_cohort_settings(demo: dict[str, Any], name: str) -> DemoCohortSettings:
    """The size and variety of one demo cohort (``demo.cohorts.<name>``)."""
    if name not in demo["cohorts"]:
        raise ConfigError(
            f"missing config key 'demo.cohorts.{name}': cohort '{name}' is generated "
            "(source: demo) and needs its number of subjects and low_grade_fraction"
        )
    return build(DemoCohortSettings, demo["cohorts"][name], f"demo.cohorts.{name}")


def demo_cohort(name: str, dataset: str, demo: dict[str, Any], results: Path) -> Cohort:
    """A generated cohort: its subjects are planned from the config alone."""
    settings = demo_cohort_settings(demo, name)
    if settings.missing_sequence_fraction and not COHORT_ROLES[dataset].may_miss_a_sequence:
        raise ConfigError(
            f"config key 'demo.cohorts.{name}.missing_sequence_fraction': a demo "
            f"{COHORT_ROLES[dataset].description} cohort has every sequence; set it to 0"
        )
    plans = plan_cohort(name, dataset, demo["seed"], settings)
    subjects = tuple(plan.subject for plan in plans)
    with_us = tuple(plan.subject for plan in plans if "US" in plan.modalities)
    return Cohort(name, "demo", dataset, results / "cohorts" / name, subjects, with_us)


# Keys of a cohort row that only mean something for some sources and datasets:
# key -> (source, datasets it applies to; None for every dataset).
_ROW_KEYS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "path": ("local", None),
    "raw": ("dataset", None),
    "subjects": ("dataset", None),
    "url": ("dataset", ("remind", "resect")),
    "segmentation_url": ("dataset", ("resect",)),
    "manifest": ("dataset", ("remind",)),
    "api": ("dataset", ("remind",)),
    "package": ("dataset", ("upenn",)),
    "checksums": ("dataset", ("upenn",)),
    "targets": ("dataset", ("remind",)),
}


def transforms_of(name: str, row: dict[str, Any]) -> str:
    """Where a cohort's registrations come from (``cohorts.<name>.transforms``, defaulted).

    ``niftyreg``, ``authors``, ``subject_folders`` or a folder; the default is ``authors``
    for the real ReMIND and ``niftyreg`` otherwise. A folder must exist.
    """
    real_remind = row.get("dataset") == "remind" and row["source"] == "dataset"
    value = row.get("transforms", AUTHORS if real_remind else NIFTYREG)
    if value == AUTHORS and not real_remind:
        raise ConfigError(
            f"config key 'cohorts.{name}.transforms': the authors' transforms register the "
            "real ReMIND's cases (dataset: remind, source: dataset); use niftyreg, "
            "subject_folders or a folder of ITK transforms for this cohort"
        )
    if value not in (NIFTYREG, AUTHORS, SUBJECT_FOLDERS) and not Path(value).expanduser().is_dir():
        raise ConfigError(
            f"config key 'cohorts.{name}.transforms': folder '{value}' does not exist; give "
            f"{NIFTYREG}, {AUTHORS} (ReMIND), {SUBJECT_FOLDERS}, or a folder holding one "
            "folder of ITK transforms per subject (docs/datasets.md, 'Given registrations')"
        )
    return value


def _check_row(name: str, row: dict[str, Any]) -> None:
    """Refuse keys that mean nothing for this row's source or dataset."""
    source, dataset = row["source"], row.get("dataset")
    if source != "local" and dataset is None:
        raise ConfigError(
            f"missing config key 'cohorts.{name}.dataset': a {source} cohort is one of "
            f"{sorted(catalog.DATASETS)}"
        )
    for key, (only_source, only_datasets) in _ROW_KEYS.items():
        if key not in row:
            continue
        if source != only_source:
            raise ConfigError(
                f"config key 'cohorts.{name}.{key}' only applies with source: {only_source} "
                f"(this cohort's source is {source})"
            )
        if only_datasets is not None and dataset not in only_datasets:
            raise ConfigError(
                f"config key 'cohorts.{name}.{key}' only applies to dataset "
                f"{' or '.join(only_datasets)} (this cohort's dataset is {dataset})"
            )


def _local_cohort(name: str, row: dict[str, Any]) -> Cohort:
    """A cohort already converted into the canonical layout.

    Its manifest is checked against its subject folders
    (:func:`iusynth.core.validation.check_cohort_files`).
    """
    root = Path(row["path"]).expanduser()
    manifest = root / layout.MANIFEST_NAME
    if not root.is_dir():
        raise ConfigError(
            f"config key 'cohorts.{name}.path': folder '{root}' does not exist; set it to "
            "a cohort converted into the canonical layout, or use source: demo"
        )
    try:
        entries = layout.read_manifest(manifest)
        validation.check_cohort_files(manifest, entries)
    except (OSError, ValueError) as error:
        raise ConfigError(f"config key 'cohorts.{name}.path': {error}") from error
    subjects = tuple(entry.subject for entry in entries)
    with_us = tuple(entry.subject for entry in entries if entry.has("US"))
    if not subjects:
        raise ConfigError(f"config key 'cohorts.{name}.path': {manifest} lists no subject")
    return Cohort(name, "local", row.get("dataset"), root, subjects, with_us)


def _dataset_cohort(name: str, row: dict[str, Any], results: Path) -> Cohort:
    """A real dataset, downloaded (or read from its package) and converted by the workflow."""
    dataset = row["dataset"]
    info = catalog.DATASETS[dataset]
    raw = Path(row["raw"]).expanduser()
    if dataset == "upenn":
        available = _upenn_cases(name, row, info)
    else:
        available = catalog.default_subjects(dataset)
    if "manifest" in row and not Path(row["manifest"]).expanduser().is_file():
        raise ConfigError(
            f"config key 'cohorts.{name}.manifest': file '{row['manifest']}' does not exist"
        )
    subjects = tuple(row.get("subjects", available))
    repeated = sorted(s for s, n in Counter(subjects).items() if n > 1)
    if repeated:
        raise ConfigError(
            f"config key 'cohorts.{name}.subjects': {repeated} listed more than once; a "
            "repeated subject would be in both training and validation: list each once"
        )
    unknown = sorted(set(subjects) - set(available))
    if unknown:
        raise ConfigError(
            f"config key 'cohorts.{name}.subjects': {unknown[:5]} not in {info.name} "
            f"(it has {len(available)} subjects, e.g. {list(available[:3])})"
        )
    with_us = subjects if info.has_ultrasound else ()
    return Cohort(name, "dataset", dataset, results / "cohorts" / name, subjects, with_us, raw)


def _upenn_cases(name: str, row: dict[str, Any], info: catalog.DatasetInfo) -> tuple[str, ...]:
    """The baseline cases of the UPenn-GBM package the user downloaded."""
    if "package" not in row:
        raise ConfigError(
            f"missing config key 'cohorts.{name}.package': UPenn-GBM cannot be downloaded "
            f"by the workflow. {info.how_to_get}"
        )
    try:
        return tuple(upenn.baseline_cases(Path(row["package"]).expanduser()))
    except (OSError, ValueError) as error:
        raise ConfigError(f"config key 'cohorts.{name}.package': {error}. {info.how_to_get}") from (
            error
        )


def _check_unique(cohorts: dict[str, Cohort]) -> None:
    """One cohort per downloaded dataset; no subject id in two cohorts."""
    sources = Counter(c.dataset for c in cohorts.values() if c.source == "dataset")
    for dataset, count in sources.items():
        if count > 1:
            names = [
                n for n, c in cohorts.items() if c.source == "dataset" and c.dataset == dataset
            ]
            raise ConfigError(
                f"config keys {[f'cohorts.{n}' for n in names]}: {count} cohorts download "
                f"{dataset}; keep one row and list the subjects it uses"
            )
    owner: dict[str, str] = {}
    for name, cohort in cohorts.items():
        for subject in cohort.subjects:
            if subject in owner:
                raise ConfigError(
                    f"config key 'cohorts.{name}': subject {subject} is also in cohort "
                    f"'{owner[subject]}'; a subject belongs to one cohort (rename it, or "
                    "drop it from one of the two)"
                )
            owner[subject] = name


def _check_preprocessing(config: dict[str, Any], cohorts: dict[str, Cohort]) -> None:
    """The paired cohorts exist, differ and have iUS subjects for every fold."""
    section = config["preprocessing"]
    trainval, test = section["trainval_cohort"], section["test_cohort"]
    for key, name in (("trainval_cohort", trainval), ("test_cohort", test)):
        if name not in cohorts:
            raise ConfigError(
                f"config key 'preprocessing.{key}': '{name}' is not a cohort; expected one "
                f"of {sorted(cohorts)} (the rows of 'cohorts')"
            )
    if trainval == test:
        raise ConfigError(
            f"config keys 'preprocessing.trainval_cohort' and 'preprocessing.test_cohort' "
            f"must differ (both are '{trainval}')"
        )
    for key, name in (("trainval_cohort", trainval), ("test_cohort", test)):
        if not cohorts[name].ultrasound_subjects:
            raise ConfigError(
                f"config key 'preprocessing.{key}': cohort '{name}' has no subject with iUS"
            )
    if split_source(config) == "authors":
        from iusynth.cohorts.datasets.authors import load_release

        unknown = sorted(set(cohorts[trainval].subjects) - set(load_release().cases))
        if unknown:
            raise ConfigError(
                f"config key 'preprocessing.splits.source': the authors' folds split the real "
                f"ReMIND's cases, not {unknown[:3]}{' ...' if len(unknown) > 3 else ''} of "
                f"cohort '{trainval}'; set source: seeded"
            )
    folds = section["splits"]["folds"]
    available = len(cohorts[trainval].ultrasound_subjects)
    if split_source(config) == "seeded" and folds > available:
        raise ConfigError(
            f"config key 'preprocessing.splits.folds': {folds} folds need at least {folds} "
            f"subjects with iUS in cohort '{trainval}', which has {available}"
        )


def _check_segmentation(config: dict[str, Any], cohorts: dict[str, Cohort]) -> None:
    """The swept cohort exists, Table 4's methods exist, every nnU-Net has a subject per fold."""
    section = config["segmentation"]
    if section["cohort"] not in cohorts:
        raise ConfigError(
            f"config key 'segmentation.cohort': '{section['cohort']}' is not a cohort; "
            f"expected one of {sorted(cohorts)}"
        )
    network = section["network"]
    folds = section[network]["folds"]
    known = {*config["models"]["variants"], *GAN_BASELINES, "supervised"}
    sources = {
        "synthetic iUS": cohorts[section["cohort"]].subjects,
        "supervised": cohorts[config["preprocessing"]["test_cohort"]].ultrasound_subjects,
    }
    for method in section["methods"]:
        key = f"segmentation.methods.{method}"
        if method not in known:
            raise ConfigError(
                f"config key '{key}': {method!r} is neither a model variant, a GAN baseline nor "
                f"'supervised'; expected one of {sorted(known)}"
            )
        subjects = sources["supervised" if method == "supervised" else "synthetic iUS"]
        if len(subjects) < folds:
            raise ConfigError(
                f"config key '{key}': its nnU-Net trains on {len(subjects)} subjects, fewer "
                f"than segmentation.{network}.folds ({folds}); lower the folds or add subjects"
            )
