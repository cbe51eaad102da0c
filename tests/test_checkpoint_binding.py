"""Checkpoints are bound to their data: one of other data is set aside, never resumed."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from iusynth.core.fileio import remove_stale_parts
from iusynth.preprocessing.slices import SliceStack
from iusynth.training.data import stack_digest, training_digest
from iusynth.training.mmhvae import train

from .conftest import defaults
from .test_model import TINY, TINY_TRAINING, stack

# A model and schedule small enough to train an epoch in well under a second on one core
FAST = dataclasses.replace(TINY, image_size=16, downsamplings=2, latent_levels=2, max_channels=4)
FAST_TRAINING = dataclasses.replace(
    TINY_TRAINING,
    epochs=4,
    checkpoint_every=2,
    batch_slices=2,
    subset_sampling="random",
    kl_warmup_epochs=1,
    gan_start_epoch=100,
    discriminator_start_epoch=100,
    optimiser_reset_epoch=100,
    device="cpu",
)


@pytest.fixture(autouse=True)
def one_thread():
    """Train on one thread (fast on a busy machine), then restore torch's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def volume(seed: int, subject: str) -> SliceStack:
    """A small slice stack of one named subject."""
    made = stack(seed, slices=3, size=16)
    return dataclasses.replace(made, meta={**made.meta, "subject": subject})


def run(stacks: list[SliceStack], folder: Path, stop_after: int | None = None):
    """Train the fast variant in ``folder`` (model.pt, checkpoint.pt, losses.csv)."""
    paths = (folder / "model.pt", folder / "checkpoint.pt", folder / "losses.csv")
    return train(FAST, FAST_TRAINING, stacks, [], *paths, stop_after=stop_after)


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The generator weights of a model.pt."""
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bit-identical state dicts."""
    assert list(a) == list(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def edited(original: SliceStack) -> SliceStack:
    """The same subject with one voxel of its images changed (a re-exported stack)."""
    images = np.array(original.images)
    images[0, 0, 0, 0] += 0.25
    return dataclasses.replace(original, images=images)


FIRST = [volume(1, "A"), volume(2, "B")]
CHANGES = {
    "split": [volume(1, "A"), volume(3, "C")],
    "order": [FIRST[1], FIRST[0]],
    "slices": [FIRST[0], edited(FIRST[1])],
}


def test_the_digest_follows_subjects_order_content_and_settings():
    settings = {"training": dataclasses.asdict(FAST_TRAINING)}
    digest = training_digest(settings, FIRST, [])
    assert digest == training_digest(settings, [volume(1, "A"), volume(2, "B")], [])
    others = [training_digest(settings, change, []) for change in CHANGES.values()]
    others.append(training_digest({"training": {"epochs": 5}}, FIRST, []))
    others.append(training_digest(settings, FIRST, [volume(4, "D")]))
    assert len({digest, *others}) == len(others) + 1
    assert stack_digest(FIRST[1]) != stack_digest(edited(FIRST[1]))


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_checkpoint_of_other_data_is_set_aside_and_training_starts_afresh(
    tmp_path, caplog, change
):
    folder = tmp_path / "variant"
    run(FIRST, folder)
    old_model = (folder / "model.pt").read_bytes()
    old_checkpoint = (folder / "checkpoint.pt").read_bytes()
    data = CHANGES[change]
    with caplog.at_level(logging.WARNING, logger="iusynth"):
        partial = run(data, folder, stop_after=2)
    assert [row["epoch"] for row in partial.history] == [1, 2]  # not "resumed at epoch 4"
    (stale,) = folder.glob("checkpoint.stale-*.pt")
    assert stale.read_bytes() == old_checkpoint  # kept, not deleted
    assert (folder / "model.pt").read_bytes() == old_model  # untouched until replaced
    message = caplog.text
    assert str(folder / "checkpoint.pt") in message and stale.name in message
    assert "trained on other data or settings" in message and "training from scratch" in message
    run(data, folder)  # resumes the new checkpoint, replaces model.pt
    run(data, tmp_path / "fresh")
    assert_same_weights(weights(folder / "model.pt"), weights(tmp_path / "fresh" / "model.pt"))
    assert [p.name for p in folder.glob("checkpoint.stale-*")] == [stale.name]


def test_same_data_resumes_bit_identically_and_records_the_digest(tmp_path, caplog):
    straight = tmp_path / "straight"
    run(FIRST, straight)
    killed = tmp_path / "killed"
    run(FIRST, killed, stop_after=2)
    with caplog.at_level(logging.INFO, logger="iusynth"):
        run(FIRST, killed)
    assert "resumed from" in caplog.text and "at epoch 2" in caplog.text
    assert_same_weights(weights(straight / "model.pt"), weights(killed / "model.pt"))
    digest = torch.load(killed / "checkpoint.pt", weights_only=False)["digest"]
    assert digest == torch.load(killed / "model.pt", weights_only=False)["digest"]
    assert not list(killed.glob("*.stale-*")) and not list(killed.glob(".*.part*"))


def test_an_unreadable_checkpoint_is_set_aside(tmp_path, caplog):
    folder = tmp_path / "variant"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="iusynth"):
        trainer = run(FIRST, folder, stop_after=0)
    assert trainer.epoch == 0
    assert (folder / "checkpoint.stale-unreadable.pt").read_bytes() == b""
    assert "is not a readable checkpoint" in caplog.text
    assert "checkpoint.stale-unreadable.pt" in caplog.text


