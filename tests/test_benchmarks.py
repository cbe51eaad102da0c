"""The benchmark scripts keep working as the package changes."""

from __future__ import annotations

import importlib

import pytest

from .conftest import REPO

SCRIPTS = sorted(path.stem for path in (REPO / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_scripts_import(name):
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(getattr(module, "main", None)), f"benchmarks/{name}.py has no main()"


def test_the_model_benchmark_measures_a_micro_model():
    from benchmarks import model_benchmark

    lines = model_benchmark.section_for("micro", model_benchmark.merged("micro.yaml"), False)
    text = "\n".join(lines)
    assert "| total |" in text and "CPU forward per slice" in text
