"""One home per setting: the schema, the default config and the settings classes agree.

The schema holds each key's type and checks, config/config.yaml its default, one settings
dataclass (built by iusynth.jobs) the code that reads it; these tests keep the three in
step, and keep torch out of what the Snakefile imports.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import typing

import pytest
import yaml

from iusynth import jobs
from iusynth.core import modalities
from iusynth.core.settings import ConfigError, build, from_json, to_json
from iusynth.evaluation.settings import SSIM_MODES
from iusynth.experiments.segmentation.settings import NETWORK_SETTINGS
from iusynth.model.config import (
    FUSIONS,
    KL_ESTIMATORS,
    OUTPUT_MASKS,
    POE_WEIGHTINGS,
    ModelConfig,
    TranslatorConfig,
)
from iusynth.training.settings import SUBSET_MODES

from .conftest import DEFAULTS, REPO

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
# Keys the Snakefile itself reads (job counts, resources, which cohorts and methods run),
# not a job's settings.
WORKFLOW_KEYS = {
    "demo": {"cohorts"},
    "evaluation": {"threads", "gpus", "lpips_weights", "lpips_source"},
    "registration_experiment": {"model", "threads", "gpus", "experiment"},
    "segmentation": {
        "cohort",
        "threads",
        "gpus",
        "methods",
        "trainval_test_subjects",
        "sweeps",
        "network",
    }
    | set(NETWORK_SETTINGS),
    "preprocessing": {"trainval_cohort", "test_cohort", "splits"},
    "preprocessing.splits": {"source"},  # resolved (auto) by the workflow: a derived field
}


def schema_at(path: str) -> dict:
    """The schema of the config section at a dotted path."""
    node = SCHEMA
    for part in path.split("."):
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
        if "$ref" in node:
            node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def fields_of(cls: type) -> set[str]:
    """A settings class's config keys: its fields, less the derived and runtime ones."""
    given = set(getattr(cls, "DERIVED", ())) | set(getattr(cls, "RUNTIME", ()))
    return {f.name for f in dataclasses.fields(cls)} - given


def nested(cls: type) -> dict[str, type]:
    """The fields of a settings class that are settings classes themselves."""
    hints = typing.get_type_hints(cls)
    return {name: hints[name] for name in fields_of(cls) if dataclasses.is_dataclass(hints[name])}


@pytest.mark.parametrize("binding", jobs.BINDINGS, ids=lambda b: b.settings.__name__)
def test_every_settings_field_is_a_key_of_its_schema_section(binding):
    def check(cls: type, path: str) -> None:
        properties = set(schema_at(path)["properties"])
        extra = fields_of(cls) - properties
        assert not extra, f"{cls.__name__} reads {sorted(extra)}, not keys of '{path}'"
        for name, inner in nested(cls).items():
            check(inner, f"{path}.{name}")

    check(binding.settings, binding.section)


def test_every_key_of_a_settings_section_is_read_by_a_job_or_the_workflow():
    read: dict[str, set[str]] = {}

    def collect(cls: type, path: str) -> None:
        read.setdefault(path, set()).update(f.name for f in dataclasses.fields(cls))
        for name, inner in nested(cls).items():
            collect(inner, f"{path}.{name}")

    for binding in jobs.BINDINGS:
        collect(binding.settings, binding.section)
    for path, keys in read.items():
        unread = set(schema_at(path)["properties"]) - keys - WORKFLOW_KEYS.get(path, set())
        assert not unread, f"'{path}' keys {sorted(unread)} are read by no job"


# the networks' architectures default to the paper's model, checked against config/paper.yaml
# (tests/test_model.py::test_the_code_defaults_are_the_paper_model_of_config_paper_yaml)
PAPER_DEFAULTS = (ModelConfig, TranslatorConfig)


def test_settings_classes_hold_no_defaults():
    for binding in jobs.BINDINGS:
        for cls in (binding.settings, *nested(binding.settings).values()):
            if cls in PAPER_DEFAULTS:
                continue
            defaulted = [
                f.name
                for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING
            ]
            assert not defaulted, f"{cls.__name__} defaults {defaulted}: config.yaml holds them"


def test_schema_lists_are_the_code_definitions():
    def enum(path: str, key: str) -> list:
        return schema_at(path)["properties"][key]["enum"]

    architecture = "models.architecture"
    assert enum(architecture, "fusion") == list(FUSIONS)
    assert enum(architecture, "poe") == list(POE_WEIGHTINGS)
    assert enum(architecture, "kl") == list(KL_ESTIMATORS)
    assert enum(architecture, "output_mask") == list(OUTPUT_MASKS)
    assert enum("models.training", "subsets") == list(SUBSET_MODES)
    assert enum("evaluation", "ssim") == list(SSIM_MODES)
    assert schema_at(architecture)["properties"]["modalities"]["items"]["enum"] == list(
        modalities.MODALITIES
    )
    assert SCHEMA["$defs"]["modality_subset"]["items"]["enum"] == list(modalities.MODALITIES)


def test_settings_travel_as_json_and_keep_their_order():
    tables = jobs.tables(DEFAULTS)
    again = from_json(type(tables), to_json(tables))
    assert again == tables and list(again.table1) == list(DEFAULTS["evaluation"]["table1"])
    registration = jobs.registration(DEFAULTS, threads=3)
    assert "threads" not in to_json(registration)  # runtime: no rerun on a thread change
    assert from_json(type(registration), to_json(registration), threads=3) == registration


def test_a_missing_key_is_named_with_its_fix():
    section = dict(DEFAULTS["preprocessing"]["splits"])
    del section["seed"]
    with pytest.raises(ConfigError, match=r"missing config key 'preprocessing\.splits\.seed'"):
        build(type(jobs.splits(DEFAULTS)), section, "preprocessing.splits")


def test_image_size_follows_the_slices():
    config = {**DEFAULTS, "preprocessing": {**DEFAULTS["preprocessing"], "slice_size": [128, 128]}}
    assert jobs.model(config, "mmhvae").image_size == 128
    assert jobs.baseline(config, "mmgan", "any", 0).translator.image_size == 128
    assert "image_size" not in schema_at("models.architecture")["properties"]


def torch_imported(code: str) -> bool:
    script = f"import sys\n{code}\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().endswith("True")


def test_core_and_the_snakefile_do_not_import_torch():
    assert not torch_imported("import iusynth.core, iusynth.jobs")
    snakefile = REPO / "workflow" / "Snakefile"
    parse = (
        "from pathlib import Path\n"
        "from snakemake.api import SnakemakeApi\n"
        "from snakemake.settings.types import ConfigSettings, ResourceSettings\n"
        "with SnakemakeApi() as api:\n"
        f"    api.workflow(ResourceSettings(), ConfigSettings(), snakefile=Path('{snakefile}'),"
        f" workdir=Path('{REPO}'))\n"
    )
    assert not torch_imported(parse)
    assert torch_imported("import iusynth.model.network")  # the check can see torch


def test_modules_and_functions_stay_small():
    too_long = []
    for path in sorted((REPO / "src" / "iusynth").rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 600:
            too_long.append(f"{path.relative_to(REPO)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    too_long.append(f"{path.relative_to(REPO)}: {node.name}() {length} lines")
    assert not too_long, "\n".join(too_long)
