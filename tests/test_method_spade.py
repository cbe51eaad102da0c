"""SPADE used image to image: its generator's size at the published settings and its shapes."""

from __future__ import annotations

import pytest
import torch

from iusynth import jobs
from iusynth.core.settings import ConfigError
from iusynth.methods.spade import SPADESettings
from iusynth.model.spade import SPADEGenerator
from iusynth.training.baselines import build_generator

from .conftest import DEFAULTS, PAPER


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
