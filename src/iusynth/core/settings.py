"""Typed settings from the configuration: one home per setting.

Every setting has exactly one home for each of its facets:

- its type, range and allowed values: ``workflow/schemas/config.schema.yaml``;
- its default value: ``config/config.yaml`` (the overlays change some);
- the code that reads it: one settings dataclass, whose field names are the keys.

Settings dataclasses have no defaults, except the networks' architectures
(:class:`iusynth.model.config.ModelConfig`, ``TranslatorConfig``), which default to the
paper's model so that it is built with no argument; a test keeps those defaults equal to
``config/paper.yaml``. Either way, :func:`build` fills one from a validated config
section (nested dataclasses from nested sections, lists as tuples where the field is a
tuple), taking only the dataclass's own fields: a job that reads part of a section gets a
settings object of just that part, so a change elsewhere in the section does not rerun
it. A class may name fields that do not come from its section: ``DERIVED`` ones come from
elsewhere in the config (e.g. the model's ``image_size`` from
``preprocessing.slice_size``) and ``RUNTIME`` ones from the job itself (its threads);
runtime fields are left out of :func:`to_json`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, with a message naming the offending key."""


class InvalidField(ValueError):
    """A settings class's check refusing one field: :func:`build` names the field's key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _runtime(cls: type) -> tuple[str, ...]:
    return tuple(getattr(cls, "RUNTIME", ()))


def _runtime_within(cls: type) -> set[str]:
    """The runtime fields of a settings class and of the settings nested in it, at any depth."""
    names = set(_runtime(cls))
    for hint in typing.get_type_hints(cls).values():
        if typing.get_origin(hint) in (types.UnionType, typing.Union):
            hint = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        if dataclasses.is_dataclass(hint):
            names |= _runtime_within(hint)
    return names


def _convert(value: Any, hint: Any, key: str, runtime: Mapping[str, Any]) -> Any:
    """``value`` as the field's type: nested dataclasses, tuples from lists."""
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        inner = _runtime_within(hint)
        return build(hint, value, key, **{k: v for k, v in runtime.items() if k in inner})
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _convert(value, options[0], key, runtime)
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(hint)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if inner is None:
            return tuple(_convert(v, a, key, runtime) for v, a in zip(value, args, strict=False))
        return tuple(_convert(v, inner, key, runtime) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def build(cls: type[T], section: Mapping[str, Any], key: str, **given: Any) -> T:
    """A ``cls`` from the config ``section`` at ``key`` (its fields only) and ``given`` values.

    ``given`` supplies the derived and runtime fields (runtime ones reach nested settings
    too, at any depth). A field found in neither is a :class:`ConfigError` naming the config
    key and the fix; so is a value the class's own checks refuse (with the field's own key
    when the check raises :class:`InvalidField`).
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name in given:
            values[field.name] = _convert(given[field.name], hints[field.name], key, given)
        elif field.name in section:
            child = f"{key}.{field.name}"
            values[field.name] = _convert(section[field.name], hints[field.name], child, given)
        else:
            raise ConfigError(
                f"missing config key '{key}.{field.name}': add it to the config "
                "(config/config.yaml holds every key with its default)"
            )
    try:
        return cls(**values)
    except InvalidField as error:
        raise ConfigError(f"config key '{key}.{error.field}': {error}") from None
    except ValueError as error:
        raise ConfigError(f"config key '{key}': {error}") from None


def _without_runtime(value: Any) -> Any:
    """A settings value as plain data, nested settings too, less their runtime fields."""
    if dataclasses.is_dataclass(value):
        return {
            field.name: _without_runtime(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if field.name not in _runtime(type(value))
        }
    if isinstance(value, list | tuple):
        return [_without_runtime(item) for item in value]
    return value


def to_json(settings: Any) -> str:
    """The settings as JSON (the runtime fields left out): a job's params.

    Fields keep their declaration order and mappings the config's order (a table's rows),
    so the text is the same for the same settings.
    """
    return json.dumps(_without_runtime(settings))


def from_json(cls: type[T], text: str, **runtime: Any) -> T:
    """A settings object from :func:`to_json`'s text plus its runtime fields."""
    return build(cls, json.loads(text), "--settings", **runtime)


def merged(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``override`` merged in recursively (a variant over shared settings)."""
    result = dict(base)
    for name, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(result.get(name), Mapping):
            result[name] = merged(result[name], value)
        else:
            result[name] = value
    return result
