"""The convergence benchmark's pieces: its stretched schedule and its pointwise reference."""

from __future__ import annotations

import dataclasses

import numpy as np

from benchmarks.demo_convergence import pointwise_reference, stretched_schedule
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
    training = jobs.variant(DEFAULTS, "mmhvae").training
    stretched = stretched_schedule(training, training.epochs * 10)
    assert stretched["epochs"] == training.epochs * 10
    assert stretched["gan_start_epoch"] == training.gan_start_epoch * 10
    assert stretched["kl_warmup_epochs"] == training.kl_warmup_epochs * 10
    no_gan = jobs.variant(DEFAULTS, "mmhvae_nogan").training
    assert stretched_schedule(no_gan, 80)["gan_start_epoch"] is None
