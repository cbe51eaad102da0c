"""Configuration: schema validation with errors that name the key, and cohort resolution.

Imported by the Snakefile, so only light dependencies (yaml, jsonschema) are used.
"""

from __future__ import annotations

import copy
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from iusynth.cohorts.datasets import catalog, upenn
from iusynth.cohorts.demo.plan import COHORT_ROLES, plan_cohort
from iusynth.core import layout, modalities
from iusynth.core.settings import ConfigError


def merge_config(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with each override merged in recursively, as Snakemake does."""
    merged = copy.deepcopy(base)

    def merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)

    for override in overrides:
        merge(merged, override)
    return merged


def _key(path: Any) -> str:
    """Dotted config key from a jsonschema path, e.g. ``demo.cohorts.remind.subjects``."""
    return ".".join(str(part) for part in path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key and what is wrong with it."""
    where = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed)
        allowed_list = ", ".join(sorted(allowed))
        return "; ".join(
            f"unknown config key '{_key([*where, name])}' (allowed here: {allowed_list})"
            for name in unknown
        )
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return "; ".join(f"missing config key '{_key([*where, name])}'" for name in missing)
    return f"config key '{_key(where)}': {error.message}"


def validate_config(config: dict[str, Any], schema_path: Path) -> None:
    """Validate a config dict against the workflow schema; raise ConfigError naming each bad key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = "\n".join(f"  - {_describe(error)}" for error in errors)
        raise ConfigError(
            f"invalid configuration:\n{lines}\n(fix the config file or --config values)"
        )
    _check_models(config)
    _check_evaluation(config)
    _check_downstream(config)
    low, high = config["demo"]["misalignment"]["translation_mm"]
    if low > high:
        raise ConfigError(
            "config key 'demo.misalignment.translation_mm': the range must be [low, high] "
            f"with low <= high, not [{low}, {high}]"
        )


def _check_models(config: dict[str, Any]) -> None:
    """The slices are square (the models take square slices); pretrained variants exist.

    Each variant's architecture is checked against the slices when its settings are built
    (:func:`iusynth.jobs.check_all`).
    """
    height, width = config["preprocessing"]["slice_size"]
    if height != width:
        raise ConfigError(
            f"config key 'preprocessing.slice_size': [{height}, {width}]: the models take "
            "square slices; make both sides equal"
        )
    for name, overrides in config["models"]["variants"].items():
        if (overrides or {}).get("pretrained") is not None:
            _check_pretrained(f"models.variants.{name}", overrides)


def _check_pretrained(key: str, overrides: dict[str, Any]) -> None:
    """A pretrained variant takes everything from its checkpoint, which must exist."""
    extra = sorted(set(overrides) - {"pretrained"})
    if extra:
        raise ConfigError(
            f"config key '{key}': a pretrained variant takes its architecture from the "
            f"checkpoint and is not trained; remove {extra}"
        )
    value = overrides["pretrained"]
    path = value if isinstance(value, str) else value.get("path")
    if path is not None and not Path(path).is_file():
        raise ConfigError(
            f"config key '{key}.pretrained': {path} does not exist; give the path of the "
            "authors' checkpoint (their pretrained/mmhvae_f0/models/CP_main_1000.pth), or "
            "{url: ..., sha256: ...}"
        )


GAN_BASELINES = ("pix2pix", "mmgan")


def _check_segmentation(config: dict[str, Any], cohorts: dict[str, Cohort]) -> None:
    """Table 4's methods exist, and every nnU-Net has at least a subject per fold."""
    section = config["segmentation"]
    folds = section["nnunet"]["folds"]
    known = {*config["models"]["variants"], *GAN_BASELINES, "supervised"}
    sources = {
        "synthetic iUS": cohorts[section["cohort"]].subjects,
        "supervised": cohorts[config["preprocessing"]["trainval_cohort"]].ultrasound_subjects,
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
                f"than segmentation.nnunet.folds ({folds}); lower the folds or add subjects"
            )