def test_parts_left_by_a_killed_save_are_removed_at_the_next_start(tmp_path, caplog):
    folder = tmp_path / "variant"
    folder.mkdir()
    left = [folder / ".checkpoint.k1l2.part.pt", folder / ".model.x9y8.part.pt"]
    for part in left:
        part.write_bytes(b"")
    unrelated = folder / ".other.a1b2.part.pt"
    unrelated.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="iusynth"):
        run(FIRST, folder, stop_after=0)
    assert not any(part.exists() for part in left) and unrelated.exists()
    for part in left:
        assert f"removed {part}, left by a write that was killed" in caplog.text
    assert remove_stale_parts(folder / "other.pt") == [unrelated]


def test_a_second_trainer_on_the_same_checkpoint_is_refused(tmp_path):
    folder = tmp_path / "variant"
    run(FIRST, folder, stop_after=2)
    before = (folder / "checkpoint.pt").read_bytes()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from iusynth.core.processes import exclusive_lock\n"
            "with exclusive_lock(Path(sys.argv[1]), 'checkpoint'):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(120)\n",
            str(folder / "checkpoint.pt"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError) as refused:
            run(FIRST, folder)
    finally:
        holder.kill()
        holder.wait()
    message = str(refused.value)
    assert str(folder / "checkpoint.pt") in message and f"(pid {holder.pid})" in message
    assert f"kill {holder.pid}" in message and "wait for it to finish" in message
    assert (folder / "checkpoint.pt").read_bytes() == before
    assert not (folder / "model.pt").exists()
    run(FIRST, folder)  # the lock went with the process holding it
    assert (folder / "model.pt").is_file()


def test_an_nnunet_fold_resumes_only_a_checkpoint_of_its_digest(tmp_path, caplog):
    from iusynth.experiments.segmentation.nnunet import bind_checkpoint

    latest = tmp_path / "fold_0" / "checkpoint_latest.pth"
    latest.parent.mkdir()
    torch.save({"epoch": 3}, latest)
    first, second = "a" * 64, "b" * 64
    with caplog.at_level(logging.WARNING, logger="iusynth"):
        assert not bind_checkpoint(latest, first)  # written before digests were recorded
        assert (tmp_path / "fold_0" / "checkpoint_latest.stale-undigested.pth").is_file()
        torch.save({"epoch": 50}, latest)
        assert bind_checkpoint(latest, first)  # this run's own checkpoint
        assert not bind_checkpoint(latest, second)  # other planes, folds or settings
        kept = tmp_path / "fold_0" / "checkpoint_latest.stale-aaaaaaaaaaaa.pth"
        assert torch.load(kept, weights_only=False) == {"epoch": 50}
        latest.write_bytes(b"")  # killed while nnU-Net saved it
        assert not bind_checkpoint(latest, second)
    assert (tmp_path / "fold_0" / "checkpoint_latest.stale-unreadable.pth").is_file()
    assert (tmp_path / "fold_0" / "data_digest.txt").read_text() == second + "\n"
    assert f"{latest} was trained on other planes, folds or settings" in caplog.text
    assert "checkpoint_latest.stale-aaaaaaaaaaaa.pth" in caplog.text


