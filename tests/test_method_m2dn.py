"""M2DN: the diffusion network keeps the given modalities, and its steps set its cost."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from iusynth import jobs
from iusynth.core.modalities import MODALITIES
from iusynth.core.settings import ConfigError
from iusynth.methods import translator_method
from iusynth.methods.m2dn import M2DNSettings
from iusynth.model.m2dn import M2DNNetwork
from iusynth.synthesis.synthesizers import TranslatorSynthesizer
from iusynth.training.baselines import build_generator

from .conftest import DEFAULTS

TINY = M2DNSettings(
    image_size=16, channels=(8, 8), attention_levels=(False, True), res_blocks=1,
    head_channels=8, norm_groups=4, sampling_steps=4,
)  # fmt: skip


def network_calls(model: M2DNNetwork, images: torch.Tensor, observed: torch.Tensor) -> int:
    """How many times sampling evaluates the U-Net."""
    calls = []
    handle = model.unet.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model.sample(images, observed)
    handle.remove()
    return len(calls)


def test_given_modalities_come_back_unchanged_and_missing_ones_are_sampled():
    torch.manual_seed(0)
    model = M2DNNetwork(TINY, 4).eval()
    with torch.no_grad():  # MONAI zero-initialises the output layer: a trained one is not
        for parameter in model.parameters():
            parameter.normal_(std=0.1)
    images = torch.rand(2, 4, 16, 16) * 2 - 1
    observed = torch.tensor([[False, True, True, False]] * 2)
    with torch.no_grad():
        torch.manual_seed(1)
        first = model.sample(images, observed)
        torch.manual_seed(2)
        second = model.sample(images, observed)
    assert torch.equal(first[:, 1:3], images[:, 1:3]) and torch.equal(
        second[:, 1:3], images[:, 1:3]
    )
    assert first.abs().max() <= 1 and not torch.equal(first[:, [0, 3]], second[:, [0, 3]])


def test_fewer_sampling_steps_run_fewer_network_calls():
    images, observed = torch.zeros(1, 4, 16, 16), torch.tensor([[True, False, False, False]])
    calls = {
        steps: network_calls(
            M2DNNetwork(dataclasses.replace(TINY, sampling_steps=steps), 4).eval(), images, observed
        )
        for steps in (2, 5)
    }
    assert calls == {2: 2, 5: 5}


def test_the_synthesis_stage_samples_it_through_the_registry():
    config = jobs.translator(DEFAULTS, "m2dn", MODALITIES, MODALITIES)
    method = translator_method("m2dn")
    assert method.network_passes(config) == 18 and method.serves(config, ("T2",))
    synthesizer = TranslatorSynthesizer([build_generator(config).eval()])
    images = torch.rand(2, 4, 64, 64) * 2 - 1
    observed = torch.tensor([[False, True, False, False]] * 2)
    outputs = synthesizer(images, observed, torch.ones(2, 64, 64, dtype=torch.bool), 0.7)
    assert set(outputs) == {"US", "ceT1", "FLAIR"} and outputs["US"].shape == (2, 64, 64)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"attention_levels": [True]}, r"m2dn.attention_levels': give one per entry"),
        ({"norm_groups": 5}, r"m2dn.norm_groups': must divide"),
        ({"sampling_steps": 0}, r"m2dn.sampling_steps': must be in 1..train_timesteps"),
    ],
)
def test_bad_generator_settings_name_their_key(override, message):
    config = {**DEFAULTS, "baselines": {**DEFAULTS["baselines"]}}
    generators = DEFAULTS["baselines"]["generators"]
    config["baselines"]["generators"] = {**generators, "m2dn": {**generators["m2dn"], **override}}
    with pytest.raises(ConfigError, match=message):
        jobs.translator(config, "m2dn", MODALITIES, MODALITIES)
