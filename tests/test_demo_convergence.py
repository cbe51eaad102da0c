"""The convergence and ceiling benchmarks' pieces: schedule, pointwise and U-Net references."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from benchmarks.demo_ceiling import ReferenceUNet, train_reference
from benchmarks.demo_convergence import DIRECTIONS, pointwise_reference, stretched_schedule
from iusynth import jobs
from iusynth.preprocessing.slices import SliceStack

from .conftest import DEFAULTS
from .test_model import stack


def with_clean(seed: int, subject: str) -> SliceStack:
    """A slice stack whose noise-free T2 is a fixed pointwise map of its iUS (and back)."""
    data = stack(seed)
    clean = np.asarray(data.images, np.float32).copy()
    clean[:, 1] = -clean[:, 0]  # T2 = -iUS, exactly
    clean[:, 0] = -np.asarray(data.images[:, 1], np.float32)  # iUS = -T2
    return dataclasses.replace(data, clean=clean, meta={**data.meta, "subject": subject})


def test_the_pointwise_reference_recovers_a_pointwise_map():
    rows = pointwise_reference([with_clean(0, "a"), with_clean(1, "b")], [with_clean(2, "c")])
    by_direction = {row["direction"]: row for row in rows}
    assert set(by_direction) == {"T2-to-US", "US-to-T2"}
    assert by_direction["US-to-T2"]["skill_r"] > 0.95
    assert by_direction["US-to-T2"]["skill_psnr"] > by_direction["US-to-T2"]["constant_psnr"]


def test_the_schedule_keeps_every_phase_at_its_fraction():
    training = jobs.variant(DEFAULTS, "mmhvae", 0).training
    stretched = stretched_schedule(training, training.epochs * 10)
    assert stretched["epochs"] == training.epochs * 10
    assert stretched["gan_start_epoch"] == training.gan_start_epoch * 10
    assert stretched["kl_warmup_epochs"] == training.kl_warmup_epochs * 10
    no_gan = jobs.variant(DEFAULTS, "mmhvae_nogan", 0).training
    assert stretched_schedule(no_gan, 80)["gan_start_epoch"] is None


def test_the_reference_unet_keeps_the_image_size_and_range():
    with torch.no_grad():
        outputs = ReferenceUNet()(torch.randn(2, 1, 32, 32) * 3)
    assert outputs.shape == (2, 1, 32, 32)
    assert float(outputs.abs().max()) <= 1.0


def noise_free(seed: int, subject: str) -> SliceStack:
    """A slice stack whose noise-free images are its acquired ones."""
    data = stack(seed)
    clean = np.asarray(data.images, np.float32).copy()
    return dataclasses.replace(data, clean=clean, meta={**data.meta, "subject": subject})


def test_the_supervised_reference_learns_what_the_targets_show():
    torch.set_num_threads(1)
    train = [noise_free(seed, f"t{seed}") for seed in range(3)]
    (direction,) = [d for d in DIRECTIONS if d.name == "US-to-T2"]
    untrained = train_reference(train, [noise_free(9, "v")], direction, 1, 1, 8, seed=0)
    rows = train_reference(train, [noise_free(9, "v")], direction, 60, 30, 8, seed=0)
    assert [row["step"] for row in rows] == [30, 60]
    assert rows[-1]["skill_r"] > 0.9 > untrained[-1]["skill_r"]
    assert rows[-1]["skill_psnr"] > rows[-1]["constant_psnr"]
    probe = train_reference(train, [noise_free(9, "v")], direction, 2, 2, 8, 0, "clean-both")
    assert probe[0]["condition"] == "clean-both" and rows[0]["condition"] == "acquired"
