"""MMHVAE: sizes and shapes, fusion algebra, missing modalities, training and resuming."""

from __future__ import annotations

import copy
import dataclasses
import math
import random

import numpy as np
import pytest
import torch

from iusynth import jobs
from iusynth.core.settings import ConfigError
from iusynth.model import network
from iusynth.model.discriminator import PatchDiscriminator
from iusynth.model.fusion import Gaussian, kl_divergence, product_of_experts, sampled_kl
from iusynth.model.network import MMHVAE, parameter_counts
from iusynth.preprocessing.slices import SliceStack
from iusynth.training.mmhvae import (
    Trainer,
    reconstruction_l1,
    train,
    training_steps,
)

from .conftest import PAPER, defaults, merged_config

TINY = defaults(
    jobs.model,
    "mmhvae",
    image_size=32,
    downsamplings=3,
    latent_levels=4,
    base_channels=4,
    max_channels=8,
    expand=2,
    head_blocks=1,
    head_channels=4,
    discriminator_channels=4,
    discriminator_layers=3,
)
TINY_TRAINING = defaults(
    jobs.training,
    "mmhvae",
    epochs=4,
    batch_slices=4,
    kl_warmup_epochs=2,
    gan_start_epoch=3,
    discriminator_start_epoch=2,
    optimiser_reset_epoch=2,
    checkpoint_every=2,
    subset_sampling="enumerate",  # the authors' steps: one per MR subset
    learning_rate=2e-3,
    final_learning_rate=1e-4,
    kl_weight=1e-3,
    gan_weight=0.05,
)


def stack(
    seed: int, present=(True, True, True, True), slices: int = 6, size: int = 32
) -> SliceStack:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = np.sin(6 * xx + rng.uniform(0, 3)) * np.cos(5 * yy)
    images = np.stack(
        [np.stack([np.tanh(base * (m + 1) + 0.1 * k) for m in range(4)]) for k in range(slices)]
    ).astype(np.float16)
    images[:, [not p for p in present]] = -1
    meta = {"modalities": ["US", "T2", "ceT1", "FLAIR"], "present": list(present)}
    return SliceStack(images, np.ones((slices, size, size), bool), {}, meta)


def test_the_code_defaults_are_the_paper_model_of_config_paper_yaml():
    from iusynth.core.modalities import MODALITIES
    from iusynth.model.config import ModelConfig, TranslatorConfig

    assert ModelConfig() == jobs.model(PAPER, "mmhvae")
    assert TranslatorConfig() == jobs.translator(PAPER, "mmgan", MODALITIES, MODALITIES)
    assert parameter_counts(MMHVAE(ModelConfig()))["total"] == 13_774_770


def test_paper_model_size_and_latent_shapes():
    model = MMHVAE(jobs.model(PAPER, "mmhvae"))
    counts = parameter_counts(model)
    print({part: f"{n / 1e6:.3f} M" for part, n in counts.items()})
    assert counts["total"] == 13_774_770  # the authors' MHVAE2D at the paper's size
    discriminator = PatchDiscriminator()
    assert sum(p.numel() for p in discriminator.parameters()) == 4_856_257
    assert discriminator(torch.zeros(1, 1, 192, 192)).shape == (1, 1, 1, 1)
    images = torch.rand(1, 4, 192, 192) * 2 - 1
    observed = torch.tensor([[True, False, False, False]])
    with torch.no_grad():
        synthesis = model(images, observed, temperature=0.0)
    shapes = [tuple(z.shape[1:]) for z in synthesis.latents]
    assert shapes == [
        (256,),
        (64, 6, 6),
        (64, 12, 12),
        (64, 24, 24),
        (32, 48, 48),
        (16, 96, 96),
        (8, 192, 192),
    ]
    assert synthesis.images.shape == (1, 4, 192, 192) and len(synthesis.kl) == 7


