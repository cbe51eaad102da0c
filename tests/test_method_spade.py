"""SPADE used image to image: its generator's size and shapes, and SPADE's own objective."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from iusynth import jobs
from iusynth.core.settings import ConfigError
from iusynth.methods.spade import SPADESettings
from iusynth.model.discriminator import hinge_discriminator_loss, hinge_generator_loss
from iusynth.model.spade import SPADEGenerator, SPADEMultiscaleDiscriminator
from iusynth.training.baselines import build_generator, build_trainer
from iusynth.training.spade import AlexNetPerceptualLoss, SPADETrainer

from .conftest import DEFAULTS, PAPER
from .test_model import stack
from .test_synthesis import TINY_GAN_TRAINING, translator, write_lpips_file


def test_the_published_size():
    model = build_generator(jobs.translator(PAPER, "spade", ("T2",), ("US",)))
    parameters = sum(p.numel() for p in model.parameters())
    # SPADE's generator at ngf 64 with one source channel: about 92 M
    assert 91e6 < parameters < 93e6
    assert [block.conv_1.out_channels for block in model.blocks] == [
        1024, 1024, 1024, 512, 256, 128, 64
    ]  # fmt: skip
    assert model.top == 6  # 192 / 2^5


def test_outputs_have_the_source_shape_lie_in_range_and_follow_the_source():
    settings = SPADESettings(image_size=64, base_channels=2, hidden_channels=4)
    model = SPADEGenerator(settings, 2, 1).eval()
    source = torch.randn(2, 2, 64, 64)
    outputs = model(source)
    assert outputs.shape == (2, 1, 64, 64) and outputs.abs().max() <= 1
    changed = source.clone()
    changed[:, :, 40:, 40:] += 1
    difference = (model(changed) - outputs).abs()[0, 0]
    # the source modulates every block at full resolution: a local change acts locally most
    assert difference[40:, 40:].mean() > 2 * difference[:20, :20].mean()


def test_a_slice_side_its_upsamplings_cannot_reach_names_the_key():
    config = {**DEFAULTS, "preprocessing": {**DEFAULTS["preprocessing"], "slice_size": [80, 80]}}
    with pytest.raises(ConfigError, match=r"baselines.generators.spade.image_size': SPADE needs"):
        jobs.translator(config, "spade", ("T2",), ("US",))


def test_the_multiscale_discriminator_gives_every_stage_at_each_scale():
    discriminator = SPADEMultiscaleDiscriminator(in_channels=2, channels=4, layers=4, scales=2)
    scales = discriminator(torch.randn(2, 2, 64, 64))
    assert len(scales) == 2 and all(len(stages) == 5 for stages in scales)  # 4 layers + scores
    assert [stage.shape[1] for stage in scales[0]] == [4, 8, 16, 32, 1]
    # strided three times, padded by 2 (SPADE's): 64 -> 33 -> 17 -> 9 -> 10 -> 11
    assert scales[0][-1].shape[-2:] == (11, 11)
    assert scales[1][0].shape[-1] == 17  # the second scale sees the image halved


def test_hinge_losses():
    assert (
        float(hinge_discriminator_loss(torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0]))) == 0.75
    )
    assert float(hinge_generator_loss(torch.tensor([1.0, 3.0]))) == -2.0


def test_the_perceptual_term_is_zero_on_the_truth_and_trains_only_the_synthesis(tmp_path):
    loss = AlexNetPerceptualLoss(write_lpips_file(tmp_path).parent)
    real = torch.rand(2, 1, 64, 64) * 2 - 1
    assert float(loss(real, real)) == 0.0
    fake = (real + 0.3 * torch.randn_like(real)).requires_grad_(True)
    value = loss(fake, real)
    value.backward()
    assert float(value.detach()) > 0 and fake.grad is not None and fake.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())  # AlexNet stays as loaded


def spade_trainer(tmp_path, **generator) -> SPADETrainer:
    config = translator("spade", ("T2",), ("US",), discriminator_channels=4)
    config = dataclasses.replace(config, generator={**config.generator, **generator})
    lpips = write_lpips_file(tmp_path / "lpips").parent
    return build_trainer(config, TINY_GAN_TRAINING, [stack(1)], [], lpips)


def test_spade_trains_with_its_objective_and_two_time_scales(tmp_path):
    trainer = spade_trainer(tmp_path)
    assert isinstance(trainer, SPADETrainer)
    rate = TINY_GAN_TRAINING.learning_rate
    assert trainer.optimiser.param_groups[0]["lr"] == rate / 2
    assert trainer.d_optimiser.param_groups[0]["lr"] == 2 * rate
    assert trainer.optimiser.param_groups[0]["betas"] == (0.0, 0.9)
    assert len(trainer.discriminator.scales) == 2
    batch = trainer.train.batch(0, trainer.rng, flip=False, start=0)
    loss, gan_g, matching, perceptual, gan_d = trainer.step(batch.images, batch.fov, batch.present)
    assert matching > 0 and perceptual > 0 and gan_d > 0
    settings = trainer.settings
    expected = gan_g + settings.feature_matching_weight * matching + 10.0 * perceptual
    assert loss == pytest.approx(expected, rel=1e-5)
    assert trainer.columns == (
        "epoch", "loss", "gan_g", "feature_matching", "perceptual", "gan_d", "lr", "val_l1",
        "seconds",
    )  # fmt: skip


def test_spade_without_its_perceptual_term_needs_no_lpips_and_one_time_scale(tmp_path):
    trainer = spade_trainer(tmp_path, perceptual_weight=0.0, two_time_scales=False)
    assert trainer.perceptual is None
    assert trainer.optimiser.param_groups[0]["lr"] == TINY_GAN_TRAINING.learning_rate
    assert trainer.optimiser.param_groups[0]["betas"] == (0.5, 0.999)


def test_the_perceptual_term_without_lpips_weights_says_what_to_set(tmp_path):
    config = translator("spade", ("T2",), ("US",), discriminator_channels=4)
    with pytest.raises(ValueError, match="perceptual_weight: 0"):
        build_trainer(config, TINY_GAN_TRAINING, [stack(1)], [], tmp_path / "absent")
    no_lpips = {**DEFAULTS, "evaluation": {**DEFAULTS["evaluation"], "lpips_weights": None}}
    with pytest.raises(ConfigError, match=r"'evaluation.lpips_weights' is null"):
        jobs.baseline_lpips_weights(no_lpips, "spade", "T2-to-US")
    assert (
        jobs.baseline_lpips_weights(DEFAULTS, "spade", "T2-to-US")
        == (DEFAULTS["evaluation"]["lpips_weights"])
    )
    assert jobs.baseline_lpips_weights(no_lpips, "pix2pix", "T2-to-US") is None
    without_term = {
        **no_lpips,
        "baselines": {
            **no_lpips["baselines"],
            "generators": {"spade": {"perceptual_weight": 0}},
        },
    }
    assert jobs.baseline_lpips_weights(without_term, "spade", "T2-to-US") is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("discriminator_scales", 0), ("discriminator_layers", 1), ("perceptual_weight", -1.0)],
)
def test_bad_objective_settings_name_their_key(key, value):
    config = {
        **DEFAULTS,
        "baselines": {**DEFAULTS["baselines"], "generators": {"spade": {key: value}}},
    }
    with pytest.raises(ConfigError, match=rf"baselines.generators.spade.{key}'"):
        jobs.translator(config, "spade", ("T2",), ("US",))
