"""Shared fixtures: small demo settings and simulated subjects (coarse grids, for speed)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from iusynth import jobs
from iusynth.cohorts.datasets.download import RetryPolicy
from iusynth.cohorts.demo.generate import SimulatedSubject, generate_subject
from iusynth.cohorts.demo.plan import DemoSubjectPlan, plan_cohort
from iusynth.cohorts.demo.settings import DemoSettings
from iusynth.core.config import merge_config

REPO = Path(__file__).resolve().parents[1]


def merged_config(*overrides: dict) -> dict:
    """The default config with overrides merged in recursively (as snakemake does)."""
    return merge_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), *overrides)


DEFAULTS = merged_config()
PAPER = merged_config(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))


def defaults(builder: Callable[..., Any], *args: Any, **replace: Any) -> Any:
    """The settings a job of the default config gets (``iusynth.jobs``), some fields replaced."""
    settings = builder(DEFAULTS, *args)
    return dataclasses.replace(settings, **replace) if replace else settings


def policy(attempts: int = 1) -> RetryPolicy:
    """A quick retry policy for loopback tests."""
    return RetryPolicy(attempts=attempts, backoff_s=0.0, connect_timeout_s=5, read_timeout_s=30)


def rule_stages() -> set[str]:
    """The stages the workflow's rules run (``{params.iusynth} <stage>`` in their shell)."""
    rules = "\n".join(path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk"))
    return set(re.findall(r"\{params\.iusynth\} ([a-z][a-z-]+)", rules))


def demo_plans(config: dict, cohort: str) -> list[DemoSubjectPlan]:
    """The planned subjects of one demo cohort of a config."""
    dataset = config["cohorts"][cohort]["dataset"]
    return plan_cohort(cohort, dataset, config["demo"]["seed"], jobs.demo_cohort(config, cohort))


@pytest.fixture(scope="session")
def micro_config() -> dict:
    """Default config with config/micro.yaml merged in."""
    return merged_config(yaml.safe_load((REPO / "config" / "micro.yaml").read_text()))


@pytest.fixture(scope="session")
def demo_settings(micro_config: dict) -> DemoSettings:
    """Simulation settings of the micro config."""
    return jobs.demo(micro_config)


@pytest.fixture(scope="session")
def generated(
    micro_config: dict, demo_settings: DemoSettings, tmp_path_factory
) -> dict[str, tuple[SimulatedSubject, Path]]:
    """One generated subject per cohort of the micro config: {cohort: (subject, folder)}."""
    root = tmp_path_factory.mktemp("demo")
    subjects = {}
    for cohort in ("remind", "upenn", "resect"):
        plan = demo_plans(micro_config, cohort)[0]
        folder = root / cohort / plan.subject
        subjects[cohort] = (generate_subject(plan, demo_settings, folder), folder)
    return subjects


def mean_where(volume: np.ndarray, mask: np.ndarray) -> float:
    """Mean of a volume over a mask, failing loudly when the mask is empty."""
    assert mask.sum() > 20, "too few voxels of this tissue to compare"
    return float(volume[mask].mean())
