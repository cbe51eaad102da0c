"""Configuration: schema validation with errors that name the key, and cohort resolution.

Imported by the Snakefile, so only light dependencies (yaml, jsonschema) are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from iusynth import layout
from iusynth.demo.plan import COHORT_ROLES, plan_cohort


class ConfigError(ValueError):
    """A configuration problem, with a message naming the offending key."""


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
    low, high = config["demo"]["misalignment"]["translation_mm"]
    if low > high:
        raise ConfigError(
            "config key 'demo.misalignment.translation_mm': the range must be [low, high] "
            f"with low <= high, not [{low}, {high}]"
        )


@dataclass(frozen=True)
class Cohort:
    """A cohort as the workflow sees it: where it lives and which subjects it has."""

    name: str
    source: str
    root: Path
    subjects: tuple[str, ...]
    ultrasound_subjects: tuple[str, ...]  # the subjects that have an iUS volume


def resolve_cohorts(config: dict[str, Any]) -> dict[str, Cohort]:
    """Locate every cohort and list its subjects, before any job runs.

    Demo cohorts live under ``<results>/cohorts/<name>`` and their subjects follow from the
    ``demo`` config; local cohorts must already exist in the canonical layout.
    """
    cohorts = {}
    for name, settings in config["cohorts"].items():
        if settings["source"] == "demo":
            root = Path(config["results"]) / "cohorts" / name
            plans = plan_cohort(name, config["demo"])
            subjects = tuple(plan.subject for plan in plans)
            with_us = tuple(plan.subject for plan in plans if "US" in plan.modalities)
        else:
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
        cohorts[name] = Cohort(name, settings["source"], root, subjects, with_us)
    _check_preprocessing(config["preprocessing"], cohorts)
    return cohorts


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