@pytest.mark.parametrize("weighting, power", [("authors", 1), ("textbook", 2)])
def test_product_of_one_expert_and_a_flat_prior_is_that_expert(weighting, power):
    expert = Gaussian(torch.randn(3, 5), torch.randn(3, 5) * 0.5)
    flat = Gaussian(torch.zeros(3, 5), torch.full((3, 5), 30.0))
    fused = product_of_experts([flat, expert], weighting=weighting)
    torch.testing.assert_close(fused.mean, expert.mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(fused.log_std, expert.log_std, atol=1e-6, rtol=0)


def test_authors_product_weighs_experts_by_one_over_sigma():
    experts = [Gaussian(torch.randn(2, 7), torch.randn(2, 7) * 0.3) for _ in range(3)]
    fused = product_of_experts(experts)  # the authors' weighting is the default
    weights = [1 / e.std for e in experts]
    torch.testing.assert_close(fused.std, 1 / sum(weights))
    torch.testing.assert_close(
        fused.mean, sum(w * e.mean for w, e in zip(weights, experts, strict=True)) / sum(weights)
    )


def test_textbook_precision_is_the_sum_of_precisions_and_masks_drop_experts():
    experts = [Gaussian(torch.randn(2, 7), torch.randn(2, 7) * 0.3) for _ in range(3)]
    fused = product_of_experts(experts, weighting="textbook")
    precision = sum(torch.exp(-2 * e.log_std) for e in experts)
    torch.testing.assert_close(torch.exp(-2 * fused.log_std), precision)
    weights = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    for weighting in ("authors", "textbook"):
        masked = product_of_experts(experts, weights, weighting)
        alone = product_of_experts([experts[0], experts[2]], weighting=weighting)
        torch.testing.assert_close(masked.mean[0], alone.mean[0])


def test_sampled_kl_is_the_log_density_difference_and_analytic_kl_its_mean():
    q = Gaussian(torch.randn(4, 6), torch.randn(4, 6) * 0.2)
    p = Gaussian(torch.randn(4, 6), torch.randn(4, 6) * 0.2)
    z = q.sample(1.0)
    normal_q = torch.distributions.Normal(q.mean, q.std)
    normal_p = torch.distributions.Normal(p.mean, p.std)
    expected = (normal_q.log_prob(z) - normal_p.log_prob(z)).sum(dim=1)
    torch.testing.assert_close(sampled_kl(q, p, z), expected)
    closed = torch.distributions.kl_divergence(normal_q, normal_p).sum(dim=1)
    torch.testing.assert_close(kl_divergence(q, p), closed)


def test_a_missing_modality_changes_nothing_but_its_absence():
    torch.manual_seed(0)
    model = MMHVAE(TINY).eval()
    batch = torch.from_numpy(
        stack(1, present=(True, True, False, True)).images[:4].astype(np.float32)
    )
    garbage = batch.clone()
    garbage[:, 2] = torch.rand_like(garbage[:, 2])  # whatever sits in the missing channel
    present = torch.tensor([True, True, False, True])
    observed = present.expand(4, -1)
    losses = []
    for images in (batch, garbage):
        synthesis = model(images, observed, temperature=0.0)
        losses.append(
            reconstruction_l1(synthesis.images, images, present)
            + sum(k.mean() for k in synthesis.kl)
        )
    assert losses[0] == losses[1]
    with_it = model(garbage, torch.ones(4, 4, dtype=torch.bool), temperature=0.0)
    assert not torch.equal(with_it.images, model(batch, observed, temperature=0.0).images)


def test_temperature_zero_is_deterministic_and_one_is_not():
    model = MMHVAE(TINY).eval()
    images = torch.rand(2, 4, 32, 32) * 2 - 1
    observed = torch.tensor([[True, False, True, False]] * 2)
    first = model(images, observed, temperature=0.0).images
    torch.testing.assert_close(
        model(images, observed, temperature=0.0).images, first, rtol=0, atol=0
    )
    assert not torch.equal(model(images, observed, temperature=1.0).images, first)
    nothing = torch.zeros(2, 4, dtype=torch.bool)
    assert model(images, nothing, temperature=0.7).images.shape == (2, 4, 32, 32)  # prior only


def test_cpu_inference_in_chunks_gives_the_whole_batch_images(monkeypatch):
    torch.manual_seed(0)  # the weights and images: unseeded, the difference drew past 1e-5
    model = MMHVAE(TINY).eval()
    images = torch.rand(5, 4, 32, 32) * 2 - 1
    observed = torch.tensor([[False, True, True, False]] * 5)
    fov = torch.rand(5, 32, 32) > 0.3
    with torch.no_grad():
        whole = model(images, observed, fov, temperature=0.0)  # the training forward
    monkeypatch.setattr(network, "CPU_INFERENCE_PIXELS", 2 * 32 * 32)  # chunks of 2, 2, 1
    calls = []
    model.heads[0].register_forward_hook(lambda module, args, out: calls.append(len(out)))
    with torch.inference_mode():
        chunked = model(images, observed, fov, temperature=0.0, with_kl=False)
        sampled = model(images, observed, fov, temperature=0.7, with_kl=False)
    assert calls == [2, 2, 1, 2, 2, 1]
    torch.testing.assert_close(chunked.images, whole.images, rtol=0, atol=1e-5)
    assert [z.shape for z in chunked.latents] == [z.shape for z in whole.latents]
    assert sampled.images.shape == whole.images.shape and not chunked.kl


def test_training_steps_of_the_mixture_and_the_other_modes():
    modalities = ("US", "T2", "ceT1", "FLAIR")
    mixture = training_steps((0, 1, 2, 3), "mixture", modalities)
    assert len(mixture) == 7  # one step per non-empty subset of the 3 MR sequences
    assert all(step[0] == (0, 1, 2, 3) and step[1] == (0,) for step in mixture)
    assert [step[2] for step in mixture[:3]] == [(1,), (2,), (3,)]
    assert mixture[-1][2] == (1, 2, 3)
    assert len(training_steps((0, 1, 3), "mixture", modalities)) == 3
    assert training_steps((0,), "mixture", modalities) == []  # no MR: skipped
    assert training_steps((0, 1, 3), "all", modalities) == [[(0, 1, 3)]]
    assert training_steps((1, 2), "unimodal", modalities) == [[(1, 2), (1,), (2,)]]
    assert training_steps((0, 1), "mixture", ("US", "T2")) == [[(0, 1), (0,), (1,)]]  # MHVAE
    rng = random.Random(0)
    drawn = training_steps((0, 1, 2, 3), "mixture", modalities, "random", rng)
    assert len(drawn) == 1 and drawn[0][2] in [step[2] for step in mixture]


@pytest.mark.parametrize(
    "present, steps",
    [
        ((True, True, True, True), 7),
        ((True, True, False, True), 3),
        ((True, False, False, False), 0),
    ],
)
def test_one_epoch_takes_one_optimiser_step_per_mr_subset(present, steps):
    trainer = Trainer(TINY, TINY_TRAINING, [stack(7, present=present)], [])
    calls = []
    trainer.optimiser.register_step_post_hook(lambda *args: calls.append(1))
    row = trainer.run_epoch()
    assert row["steps"] == steps == len(calls)


def test_step_loss_is_the_authors_sum_of_three_passes():
    """The loss of one step, recomputed here from the raw outputs with the authors' formula."""
    config = dataclasses.replace(
        TINY_TRAINING, epochs=10, kl_warmup_epochs=4, gan_start_epoch=3,
        discriminator_start_epoch=3, optimiser_reset_epoch=None,
    )  # fmt: skip
    trainer = Trainer(TINY, config, [stack(2, present=(True, True, False, True))], [])
    batch = trainer.train.batch(0, np.random.default_rng(0), flip=False, start=0)
    passes = [(0, 1, 3), (0,), (1, 3)]
    epoch = 3  # KL weight 3/4 of 1e-3, GAN on
    twin = copy.deepcopy(trainer.model)
    torch.manual_seed(11)
    expected = 0.0
    b, m, h, w = batch.images.shape
    for index, subset in enumerate(passes):
        observed = torch.zeros(b, m, dtype=torch.bool)
        observed[:, list(subset)] = True
        synthesis = twin(batch.images, observed, batch.fov, 1.0)
        l1 = (
            sum(
                torch.nn.L1Loss()(synthesis.images[:, k], batch.images[:, k]) / 2 for k in (0, 1, 3)
            )
            / 3
        )  # the present modalities: US, T2, FLAIR
        kl = sum(level.sum() for level in synthesis.kl)
        expected += float(l1 + 0.75e-3 * kl / (b * h * w * 4))  # KL / (16*192*192*4) at paper size
        if index > 0:  # the GAN term of the iUS-alone and MR-subset passes, all four outputs
            scores = [
                d(synthesis.images[:, k : k + 1]) for k, d in enumerate(trainer.discriminators)
            ]
            gan = sum(torch.nn.MSELoss()(s, torch.ones_like(s)) for s in scores) / 4
            expected += float(0.05 * gan)
    torch.manual_seed(11)
    losses = trainer.step(batch, passes, epoch)
    assert losses.loss == pytest.approx(expected, rel=1e-5)
    assert losses.gan_d > 0  # the discriminators trained after the step


def test_step_loss_of_the_miccai_recipe_is_their_sum_of_three_passes():
    """MHVAE (MICCAI) on iUS + T2: Smooth L1 summed, raw KL, GAN x voxels on single passes."""
    model = dataclasses.replace(TINY, modalities=("US", "T2"))
    config = dataclasses.replace(
        TINY_TRAINING, losses="miccai", epochs=10, kl_weight=1.0, kl_warmup_epochs=10,
        gan_weight=1.0, gan_start_epoch=3, discriminator_start_epoch=4,
        optimiser_reset_epoch=None, complete_pairs=True,
    )  # fmt: skip
    trainer = Trainer(model, config, [stack(2)], [])
    batch = trainer.train.batch(0, np.random.default_rng(0), flip=False, start=0)
    passes = [(0, 1), (0,), (1,)]
    epoch = 3  # KL weight 3/10, GAN term on, discriminators not yet (their epoch 101 of 100)
    twin = copy.deepcopy(trainer.model)
    torch.manual_seed(11)
    expected = 0.0
    b, m, h, w = batch.images.shape
    for index, subset in enumerate(passes):
        observed = torch.zeros(b, m, dtype=torch.bool)
        observed[:, list(subset)] = True
        synthesis = twin(batch.images, observed, batch.fov, 1.0)
        reconstruction = torch.nn.SmoothL1Loss(reduction="sum")(synthesis.images, batch.images)
        kl = sum(level.sum() for level in synthesis.kl)
        expected += float(reconstruction + 0.3 * kl)
        if index > 0:  # nb_voxels * sum of the modalities' LSGAN terms
            scores = [
                d(synthesis.images[:, k : k + 1]) for k, d in enumerate(trainer.discriminators)
            ]
            gan = sum(torch.nn.MSELoss()(s, torch.ones_like(s)) for s in scores)
            expected += float(b * h * w / m * gan)
    torch.manual_seed(11)
    losses = trainer.step(batch, passes, epoch)
    assert losses.loss == pytest.approx(expected, rel=1e-5)
    assert losses.gan_d == 0.0
    fakes = trainer._fakes(0, passes, [torch.full((b, m, h, w), float(k)) for k in range(3)])
    assert len(fakes) == 1 and (fakes[0] == 2).all()  # the last pass only, input or not
    with pytest.raises(ConfigError, match="at most gan_start_epoch"):
        jobs.training(
            merged_config(
                {"models": {"variants": {"mmhvae": {"training": {"discriminator_start_epoch": 7}}}}}
            ),
            "mmhvae",
        )


def test_gan_discriminator_and_optimiser_schedules_follow_the_configured_epochs():
    trainer = Trainer(TINY, TINY_TRAINING, [stack(8)], [])
    optimisers = []
    for _ in range(4):
        trainer.run_epoch()
        optimisers.append(trainer.optimiser)  # the one each epoch trained with
    rows = trainer.history
    assert [row["gan_d"] > 0 for row in rows] == [False, True, True, True]  # from epoch 2
    assert [row["gan_g"] > 0 for row in rows] == [False, False, True, True]  # from epoch 3
    assert optimisers[0] is not optimisers[1] and optimisers[1] is optimisers[3]  # reset at 2
    lr0, lr_min = TINY_TRAINING.learning_rate, TINY_TRAINING.final_learning_rate
    cosine = lr_min + (lr0 - lr_min) * (1 + math.cos(math.pi * 2 / 5)) / 2  # T_max epochs + 1
    assert rows[0]["lr"] == pytest.approx(lr0) and rows[1]["lr"] == pytest.approx(cosine)
    assert [row["kl_weight"] for row in rows] == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3])


