"""The whole-demo benchmark's page: its section, rule table and scaling fit."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmarks import demo_benchmark
from benchmarks.demo_benchmark import (
    END,
    SCALING_END,
    SCALING_START,
    START,
    linear_fit,
    rule_table,
    scaling_section,
    section,
    write_section,
)


def run(seconds: float, rules: dict[str, tuple[int, float, float]], commit: str = "c0ffee") -> dict:
    """A demo run as run_demo returns it: rule -> (jobs, job seconds, peak RSS MB)."""
    frame = pd.DataFrame(
        [
            {"rule": r, "jobs": j, "total_s": s, "mean_s": s / j, "max_s": s, "peak_rss_mb": m}
            for r, (j, s, m) in rules.items()
        ]
    )
    return {"seconds": seconds, "jobs": int(frame["jobs"].sum()), "commit": commit, "rules": frame}


def test_linear_fit_recovers_a_line_and_reports_curvature():
    a, b, worst = linear_fit([4, 8, 16], [100.0 + 10 * n for n in (4, 8, 16)])
    assert a == pytest.approx(100.0) and b == pytest.approx(10.0) and worst < 1e-9
    assert linear_fit([4, 8, 16], [16.0, 64.0, 256.0])[2] > 0.1  # quadratic: residuals


def test_the_section_compares_the_runs_and_replaces_itself(tmp_path):
    rules = {"synthesise": (72, 1801.0, 800.0), "train_model": (10, 541.0, 1800.0)}
    old = run(2857.0, rules, "0ld")
    new = run(1100.0, {"synthesise_remind": (12, 300.0, 700.0), "train_model": (10, 600.0, 900.0)})
    lines = rule_table(old, new)
    assert any(line.startswith("| synthesise | 72 | - |") for line in lines)
    text = section(Path("."), old, new, 2, "python -m x")
    assert "**2.60x**" in text and "rule train_model" in text and "within" in text
    assert "| old (0ld) | 82 |" in text and "| new (c0ffee) | 22 |" in text
    page = tmp_path / "performance.md"
    page.write_text("# Inference speed\n\nkept\n")
    write_section(page, text)
    write_section(page, text.replace("2.60x", "9.99x"))
    written = page.read_text()
    assert written.count(START) == written.count(END) == 1
    assert "kept" in written and "9.99x" in written and "2.60x" not in written


def test_without_an_old_run_the_section_reports_the_new_demo_alone():
    new = run(1100.0, {"synthesise_remind": (12, 300.0, 700.0), "train_model": (10, 600.0, 900.0)})
    text = section(None, None, new, 2, "python -m x")
    assert "18 min 20 s" in text and "Speed-up" not in text and "no older commit" in text
    assert "| train_model | - | 10 | - | 600 | 900 |" in text


def test_a_finished_run_is_read_back_with_reuse(tmp_path, monkeypatch):
    workdir = tmp_path / "new"
    (workdir / "results" / "benchmarks" / "train_model").mkdir(parents=True)
    benchmark = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    benchmark += "12.5\t0:00:12\t900\t1\t1\t1\t0\t0\t100\t12\n"
    (workdir / "results" / "benchmarks" / "train_model" / "mmhvae.tsv").write_text(benchmark)
    (workdir / "run.json").write_text('{"seconds": 1100.0, "jobs": 1, "commit": "abc1234"}')
    monkeypatch.setattr(demo_benchmark.subprocess, "run", lambda *a, **k: pytest.fail("ran"))
    run = demo_benchmark.run_demo(Path("."), workdir, 2, [], reuse=True)
    assert run["seconds"] == 1100.0 and run["commit"] == "abc1234"
    assert run["rules"]["peak_rss_mb"].tolist() == [900]


def test_the_scaling_section_fits_a_line_and_lives_beside_the_comparison(tmp_path):
    one = scaling_section([(4, 500.0, 150)], "c0ffee", 2, "python -m x --scaling 4 8")
    assert "| 4 | 150 | 8 min 20 s |" in one and "Fit" not in one
    two = scaling_section([(4, 500.0, 150), (8, 900.0, 270)], "c0ffee", 2, "python -m x")
    assert "a = 100 s, b = 100 s per subject" in two and "commit c0ffee" in two
    page = tmp_path / "performance.md"
    page.write_text(f"# Inference speed\n\n{START}\ncomparison\n{END}\n")
    write_section(page, one, (SCALING_START, SCALING_END))
    write_section(page, two, (SCALING_START, SCALING_END))
    written = page.read_text()
    assert written.count(SCALING_START) == written.count(SCALING_END) == 1
    assert "comparison" in written and "b = 100 s per subject" in written


def test_the_scaling_overlay_sizes_every_demo_cohort_and_keeps_the_folds_valid(tmp_path):
    overlay = yaml.safe_load(demo_benchmark.subjects_overlay(tmp_path, 4).read_text())
    assert {c["subjects"] for c in overlay["demo"]["cohorts"].values()} == {4}
    assert set(overlay["demo"]["cohorts"]) == {"remind", "upenn", "resect"}
    assert overlay["preprocessing"]["splits"]["folds"] <= 4