# --- files that would run code when unpickled ------------------------------------------


class RunsWhenUnpickled:
    """Unpickling it creates ``path``: the harmless stand-in of a shell command."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (str(self.path), "w"))


def nnunet_resume(path: Path) -> None:
    """nnU-Net's resume of a fold, as the workflow's trainer subclass reads it."""
    from types import SimpleNamespace

    from iusynth import jobs
    from iusynth.experiments.segmentation.nnunet import trainer_class

    trainer_class(defaults(jobs.segmenter), path).load_checkpoint(
        SimpleNamespace(device="cpu"), str(path)
    )


def loaders() -> dict:
    """Every reader of a torch file another person could hand over, by name."""
    from iusynth.synthesis.synthesizers import load_synthesizer
    from iusynth.training.baselines import load_translator
    from iusynth.training.mmhvae import load_model

    return {
        "mmhvae": lambda path: load_model(path, "cpu"),
        "baseline": lambda path: load_translator(path, "cpu"),
        "synthesizer": lambda path: load_synthesizer([path], "cpu"),
        "nnunet_resume": nnunet_resume,
    }


@pytest.mark.parametrize("name", ["mmhvae", "baseline", "synthesizer", "nnunet_resume"])
def test_every_loader_refuses_a_file_that_would_run_code(name, tmp_path):
    from iusynth.core.torch_io import UnsafeFile

    ran = tmp_path / "ran"
    path = tmp_path / "model.pt"
    torch.save({"model_config": {}, "model": RunsWhenUnpickled(ran)}, path)
    with pytest.raises(UnsafeFile, match=f"{path} holds Python objects") as raised:
        loaders()[name](path)
    assert "it names io.open" in str(raised.value)
    assert not ran.exists()


def test_a_checkpoint_that_would_run_code_is_set_aside_not_resumed(tmp_path):
    from iusynth.experiments.segmentation.nnunet import bind_checkpoint

    ran = tmp_path / "ran"
    (tmp_path / "run").mkdir()
    torch.save({"epoch": RunsWhenUnpickled(ran)}, tmp_path / "run" / "checkpoint.pt")
    run([volume(1, "A")], tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.stale-unsafe.pt").is_file()
    latest = tmp_path / "nnunet" / "checkpoint_latest.pth"
    latest.parent.mkdir()
    torch.save({"logging": RunsWhenUnpickled(ran)}, latest)
    (latest.parent / "data_digest.txt").write_text("d" * 64 + "\n")
    assert not bind_checkpoint(latest, "d" * 64)
    assert latest.with_name("checkpoint_latest.stale-unsafe.pth").is_file()
    assert not ran.exists()


def test_the_files_the_workflow_writes_load_weights_only(tmp_path):
    from iusynth.core.torch_io import load_torch

    run([volume(1, "A")], tmp_path, stop_after=2)
    state = load_torch(tmp_path / "checkpoint.pt", "test")
    assert state["epoch"] == 2 and state["python_rng"]
    nnunet_like = {"logging": {"ema_fg_dice": [np.float64(0.5)]}, "_best_ema": np.float32(1)}
    torch.save(nnunet_like, tmp_path / "fold.pth")
    assert load_torch(tmp_path / "fold.pth", "test", numpy_scalars=True) == nnunet_like
