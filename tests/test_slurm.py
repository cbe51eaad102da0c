"""The cluster profile against a real SLURM: a one-node cluster started on this machine.

tests/slurm/start_cluster.sh installs Debian's slurm-wlm when missing, starts munged,
slurmctld and slurmd on 127.0.0.1 and waits for the node to be idle; stop_cluster.sh
ends them. Skipped, with the reason, where the cluster cannot be started within 3 minutes
(not root, no package registry). A job of the micro workflow is then submitted through
profiles/slurm and its SLURM record checked against the rule's resources.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO

SCRIPTS = REPO / "tests" / "slurm"
TARGET = (
    "results/cohorts/template_anatomy.npz"  # rule prepare_demo_template: 1 thread, 4000 MB, 15 min
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A running one-node SLURM, stopped (nothing left running) after the tests."""
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM needs root")
    try:
        started = subprocess.run(
            ["bash", str(SCRIPTS / "start_cluster.sh")],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh")], timeout=60)
        pytest.skip("the one-node SLURM did not start within 3 minutes")
    if started.returncode != 0:
        pytest.skip(f"the one-node SLURM did not start: {started.stderr[-500:]}")
    yield
    subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh")], timeout=60)
    for daemon in ("slurmd", "slurmctld", "munged"):
        left = subprocess.run(["pgrep", "-x", daemon], capture_output=True)
        assert left.returncode == 1, f"{daemon} left running: {left.stdout!r}"


def profile_without_conda(folder: Path) -> Path:
    """profiles/slurm as it is, less its conda deployment: this machine has no conda."""
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    kept = [line for line in text.splitlines() if not line.startswith("software-deployment")]
    folder.mkdir()
    (folder / "config.yaml").write_text("\n".join(kept) + "\n")
    return folder


def test_a_job_is_submitted_through_the_profile_with_its_rule_resources(cluster, tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable, "-m", "snakemake", TARGET, "-s", str(REPO / "workflow" / "Snakefile"),
            "--profile", str(profile_without_conda(tmp_path / "profile")),
            "--configfile", str(REPO / "config" / "micro.yaml"), "-d", str(workdir),
            # no accounting daemon here: job states come from squeue, not sacct
            "--slurm-status-command", "squeue",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: ([^)]+)\)", output)
    assert len(submitted) == 1, output[-4000:]
    job, log = submitted[0]
    assert (workdir / TARGET).is_file()
    # the stage's own log is the rule's; the job's SLURM log, named by rule, is removed
    # once the job succeeded (the plugin keeps failed jobs' logs)
    assert (workdir / "results" / "logs" / "prepare_demo_template.log").is_file()
    assert "/slurm_logs/rule_prepare_demo_template/" in log
    record = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, check=True
    ).stdout
    assert "JobState=COMPLETED" in record, record
    # the rule's threads, mem_mb and runtime reached sbatch
    assert "NumCPUs=1 " in record and "MinMemoryNode=4000M" in record, record
    assert "TimeLimit=00:15:00" in record, record
