"""The benchmark scripts keep working as the package changes."""

from __future__ import annotations

import functools
import importlib
import re

import numpy as np
import pytest

from benchmarks.performance_benchmark import kept_nnunet_row, mask_agreement

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


def test_the_gpu_benchmark_runs_its_code_path_on_the_cpu():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_benchmark", "--device", "cpu", "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for measure in ("forward, batch 4, bf16", "training, GAN on", "nnU-Net, one epoch"):
        assert measure in result.stdout


def test_performance_benchmark_compares_and_checks_equal_outputs():
    """The side-by-side benchmark's quick run: forward times, nnU-Net masks equal up to ties."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.performance_benchmark", "--quick", "--threads", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "max abs d 0.0e+00" in result.stdout  # inference path == training forward at T 0
    # batched nnU-Net == its per-plane call, but for voxels at a tie of the tumour probability
    agreement = re.search(r"voxels differing: (\d+) of (\d+), all within (\S+) of p", result.stdout)
    assert agreement is not None, result.stdout[-3000:]
    differing, voxels, margin = int(agreement[1]), int(agreement[2]), float(agreement[3])
    assert differing <= voxels // 1000
    assert margin < 1e-3


def test_mask_agreement_counts_flips_and_their_distance_from_a_tie():
    reference = np.array([[0, 1, 1], [0, 0, 1]], np.uint8)
    probability = np.array([[0.1, 0.9, 0.5004], [0.2, 0.4999, 0.8]], np.float32)
    masks = np.array([[0, 1, 0], [0, 1, 1]], np.uint8)
    agreement = mask_agreement(reference, probability, masks)
    assert agreement["differing"] == 2 and agreement["voxels"] == 6
    assert agreement["margin"] == pytest.approx(4e-4, abs=1e-6)
    assert mask_agreement(reference, probability, reference)["margin"] == 0.0


def test_a_kept_nnunet_row_names_the_commits_it_was_measured_on():
    page = (
        "old commit 684d545, new commit b2494b4; 3 rounds\n| what | old |\n"
        "| nnU-Net 5-fold ensemble (s) | 388.6 | 203.4 | 1.91x | Dice 0.37 vs 0.37 |\n"
    )
    row = kept_nnunet_row(page)
    assert row.startswith("| (kept: 684d545 vs b2494b4) nnU-Net 5-fold") and "388.6" in row
    later = f"old commit 684d545, new commit 1234567; 3 rounds\n{row}\n"
    assert kept_nnunet_row(later) == row  # kept twice: still the commits measured
    with pytest.raises(ValueError, match="no nnU-Net row"):
        kept_nnunet_row("old commit a, new commit b;\n")


def test_no_device_is_hard_coded_in_the_package():
    """Every tensor and module reaches its device through a device argument."""
    import re

    allowed = {"training/loop.py"}  # select_device: "auto" means CUDA when present
    for path in sorted((REPO / "src" / "iusynth").rglob("*.py")):
        relative = path.relative_to(REPO / "src" / "iusynth").as_posix()
        text = path.read_text()
        assert ".cuda(" not in text, relative
        if relative not in allowed:
            assert not re.search(r"torch\.device\(\s*[\"']cuda", text), relative


def test_the_efficiency_benchmark_measures_every_method_of_a_micro_config():
    from benchmarks import efficiency_benchmark
    from benchmarks.model_benchmark import merged
    from iusynth.methods import TRANSLATORS

    config = merged("micro.yaml")
    built = efficiency_benchmark.synthesizers(config)
    assert set(built) == {*efficiency_benchmark.VARIANTS, *TRANSLATORS}
    size = int(config["preprocessing"]["slice_size"][0])
    for name, (synthesizer, _) in built.items():
        assert efficiency_benchmark.macs_per_slice(synthesizer, size) > 0, name
    times = efficiency_benchmark.timings(built, size, rounds=1, device="cpu")
    assert all(len(values) == 1 and values[0] > 0 for values in times.values())


def test_importing_iusynth_first_makes_openmp_threads_wait_passively():
    import os
    import subprocess
    import sys

    script = (
        "import os, iusynth; from iusynth.core.threads import wait_passively; "
        "print(os.environ['OMP_WAIT_POLICY'], wait_passively())"
    )
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environment["PYTHONPATH"] = str(REPO / "src")
    run = functools.partial(subprocess.run, capture_output=True, text=True, check=True, cwd=REPO)
    assert run([sys.executable, "-c", script], env=environment).stdout.split() == [
        "PASSIVE", "True"
    ]  # fmt: skip
    chosen = {**environment, "OMP_WAIT_POLICY": "ACTIVE"}  # the user's own choice is kept
    assert run([sys.executable, "-c", script], env=chosen).stdout.split()[0] == "ACTIVE"
    late = "import torch, iusynth.core.threads as t; print(t.wait_passively())"
    assert run([sys.executable, "-c", late], env=environment).stdout.strip() == "False"


def test_the_contention_benchmark_runs_ours_quiet_and_busy_and_leaves_no_spinner():
    import subprocess
    import sys

    from benchmarks.contention_benchmark import REFERENCE, busy_processes

    with busy_processes(2) as spinners:
        assert all(spinner.poll() is None for spinner in spinners)
    assert all(spinner.poll() is not None for spinner in spinners)
    if not (REFERENCE / "small.pt").is_file():
        pytest.skip(f"{REFERENCE} is absent (the parity reference)")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.contention_benchmark", "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("| quiet") or line.startswith("| busy")
    ]
    assert len(rows) == 4  # quiet and busy, batch 1 and 2
    assert all(row.endswith("| 0.0e+00 |") for row in rows)  # the fast path == one forward
