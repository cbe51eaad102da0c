"""Killed trainers: no orphan process, no temporary file left, the rerun ends as if unkilled."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from iusynth.core.processes import SUPERVISOR_VARIABLE
from iusynth.core.settings import to_json
from iusynth.training.settings import VariantSettings

from .test_checkpoint_binding import FAST, FAST_TRAINING, assert_same_weights, volume, weights

TRAINING = dataclasses.replace(FAST_TRAINING, epochs=24)  # a signal lands mid-run
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
ENV.pop(SUPERVISOR_VARIABLE, None)
TIMEOUT_S = 240

# A parent that starts the trainer (directly, or through a shell as Snakemake does) and
# prints the trainer's pid; it names itself the supervisor, as the workflow does
PARENT = """
import os, subprocess, sys, time
from pathlib import Path
from iusynth.core.processes import supervise_jobs
shell = sys.argv[1] == "shell"
supervise_jobs()
if shell:
    child = subprocess.Popen(["bash", "-c", sys.argv[2]])
else:
    child = subprocess.Popen(sys.argv[2:])
pid = child.pid
while shell and pid == child.pid:  # the shell's child is the trainer
    found = Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()
    pid = int(found[0]) if found else pid
    time.sleep(0.05)
print(pid, flush=True)
child.wait()
"""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Two subjects' slice stacks on disk and a one-fold splits.json."""
    root = tmp_path_factory.mktemp("cohort")
    for seed, subject in ((1, "A"), (2, "B")):
        made = volume(seed, subject)
        folder = root / "slices" / subject
        folder.mkdir(parents=True)
        np.save(folder / "images.npy", np.asarray(made.images))
        np.save(folder / "fov.npy", np.asarray(made.fov))
        (folder / "meta.json").write_text(json.dumps({**made.meta, "labels": []}))
    splits = {"folds": [{"train": ["A", "B"], "val": []}]}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


def command(cohort: Path, folder: Path) -> list[str]:
    """The trainer's command line (as the train_model rule runs it)."""
    settings = to_json(VariantSettings(fold=0, model=FAST, training=TRAINING))
    return [
        sys.executable,
        "-m",
        "iusynth",
        "train",
        "--variant",
        "fast",
        "--settings",
        settings,
        "--splits",
        str(cohort / "splits.json"),
        "--slices",
        str(cohort / "slices"),
        "--checkpoint",
        str(folder / "checkpoint.pt"),
        "--losses",
        str(folder / "losses.csv"),
        "--output",
        str(folder / "model.pt"),
        "--threads",
        "1",
    ]


def train_to_the_end(cohort: Path, folder: Path) -> str:
    """Run the trainer to completion; its log."""
    done = subprocess.run(
        command(cohort, folder), env=ENV, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def uninterrupted(cohort, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The weights of a run nobody killed."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    train_to_the_end(cohort, folder)
    return weights(folder / "model.pt")


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_for(path: Path, process: subprocess.Popen) -> None:
    """Wait until the trainer wrote ``path`` (its first checkpoint)."""
    deadline = time.monotonic() + TIMEOUT_S
    while not path.is_file():
        assert process.poll() is None, "the trainer ended before its first checkpoint"
        assert time.monotonic() < deadline, f"no {path} after {TIMEOUT_S} s"
        time.sleep(0.05)


def wait_until_dead(pid: int, seconds: float) -> float:
    """Seconds until ``pid`` is gone (fails after ``seconds``)."""
    start = time.monotonic()
    while alive(pid):
        assert time.monotonic() - start < seconds, f"process {pid} still runs after {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - start


def assert_clean_rerun(cohort: Path, folder: Path, expected: dict[str, torch.Tensor]) -> None:
    """The rerun resumes, ends with ``expected`` weights and leaves no temporary file."""
    log = train_to_the_end(cohort, folder)
    assert "resumed from" in log
    assert_same_weights(weights(folder / "model.pt"), expected)
    assert not [p.name for p in folder.iterdir() if ".part" in p.name]
    assert not [p.name for p in folder.iterdir() if p.stat().st_size == 0]


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name
)
def test_a_killed_trainer_reruns_to_the_same_weights(cohort, uninterrupted, tmp_path, signum):
    folder = tmp_path / "variant"
    log = tmp_path / "trainer.log"
    with open(log, "w") as stderr:
        trainer = subprocess.Popen(
            command(cohort, folder),
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            # a shell's background job (CI started with &) ignores SIGINT, and so would
            # the trainer: give it the default disposition that a terminal's Ctrl-C meets
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    wait_for(folder / "checkpoint.pt", trainer)
    trainer.send_signal(signum)
    assert trainer.wait(timeout=60) != 0, log.read_text()[-3000:]
    assert not (folder / "model.pt").exists()
    assert_clean_rerun(cohort, folder, uninterrupted)


@pytest.mark.parametrize("via", ["direct", "shell"])
def test_killing_the_parent_alone_ends_the_trainer(cohort, uninterrupted, tmp_path, via):
    folder = tmp_path / "variant"
    trainer_command = command(cohort, folder)
    arguments = (
        [f"set -euo pipefail; {shlex.join(trainer_command)} > {tmp_path / 'log'} 2>&1"]
        if via == "shell"
        else trainer_command
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, via, *arguments], env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        trainer = int(parent.stdout.readline())
        deadline = time.monotonic() + TIMEOUT_S
        while b"iusynth\0train" not in Path(f"/proc/{trainer}/cmdline").read_bytes():
            assert time.monotonic() < deadline, f"process {trainer} is not the trainer"
            time.sleep(0.05)
        while not (folder / "checkpoint.pt").is_file():
            assert alive(trainer), "the trainer ended before its first checkpoint"
            assert time.monotonic() < deadline, f"no checkpoint after {TIMEOUT_S} s"
            time.sleep(0.05)
        parent.kill()  # SIGKILL: the parent cannot pass anything on
        parent.wait()
        wait_until_dead(trainer, seconds=10)
    finally:
        parent.kill()
        parent.wait()
    assert not (folder / "model.pt").exists()
    assert_clean_rerun(cohort, folder, uninterrupted)


# A stage that starts a long external program (as nipype starts NiftyReg) and waits for it
STAGE_WITH_A_CHILD = """
import subprocess
from iusynth.core.processes import die_with_parent
die_with_parent()
program = subprocess.Popen(["sleep", "120"])
print(program.pid, flush=True)
program.wait()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_terminated_stage_ends_the_programs_it_started(signum):
    supervised = {**ENV, SUPERVISOR_VARIABLE: str(os.getpid())}  # a job of this run
    stage = subprocess.Popen(
        [sys.executable, "-c", STAGE_WITH_A_CHILD],
        env=supervised,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        program = int(stage.stdout.readline())
        stage.send_signal(signum)
        assert stage.wait(timeout=30) == 128 + signum  # a Terminated exit, not a crash
        wait_until_dead(program, seconds=10)
    finally:
        stage.kill()
        stage.wait()
