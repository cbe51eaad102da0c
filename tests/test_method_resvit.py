"""ResViT: its generator's size at the published settings, its shapes and its unified mode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from iusynth import jobs
from iusynth.core.modalities import MODALITIES
from iusynth.core.settings import ConfigError
from iusynth.methods import translator_method
from iusynth.methods.resvit import ResViTSettings
from iusynth.model.resvit import ResViTGenerator
from iusynth.model.translator import translator_inputs
from iusynth.training.baselines import build_generator, build_trainer
from iusynth.training.resvit import ResViTTrainer, cnn_stage_epochs, two_stage_factor

from .conftest import DEFAULTS, PAPER
from .test_model import stack
from .test_synthesis import TINY_GAN_TRAINING, translator

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


def test_the_cnn_stage_takes_its_share_and_leaves_an_epoch_for_the_transformers():
    assert cnn_stage_epochs(150, 2 / 3) == 100  # ResViT's 100 ResNet epochs of 150
    assert cnn_stage_epochs(3, 2 / 3) == 2
    assert cnn_stage_epochs(2, 0.9) == 1
    assert cnn_stage_epochs(1, 2 / 3) == 0  # too short: straight to the whole network
    assert cnn_stage_epochs(10, 0.0) == 0


def test_each_stage_holds_its_rate_then_decays():
    rate = two_stage_factor(100, 150, 5.0)  # 2e-4 then 1e-3, 50 + 50 and 25 + 25 epochs
    assert [rate(e) for e in (0, 49, 50, 75, 99)] == [1.0, 1.0, 1.0, 0.5, pytest.approx(0.02)]
    assert [rate(e) for e in (100, 124, 125, 137)] == [5.0, 5.0, 5.0, pytest.approx(2.6)]


def resvit_trainer(epochs: int, **generator) -> ResViTTrainer:
    config = translator("resvit", MODALITIES, MODALITIES, discriminator_channels=4)
    config = dataclasses.replace(config, generator={**config.generator, **generator})
    training = dataclasses.replace(TINY_GAN_TRAINING, epochs=epochs)
    return build_trainer(config, training, [stack(1)], [])


def test_the_first_stage_trains_the_resnet_alone_then_the_whole_network_at_its_rate():
    trainer = resvit_trainer(3)
    assert isinstance(trainer, ResViTTrainer) and trainer.cnn_epochs == 2
    branches = {  # ART block 1's transformer branch and the shared ViT
        name: parameter
        for name, parameter in trainer.model.named_parameters()
        if name.startswith("vit.") or (name.startswith("blocks.0.") and ".residual." not in name)
    }
    assert branches
    before = {name: parameter.detach().clone() for name, parameter in branches.items()}
    encoder = trainer.model.encoder[1].weight.detach().clone()
    rate = TINY_GAN_TRAINING.learning_rate
    trainer.run_epoch()
    assert all(torch.equal(before[n], p) for n, p in branches.items())  # untouched
    assert not torch.equal(encoder, trainer.model.encoder[1].weight)
    trainer.run_epoch()
    assert trainer.optimiser.param_groups[0]["lr"] == pytest.approx(5 * rate)
    trainer.run_epoch()  # the transformer stage
    assert not all(torch.equal(before[n], p) for n, p in branches.items())
    assert all(block.transformer_on for block in trainer.model.blocks)


def test_the_second_stage_starts_a_fresh_discriminator_and_fresh_optimiser_moments():
    trainer = resvit_trainer(3)
    trainer.run_epoch()
    assert trainer.optimiser.state and trainer.d_optimiser.state
    torch.manual_seed(0)
    trainer.enter_transformer_stage()
    assert not trainer.optimiser.state and not trainer.d_optimiser.state
    reset = trainer.discriminator.body[0].weight.detach().clone()
    torch.manual_seed(0)
    trainer.enter_transformer_stage()
    assert torch.equal(reset, trainer.discriminator.body[0].weight)  # drawn afresh


def google_layout(encoder: torch.nn.Module, heads: int) -> dict[str, np.ndarray]:
    """Our encoder's weights written out in Google's ViT .npz layout (the test's inverse)."""
    width = encoder.norm.normalized_shape[0]
    arrays = {}
    for index, layer in enumerate(encoder.layers):
        block = f"Transformer/encoderblock_{index}"
        attention = f"{block}/MultiHeadDotProductAttention_1"
        weights = layer.attention.in_proj_weight.detach().numpy()
        biases = layer.attention.in_proj_bias.detach().numpy()
        for part, name in enumerate(("query", "key", "value")):
            kernel = weights[part * width : (part + 1) * width].T
            arrays[f"{attention}/{name}/kernel"] = kernel.reshape(width, heads, width // heads)
            bias = biases[part * width : (part + 1) * width]
            arrays[f"{attention}/{name}/bias"] = bias.reshape(heads, width // heads)
        out = layer.attention.out_proj.weight.detach().numpy().T
        arrays[f"{attention}/out/kernel"] = out.reshape(heads, width // heads, width)
        arrays[f"{attention}/out/bias"] = layer.attention.out_proj.bias.detach().numpy()
        for norm, ours in (("LayerNorm_0", layer.attention_norm), ("LayerNorm_2", layer.mlp_norm)):
            arrays[f"{block}/{norm}/scale"] = ours.weight.detach().numpy()
            arrays[f"{block}/{norm}/bias"] = ours.bias.detach().numpy()
        for dense, ours in (("Dense_0", layer.mlp[0]), ("Dense_1", layer.mlp[3])):
            arrays[f"{block}/MlpBlock_3/{dense}/kernel"] = ours.weight.detach().numpy().T
            arrays[f"{block}/MlpBlock_3/{dense}/bias"] = ours.bias.detach().numpy()
    arrays["Transformer/encoder_norm/scale"] = encoder.norm.weight.detach().numpy()
    arrays["Transformer/encoder_norm/bias"] = encoder.norm.bias.detach().numpy()
    arrays["embedding/kernel"] = np.zeros((16, 16, 3, width), np.float32)  # not taken
    return arrays


def test_user_supplied_vit_weights_in_googles_layout_load_into_the_shared_encoder(tmp_path):
    plain = resvit_trainer(2)
    source = plain.model.vit.eval()
    with torch.no_grad():  # other weights than the trainer's seed draws
        for parameter in source.parameters():
            parameter.add_(torch.randn_like(parameter))
    heads = plain.method.settings(plain.config).vit_heads
    np.savez(tmp_path / "vit.npz", **google_layout(source, heads))
    trainer = resvit_trainer(2, vit_weights=str(tmp_path / "vit.npz"))
    tokens = torch.randn(2, 5, source.norm.normalized_shape[0])
    torch.testing.assert_close(trainer.model.vit.eval()(tokens), source(tokens))
    config = {
        **DEFAULTS,
        "baselines": {
            **DEFAULTS["baselines"],
            "generators": {"resvit": {"vit_weights": str(tmp_path / "vit.npz")}},
        },
    }
    assert jobs.baseline_training_files(config, "resvit", "any") == [str(tmp_path / "vit.npz")]
    np.savez(tmp_path / "bad.npz", **{"Transformer/encoder_norm/scale": np.zeros(3)})
    with pytest.raises(ValueError, match=r"bad.npz \(baselines.generators.resvit.vit_weights\)"):
        resvit_trainer(2, vit_weights=str(tmp_path / "bad.npz"))