def test_kill_and_resume_gives_the_same_weights(tmp_path):
    stacks = [stack(3), stack(4, present=(True, False, True, True))]
    val = [stack(5)]
    straight = train(
        TINY, TINY_TRAINING, stacks, val, tmp_path / "a.pt", tmp_path / "a.ckpt", tmp_path / "a.csv"
    )
    b = (tmp_path / "b.pt", tmp_path / "b.ckpt", tmp_path / "b.csv")
    killed = train(TINY, TINY_TRAINING, stacks, val, *b, stop_after=2)
    assert killed.epoch == 2 and not (tmp_path / "b.pt").exists()
    resumed = train(TINY, TINY_TRAINING, stacks, val, *b)
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert (tmp_path / "a.csv").read_text().count("\n") == 5  # header + 4 epochs
    rows_a = (tmp_path / "a.csv").read_text().splitlines()
    rows_b = (tmp_path / "b.csv").read_text().splitlines()
    strip = (
        [",".join(r.split(",")[:-1]) for r in rows_a],
        [",".join(r.split(",")[:-1]) for r in rows_b],
    )
    assert strip[0] == strip[1]  # same losses (the seconds column differs)


@pytest.mark.parametrize(
    "overrides",
    [
        {"latent_levels": 1},
        {"latent_levels": 3},
        {"fusion": "average"},
        {"fusion": "concat"},
        {"modalities": ("US", "T2")},
    ],
)
def test_variants_build_and_run(overrides):
    config = dataclasses.replace(TINY, **overrides)
    model = MMHVAE(config)
    n = len(config.modalities)
    images = torch.rand(2, n, 32, 32) * 2 - 1
    observed = torch.zeros(2, n, dtype=torch.bool)
    observed[0, 0] = True
    observed[1, :] = True
    synthesis = model(images, observed, temperature=0.5)
    assert synthesis.images.shape == (2, n, 32, 32)
    assert len(synthesis.kl) == config.latent_levels


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    stacks = [stack(6)]
    paths = (tmp_path / "m.pt", tmp_path / "m.ckpt", tmp_path / "m.csv")
    train(TINY, TINY_TRAINING, stacks, [], *paths, stop_after=2)
    longer = dataclasses.replace(TINY_TRAINING, epochs=3)
    trainer = train(TINY, longer, stacks, [], *paths)
    assert [row["epoch"] for row in trainer.history] == [1, 2, 3]  # started again