def _check_downstream(config: dict[str, Any]) -> None:
    """The models the downstream experiments synthesise with exist and have the modalities."""
    variants = config["models"]["variants"]
    section = config["registration_experiment"]
    key = "registration_experiment.model"
    name = section["model"]
    if name not in variants:
        raise ConfigError(
            f"config key '{key}': {name!r} is not a model variant; expected one of "
            f"{sorted(variants)}"
        )
    default = config["models"]["architecture"].get("modalities", list(modalities.MODALITIES))
    model_modalities = (variants[name] or {}).get("architecture", {}).get("modalities", default)
    missing = [m for m in ["US", *section["experiment"]["sequences"]] if m not in model_modalities]
    if missing:
        raise ConfigError(
            f"config key '{key}': variant {name!r} does not model {missing}; choose a variant "
            "with the iUS and every sequence of registration_experiment.experiment.sequences"
        )


def _check_evaluation(config: dict[str, Any]) -> None:
    """Evaluated methods exist."""
    variants = set(config["models"]["variants"])
    section = config["evaluation"]
    for key in ("table1", "table2"):
        for method in section[key]:
            if method not in variants and method not in GAN_BASELINES:
                raise ConfigError(
                    f"config key 'evaluation.{key}.{method}': not a models.variants name nor "
                    f"one of {GAN_BASELINES}"
                )
    for method in section["sweep_methods"]:
        if method not in variants:
            raise ConfigError(
                f"config key 'evaluation.sweep_methods': {method!r} is not a models.variants "
                "name (only the VAEs have a temperature)"
            )


@dataclass(frozen=True)
class Cohort:
    """A cohort as the workflow sees it: where it lives and which subjects it has."""

    name: str
    source: str
    root: Path
    subjects: tuple[str, ...]
    ultrasound_subjects: tuple[str, ...]  # the subjects that have an iUS volume
    raw: Path | None = None  # where a downloaded dataset's files go


def resolve_cohorts(config: dict[str, Any]) -> dict[str, Cohort]:
    """Locate every cohort and list its subjects, before any job runs.

    Demo cohorts and downloaded datasets are built under ``<results>/cohorts/<name>``:
    demo subjects follow from the ``demo`` config, dataset subjects from the config's
    list or the dataset's own (shipped for ReMIND and RESECT, read from the package for
    UPenn-GBM). Local cohorts must already exist in the canonical layout.
    """
    cohorts = {}
    for name, settings in config["cohorts"].items():
        _check_cohort_keys(name, settings)
        if settings["source"] == "demo":
            root = Path(config["results"]) / "cohorts" / name
            plans = plan_cohort(name, config["demo"])
            subjects = tuple(plan.subject for plan in plans)
            with_us = tuple(plan.subject for plan in plans if "US" in plan.modalities)
            cohorts[name] = Cohort(name, "demo", root, subjects, with_us)
        elif settings["source"] == "dataset":
            cohorts[name] = _dataset_cohort(name, settings, Path(config["results"]))
        else:
            cohorts[name] = _local_cohort(name, settings)
    _check_preprocessing(config["preprocessing"], cohorts)
    _check_segmentation(config, cohorts)
    return cohorts


_DATASET_ONLY_KEYS = {
    "raw": None,
    "subjects": None,
    "url": None,
    "segmentation_url": "resect",
    "manifest": "remind",
    "api": "remind",
    "package": "upenn",
    "checksums": "upenn",
}


def _check_cohort_keys(name: str, settings: dict[str, Any]) -> None:
    """Refuse keys that mean nothing for this cohort's source or role."""
    source = settings["source"]
    for key, only_for in _DATASET_ONLY_KEYS.items():
        if key not in settings:
            continue
        if source != "dataset":
            raise ConfigError(
                f"config key 'cohorts.{name}.{key}' only applies with source: dataset "
                f"(this cohort's source is {source})"
            )
        if only_for is not None and only_for != name:
            raise ConfigError(
                f"config key 'cohorts.{name}.{key}' only applies to cohort {only_for}"
            )
    if "path" in settings and source != "local":
        raise ConfigError(f"config key 'cohorts.{name}.path' only applies with source: local")


