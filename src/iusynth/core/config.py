"""Configuration: schema validation with errors that name the key.

Imported by the Snakefile, so only light dependencies (yaml, jsonschema) are used; the
cohorts are resolved in :mod:`iusynth.cohorts.registry`.
"""

from __future__ import annotations

import copy
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from iusynth.core import modalities
from iusynth.core.settings import ConfigError
from iusynth.methods import GAN_BASELINES

# the checkout the package runs from, its config schema and its default config
REPOSITORY = Path(__file__).resolve().parents[3]
SCHEMA_FILE = Path("workflow") / "schemas" / "config.schema.yaml"
DEFAULTS_FILE = Path("config") / "config.yaml"


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


UNSAFE_TEXT = re.compile(r"[<>\x00-\x1f\x7f]")


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
    if error.validator in ("oneOf", "anyOf") and error.context:
        return _describe_alternatives(error)
    described = error.schema.get("description") if isinstance(error.schema, dict) else None
    meaning = f"; the key holds {described}" if described else ""
    return f"config key '{_key(where)}': {error.message}{meaning}"


def _describe_alternatives(error: jsonschema.ValidationError) -> str:
    """A value that fits none of a key's alternative forms, described by the closest form.

    The forms of another type are dropped; of the rest, the error deepest in the value is
    described (e.g. the bad ``sha256`` of a ``pretrained`` mapping). A value of no
    accepted type names the types; keys of which one is required are named together.
    """
    where = list(error.absolute_path)
    forms: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        forms.setdefault(sub.relative_schema_path[0], []).append(sub)
    wrong_type = {
        form
        for form, subs in forms.items()
        if any(sub.validator == "type" and list(sub.absolute_path) == where for sub in subs)
    }
    if wrong_type == set(forms):
        types = sorted(
            {str(sub.validator_value) for sub in error.context if sub.validator == "type"}
        )
        return f"config key '{_key(where)}': {error.instance!r} is not of type {' or '.join(types)}"
    if all(sub.validator == "required" for sub in error.context):
        names = [name for sub in error.context for name in sub.validator_value]
        return "missing config key " + " or ".join(f"'{_key([*where, n])}'" for n in names)
    candidates = [sub for form, subs in forms.items() if form not in wrong_type for sub in subs]
    return _describe(max(candidates, key=lambda sub: len(sub.absolute_path)))


def _unusable_values(value: Any, path: list[Any]) -> list[str]:
    """The keys under ``value`` that hold a value no setting may have, each with the fix.

    NaN or an infinity (YAML ``.nan``, ``.inf``); text, in a key or a value, with ``<``,
    ``>`` or a control character.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return [f"config key '{_key(path)}': {value} is not a finite number (give a number)"]
    if isinstance(value, str) and UNSAFE_TEXT.search(value):
        return [
            f"config key '{_key(path)}': {value!r} holds '<', '>' or a control character, "
            "which labels and paths may not (they reach shell commands and HTML reports); "
            "remove them"
        ]
    if isinstance(value, dict):
        return [
            line
            for k, v in value.items()
            for line in (*_unusable_values(str(k), [*path, k]), *_unusable_values(v, [*path, k]))
        ]
    if isinstance(value, list):
        return [line for i, v in enumerate(value) for line in _unusable_values(v, [*path, i])]
    return []


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file as a mapping, or a ConfigError naming the file, line and column.

    Snakemake reads ``--configfile`` files before the workflow runs and reports a YAML
    error or a top-level list without the file or line; ``iusynth check-config`` reads
    them with this instead.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: check its path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} is unreadable ({error}): save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" {error.context}" if error.context else ""
        if error.context_mark and error.context_mark is not mark:
            opened = error.context_mark
            context += f" opened at line {opened.line + 1}, column {opened.column + 1}"
        raise ConfigError(
            f"config file {path}{where}: not valid YAML ({error.problem}{context}); fix it "
            "there (indent with spaces, not tabs; close every bracket and quote)"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path}: not valid YAML ({error})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} holds a YAML {type(data).__name__} at its top level, not a "
            "mapping of config sections: write 'section:' lines with the keys indented "
            "under them (e.g. 'evaluation:' then '  table_temperature: 0.5'), not '- ' items"
        )
    return data


def validate_config(config: dict[str, Any], schema_path: Path) -> None:
    """Validate a config dict against the workflow schema; raise ConfigError naming each bad key.

    Every number must be finite: the schema's bounds let NaN through (``minimum: 0``
    accepts it), and a NaN temperature or weight would run without an error. No text may
    hold ``<``, ``>`` or control characters: labels and paths reach rule params, which
    Snakemake's report embeds in a script block.
    """
    unusable = _unusable_values(config, [])
    if unusable:
        lines = "\n".join(f"  - {line}" for line in unusable)
        raise ConfigError(f"invalid configuration:\n{lines}\n(.nan, .inf and markup are refused)")
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
    """The slices are square and pretrained variants exist.

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
    if path is not None and Path(path).is_dir():
        raise ConfigError(
            f"config key '{key}.pretrained': {path} is a folder; give the checkpoint file "
            "inside it (the authors': pretrained/mmhvae_f0/models/CP_main_1000.pth)"
        )
    if path is not None and not Path(path).is_file():
        raise ConfigError(
            f"config key '{key}.pretrained': {path} does not exist; give the path of the "
            "authors' checkpoint (their pretrained/mmhvae_f0/models/CP_main_1000.pth), or "
            "{url: ..., sha256: ...}"
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
    """Evaluated methods exist; the example figure's temperature is synthesised."""
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
    figure = section["figure_temperature"]
    if figure is not None and figure not in (0.0, section["table_temperature"]):
        raise ConfigError(
            f"config key 'evaluation.figure_temperature': {figure} is neither 0 nor "
            f"table_temperature ({section['table_temperature']}), the temperatures every "
            "method is synthesised at; set one of them, or null for table_temperature"
        )


def run_provenance(
    basedir: Path, configfiles: list[Any], cohorts: dict[str, Any]
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
