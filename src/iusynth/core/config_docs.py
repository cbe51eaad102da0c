"""The configuration reference, ``config/README.md``, generated from the schema and defaults.

Each key's type, range and description live in ``workflow/schemas/config.schema.yaml``, its
default in ``config/config.yaml`` (see :mod:`iusynth.core.settings`); this module writes
one Markdown table per config section from the two, so the reference cannot drift from
them (``tests/test_docs.py`` compares the file with a fresh rendering). Regenerate with::

    python -m iusynth.core.config_docs > config/README.md

A ``$defs`` entry used in several places (the cohort keys, the model architecture...) is
listed in full where it first appears and named from the others. Only the standard library
and yaml are imported: no torch.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from iusynth.core.config import DEFAULTS_FILE, REPOSITORY, SCHEMA_FILE

COMMAND = "python -m iusynth.core.config_docs > config/README.md"
NOT_SET = "not set"

INTRO = f"""\
# Configuration reference

Generated from the schema (`{SCHEMA_FILE.as_posix()}`: each key's type, allowed values
and description) and the defaults (`{DEFAULTS_FILE.as_posix()}`). Edit those, then run
`{COMMAND}`; `tests/test_docs.py` fails while this file is stale.

Snakemake reads `config/config.yaml` (the offline demo), then every `--configfile` given,
merged key by key over it. The overlays shipped in this folder:

| file | what it changes |
| --- | --- |
| `micro.yaml` | a tiny demo for the test suite: the whole DAG in minutes |
| `paper.yaml` | the paper's model sizes and schedules, every slice evaluated (GPU) |
| `remind.yaml` | real ReMIND as the paired train/validation cohort |
| `resect.yaml` | real RESECT with RESECT-SEG's masks as the test cohort |
| `upenn.yaml` | real UPenn-GBM (the package you downloaded) as the MR-only cohort |

Every key is checked against the schema before any job runs, then every job's settings
are built once; a mistake stops the run with a message that names the key, e.g.
`unknown config key 'demo.sede'` or
`config key 'demo.cohorts.remind.subjects': 'six' is not of type 'integer'`.
Keys marked *{NOT_SET}* are optional and absent from the defaults. `<name>` stands for a
name you choose; `[]` for each item of a list. The method behind the keys:
[docs/method.md](../docs/method.md); the datasets: [docs/datasets.md](../docs/datasets.md);
GPUs and SLURM: [docs/gpu-and-cluster.md](../docs/gpu-and-cluster.md).
"""


@dataclass
class Walk:
    """What a rendering needs while it walks the schema: the ``$defs`` and where each went."""

    definitions: Mapping[str, Any]
    listed_at: dict[str, str] = field(default_factory=dict)  # $ref -> key it was listed under


def resolve(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """A schema node with its ``$ref`` followed; the node's own keywords win (description)."""
    reference = node.get("$ref")
    if reference is None:
        return dict(node)
    target = definitions[reference.rsplit("/", 1)[1]]
    return {**resolve(target, definitions), **{k: v for k, v in node.items() if k != "$ref"}}


