"""Conda env files: they parse, and each lists every third-party module its rules import."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from pathlib import Path

import yaml

from .conftest import REPO

# import name -> conda package name, where they differ
CONDA_NAMES = {
    "yaml": "pyyaml",
    "SimpleITK": "simpleitk",
    "sklearn": "scikit-learn",
    "matplotlib": "matplotlib-base",
    "torch": "pytorch",
    "idc_index_data": "idc-index-data",
    "PIL": "pillow",
}
# a rule and its body, at top level or inside an ``if`` block
RULE = re.compile(r"^[ ]*rule (\w+):\n(.*?)(?=^[ ]*rule |^if |\Z)", re.S | re.M)


def rules() -> dict[str, tuple[Path, str]]:
    """rule name -> (conda env path, CLI stage it runs)."""
    found = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for name, body in RULE.findall(smk.read_text()):
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
            stage = re.search(r"\{params\.iusynth\} ([\w-]+)", body)
            assert env, f"rule {name} has no conda env"
            assert stage, f"rule {name} does not run a stage of the package"
            found[name] = ((smk.parent / env.group(1)).resolve(), stage.group(1))
    return found


def module_file(module: str) -> Path:
    parts = module.split(".")
    base = REPO / "src" / Path(*parts)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def third_party_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Top-level third-party modules imported (at any depth) by a package module."""
    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    found = set()
    for node in ast.walk(ast.parse(module_file(module).read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            if name.split(".")[0] == "iusynth":
                if module_file(name).is_file():
                    found |= third_party_imports(name, seen)
            elif name.split(".")[0] not in sys.stdlib_module_names:
                found.add(name.split(".")[0])
    return found


def stage_modules(stage: str) -> set[str]:
    """Package modules imported by the function of one stage (and the cli modules' own)."""
    from iusynth.cli import stages

    function = stages()[stage].run
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {"iusynth.cli", "iusynth.core.commands"} | {
        n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("iusynth")
    }


def test_every_env_file_parses_and_pins_python():
    for env in (REPO / "workflow" / "envs").glob("*.yaml"):
        spec = yaml.safe_load(env.read_text())
        assert "conda-forge" in spec["channels"], env
        assert any(str(dep).startswith("python") for dep in spec["dependencies"]), env


def test_each_rule_env_lists_what_its_code_imports():
    for rule, (env, stage) in rules().items():
        assert env.is_file(), f"rule {rule}: {env} missing"
        listed = {
            re.split(r"[ =<>!]", str(dep))[0]
            for dep in yaml.safe_load(env.read_text())["dependencies"]
        }
        imported = set().union(*(third_party_imports(m) for m in stage_modules(stage)))
        imported |= third_party_imports("iusynth.core.config")  # the Snakefile's own imports
        missing = {CONDA_NAMES.get(name, name.lower()) for name in imported} - listed
        assert not missing, (
            f"rule {rule} ({env.name}) imports {sorted(missing)} but its env lacks them"
        )