def _local_cohort(name: str, settings: dict[str, Any]) -> Cohort:
    """A cohort already converted into the canonical layout."""
    root = Path(settings["path"]).expanduser()
    manifest = root / layout.MANIFEST_NAME
    if not root.is_dir():
        raise ConfigError(
            f"config key 'cohorts.{name}.path': folder '{root}' does not exist; set it to "
            f"the converted {COHORT_ROLES[name].dataset} cohort, or use source: demo"
        )
    try:
        entries = layout.read_manifest(manifest)
    except (OSError, ValueError) as error:
        raise ConfigError(f"config key 'cohorts.{name}.path': {error}") from error
    subjects = tuple(entry.subject for entry in entries)
    with_us = tuple(entry.subject for entry in entries if entry.has("US"))
    if not subjects:
        raise ConfigError(f"config key 'cohorts.{name}.path': {manifest} lists no subject")
    return Cohort(name, "local", root, subjects, with_us)


def _dataset_cohort(name: str, settings: dict[str, Any], results: Path) -> Cohort:
    """A real dataset, downloaded (or read from its package) and converted by the workflow."""
    info = catalog.DATASETS[name]
    raw = Path(settings["raw"]).expanduser()
    if name == "upenn":
        if "package" not in settings:
            raise ConfigError(
                "missing config key 'cohorts.upenn.package': UPenn-GBM cannot be downloaded "
                f"by the workflow. {info.how_to_get}"
            )
        package = Path(settings["package"]).expanduser()
        try:
            available = upenn.baseline_cases(package)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"config key 'cohorts.upenn.package': {error}. {info.how_to_get}"
            ) from error
    else:
        available = catalog.default_subjects(name)
    if "manifest" in settings and not Path(settings["manifest"]).expanduser().is_file():
        raise ConfigError(
            f"config key 'cohorts.remind.manifest': file '{settings['manifest']}' does not exist"
        )
    subjects = tuple(settings.get("subjects", available))
    unknown = sorted(set(subjects) - set(available))
    if unknown:
        raise ConfigError(
            f"config key 'cohorts.{name}.subjects': {unknown[:5]} not in {info.name} "
            f"(it has {len(available)} subjects, e.g. {list(available[:3])})"
        )
    with_us = () if name == "upenn" else subjects
    return Cohort(name, "dataset", results / "cohorts" / name, subjects, with_us, raw)


def _check_preprocessing(section: dict[str, Any], cohorts: dict[str, Cohort]) -> None:
    """Checks of the preprocessing section that need the cohorts' subjects."""
    trainval, test = section["trainval_cohort"], section["test_cohort"]
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
    folds = section["splits"]["folds"]
    available = len(cohorts[trainval].ultrasound_subjects)
    if folds > available:
        raise ConfigError(
            f"config key 'preprocessing.splits.folds': {folds} folds need at least {folds} "
            f"subjects with iUS in cohort '{trainval}', which has {available}"
        )


def run_provenance(
    basedir: Path, configfiles: list[Any], cohorts: dict[str, Cohort]
) -> dict[str, str]:
    """What a run's report states about itself: code commit, config files and data."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(basedir), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown (not a git checkout)"
    sources = {"demo": "generated demo", "dataset": "downloaded dataset", "local": "local folder"}
    data = ", ".join(
        f"{name}: {sources[cohort.source]} ({len(cohort.subjects)} "
        f"subject{'' if len(cohort.subjects) == 1 else 's'})"
        for name, cohort in cohorts.items()
    )
    files = ", ".join(Path(str(path)).name for path in configfiles) or "none"
    return {"commit": commit or "unknown", "configfiles": files, "data": data}
