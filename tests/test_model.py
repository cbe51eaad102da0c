"""MMHVAE: sizes and shapes, fusion algebra, missing modalities, training and resuming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iusynth.model.fusion import Gaussian, product_of_experts
from iusynth.model.network import MMHVAE, ModelConfig, parameter_counts
from iusynth.slices import SliceStack
from iusynth.training import (
    Trainer,
    TrainingConfig,
    input_subsets,
    reconstruction_l1,
    train,
)

TINY = ModelConfig(
    image_size=32,
    downsamplings=3,
    latent_levels=4,
    base_channels=4,
    max_channels=8,
    top_latent=8,
    expand=2,
    head_blocks=1,
    head_channels=4,
    discriminator_channels=4,
    discriminator_layers=3,
)
TINY_TRAINING = TrainingConfig(
    epochs=4, batch_slices=4, kl_warmup_epochs=2, gan_start_epoch=2, checkpoint_every=2
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


def test_paper_model_size_and_latent_shapes():
    model = MMHVAE(ModelConfig())
    counts = parameter_counts(model)
    print({part: f"{n / 1e6:.3f} M" for part, n in counts.items()})
    assert 12.5e6 <= counts["total"] <= 15e6
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


def test_product_of_one_expert_and_a_flat_prior_is_that_expert():
    expert = Gaussian(torch.randn(3, 5), torch.randn(3, 5) * 0.5)
    flat = Gaussian(torch.zeros(3, 5), torch.full((3, 5), 30.0))
    fused = product_of_experts([flat, expert])
    torch.testing.assert_close(fused.mean, expert.mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(fused.log_std, expert.log_std, atol=1e-6, rtol=0)


def test_fused_precision_is_the_sum_of_precisions_and_masks_drop_experts():
    experts = [Gaussian(torch.randn(2, 7), torch.randn(2, 7) * 0.3) for _ in range(3)]
    fused = product_of_experts(experts)
    precision = sum(torch.exp(-2 * e.log_std) for e in experts)
    torch.testing.assert_close(torch.exp(-2 * fused.log_std), precision)
    weights = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    masked = product_of_experts(experts, weights)
    alone = product_of_experts([experts[0], experts[2]])
    torch.testing.assert_close(masked.mean[0], alone.mean[0])


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


def test_input_subsets_of_the_mixture():
    modalities = ("US", "T2", "ceT1", "FLAIR")
    assert input_subsets((0, 1, 3), "all", modalities) == [(0, 1, 3)]
    mixture = input_subsets((0, 1, 2, 3), "mixture", modalities)
    assert mixture[0] == (0, 1, 2, 3) and (0,) in mixture and len(mixture) == 9  # all, iUS, 7 MR
    assert all(0 not in s for s in mixture[2:])
    assert input_subsets((1, 2), "unimodal", modalities) == [(1, 2), (1,), (2,)]


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    trainer = Trainer(
        TINY, TrainingConfig(epochs=10, batch_slices=4, subsets="all"), [stack(2)], []
    )
    batch = trainer.train.batch(0, np.random.default_rng(0), flip=False, start=0)
    observed = torch.ones(4, 4, dtype=torch.bool)

    def loss() -> float:
        trainer.model.eval()
        with torch.no_grad():
            synthesis = trainer.model(batch.images, observed, batch.fov, temperature=0.0)
        kl = sum(k.mean() for k in synthesis.kl) / (32 * 32)
        return float(reconstruction_l1(synthesis.images, batch.images, batch.present) + 1e-3 * kl)

    before = loss()
    trainer.step(batch, epoch=0)
    assert loss() < before


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
    config = ModelConfig(**{**TINY.__dict__, **overrides})
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
    longer = TrainingConfig(**{**TINY_TRAINING.__dict__, "epochs": 3})
    trainer = train(TINY, longer, stacks, [], *paths)
    assert [row["epoch"] for row in trainer.history] == [1, 2, 3]  # started again
