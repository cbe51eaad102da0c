"""ResViT: its generator's size at the published settings, its shapes and its unified mode."""

from __future__ import annotations

import pytest
import torch

from iusynth import jobs
from iusynth.core.modalities import MODALITIES
from iusynth.core.settings import ConfigError
from iusynth.methods import translator_method
from iusynth.methods.resvit import ResViTSettings
from iusynth.model.resvit import ResViTGenerator
from iusynth.model.translator import translator_inputs
from iusynth.training.baselines import build_generator

from .conftest import DEFAULTS, PAPER

TINY = ResViTSettings(
    image_size=32, base_channels=4, branch_channels=8, vit_layers=1, vit_width=8, vit_heads=2,
    vit_mlp=16,
)  # fmt: skip


def test_the_published_size_shares_one_vit_between_two_blocks():
    model = build_generator(jobs.translator(PAPER, "resvit", MODALITIES, MODALITIES))
    with_vit = [i for i, block in enumerate(model.blocks, 1) if block.encoder is not None]
    assert with_vit == [1, 6] and all(model.blocks[i - 1].encoder is model.vit for i in with_vit)
    unique = sum(p.numel() for p in model.parameters())
    vit = sum(p.numel() for p in model.vit.parameters())
    # ResViT's own code: about 123 M counted once; its 12-layer ViT-B encoder is 85 M
    assert 122e6 < unique < 124e6 and 84e6 < vit < 86e6
    assert model.blocks[0].positions.shape == (1, 12 * 12, 768)  # 192 / 16 = 12 tokens a side


def test_outputs_have_the_inputs_shape_and_lie_in_range():
    model = ResViTGenerator(TINY, 4, 4).eval()
    outputs = model(torch.randn(3, 4, 32, 32))
    assert outputs.shape == (3, 4, 32, 32) and outputs.abs().max() <= 1


def test_missing_inputs_are_set_to_minus_one():
    config = jobs.translator(DEFAULTS, "resvit", MODALITIES, MODALITIES)
    images = torch.rand(2, 4, 8, 8)
    observed = torch.tensor([[True, False, True, False]] * 2)
    inputs = translator_inputs(config, images, observed)
    assert torch.equal(inputs[:, [0, 2]], images[:, [0, 2]])
    assert torch.all(inputs[:, [1, 3]] == -1)
    assert translator_method("resvit").serves(config, ("T2",))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"vit_depth": 2}, r"baselines.generators.resvit': \['vit_depth'\] are not ResViT"),
        ({"vit_heads": 5}, r"baselines.generators.resvit.vit_heads': vit_width 64"),
        ({"transformer_blocks": [10]}, r"resvit.transformer_blocks': \[10\] are not ART"),
    ],
)
def test_bad_generator_settings_name_their_key(override, message):
    config = {**DEFAULTS, "baselines": {**DEFAULTS["baselines"]}}
    config["baselines"]["generators"] = {
        "resvit": {**DEFAULTS["baselines"]["generators"]["resvit"], **override}
    }
    with pytest.raises(ConfigError, match=message):
        jobs.translator(config, "resvit", MODALITIES, MODALITIES)