def format_value(value: Any) -> str:
    """A value as YAML flow text: ``null``, ``true``, ``[T2, ceT1]``, ``{source: demo}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _bounds(node: Mapping[str, Any]) -> list[str]:
    """The numeric limits of a node, e.g. ``>= 1``, ``< 180``."""
    limits = [
        (">=", "minimum"),
        (">", "exclusiveMinimum"),
        ("<=", "maximum"),
        ("<", "exclusiveMaximum"),
    ]
    return [f"{sign} {format_value(node[key])}" for sign, key in limits if key in node]


def _items_text(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> str:
    """What a list holds and how many, e.g. ``list of number >= 0 (2 items)``."""
    items = resolve(node.get("items", {}), definitions)
    low, high = node.get("minItems"), node.get("maxItems")
    notes = []
    if low is not None and low == high:
        notes.append(f"{low} items")
    elif low is not None and low > 1:
        notes.append(f"at least {low}")
    if node.get("uniqueItems"):
        notes.append("no repeats")
    text = f"list of {type_text(items, definitions)}"
    return f"{text} ({', '.join(notes)})" if notes else text


def type_text(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> str:
    """The type of a key in words: ``integer >= 1``, ``one of `rigid`, `affine```..."""
    node = resolve(node, definitions)
    if "enum" in node:
        return "one of " + ", ".join(f"`{format_value(v)}`" for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(type_text(option, definitions) for option in node["oneOf"])
    kinds = node.get("type", "")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if "array" in kinds:
        return _items_text(node, definitions)
    if "object" in kinds:
        if "properties" in node:
            return "section"
        values = node.get("additionalProperties")
        inner = type_text(values, definitions) if isinstance(values, Mapping) else "value"
        return f"map: name -> {inner}"
    text = " or ".join(kinds) or "any"
    if node.get("minLength") == 1:
        text = f"non-empty {text}"
    if "pattern" in node:
        text += f" matching `{node['pattern']}`"
    limits = _bounds(node)
    return f"{text} {', '.join(limits)}" if limits else text


# Defaults of keys absent from config.yaml, and of keys under a ``<name>`` or ``[]`` entry
_ABSENT = object()
_ENTRY = object()


def _row(key: str, node: Mapping[str, Any], default: Any, walk: Walk, expanded: bool) -> str:
    """One table row: the key, its type, its default and its description."""
    description = " ".join(str(node.get("description", "")).split())
    description = description.replace("*", "\\*").replace("<", "&lt;")  # plain text
    if expanded or default is _ENTRY:
        default_text = ""
    elif default is _ABSENT:
        default_text = f"*{NOT_SET}*"
    else:
        default_text = f"`{format_value(default)}`"
    cells = [f"`{key}`", type_text(node, walk.definitions), default_text, description]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _child(default: Any, name: str) -> Any:
    """The default of a sub-key: its value, ``_ABSENT`` or ``_ENTRY``."""
    if default is _ENTRY:
        return _ENTRY
    return default.get(name, _ABSENT) if isinstance(default, Mapping) else _ABSENT


def _children(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> Iterator[tuple]:
    """The sub-keys of a node listed under it: (suffix, schema node, is a named entry)."""
    for name, child in node.get("properties", {}).items():
        yield f".{name}", child, False
    for option in node.get("oneOf", []):
        for name, child in resolve(option, definitions).get("properties", {}).items():
            yield f".{name}", child, False
    values = node.get("additionalProperties")
    if isinstance(values, Mapping) and "properties" in resolve(values, definitions):
        yield ".<name>", values, True
    items = node.get("items")
    if isinstance(items, Mapping) and "properties" in resolve(items, definitions):
        yield "[]", items, True


def rows(key: str, node: Mapping[str, Any], default: Any, walk: Walk) -> Iterator[str]:
    """The rows of a key and of everything under it (a repeated ``$defs`` entry named once)."""
    resolved = resolve(node, walk.definitions)
    reference = node.get("$ref")
    children = list(_children(resolved, walk.definitions))
    if reference in walk.listed_at and children:
        resolved["description"] = (
            f"{resolved.get('description', '')}; same keys as `{walk.listed_at[reference]}`"
        )
        yield _row(key, resolved, default, walk, expanded=False)
        return
    if reference is not None and children:
        walk.listed_at[reference] = key
    expanded = any(not named for _, _, named in children)
    yield _row(key, resolved, default, walk, expanded=expanded)
    for suffix, child, named in children:
        child_default = _ENTRY if named else _child(default, suffix[1:])
        yield from rows(f"{key}{suffix}", child, child_default, walk)


def render_section(name: str, node: Mapping[str, Any], default: Any, walk: Walk) -> str:
    """One top-level section: its heading, description and table of keys."""
    resolved = resolve(node, walk.definitions)
    lines = [f"## `{name}`", ""]
    description = " ".join(str(resolved.get("description", "")).split())
    if description:
        lines += [description[0].upper() + description[1:] + ".", ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    table = list(rows(name, node, default, walk))
    if "properties" in resolved:
        table = table[1:]  # the section itself: its description is the paragraph above
    return "\n".join([*lines, *table, ""])


def render_config_reference(schema: dict, defaults: dict) -> str:
    """``config/README.md``: the intro, then one table per top-level section of the schema."""
    walk = Walk(schema.get("$defs", {}))
    sections = [
        render_section(name, node, defaults.get(name, _ABSENT), walk)
        for name, node in schema["properties"].items()
    ]
    return "\n".join([INTRO, *sections])


def main() -> None:
    """Print the reference for this repository's schema and default config."""
    schema = yaml.safe_load((REPOSITORY / SCHEMA_FILE).read_text())
    defaults = yaml.safe_load((REPOSITORY / DEFAULTS_FILE).read_text())
    sys.stdout.write(render_config_reference(schema, defaults))


if __name__ == "__main__":
    main()
