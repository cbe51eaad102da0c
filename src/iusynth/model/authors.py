"""The authors' published MMHVAE weights, read into our model.

The authors' training script saves ``model.state_dict()`` of their ``MHVAE2D`` (or, for
the L = 1 network, ``MVAE2D``): their key names, modalities named ``us``, ``t2``,
``cet1``, ``flair``, weight-normed layers as ``parametrizations.weight.original0/1``
(older PyTorch: ``weight_g`` / ``weight_v``). :func:`load_authors_checkpoint` reads the
architecture from the tensors' names and shapes, maps every tensor onto our module names
and returns the model ready for inference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from iusynth.model.network import MMHVAE, ModelConfig

AUTHORS_MODALITIES = {"us": "US", "t2": "T2", "cet1": "ceT1", "flair": "FLAIR"}

# Their block-internal names -> ours (the same layer in our nn.Sequential bodies).
_ENCODER_BLOCK = {
    "conv_0": "body.2",
    "conv_1": "body.5",
    "se.se.0": "body.6.gate.0",
    "se.se.2": "body.6.gate.2",
}
_DECODER_CELL = {
    "conv_0": "body.1",
    "dw_conv_1": "body.4",
    "se_2.se.0": "body.7.gate.0",
    "se_2.se.2": "body.7.gate.2",
    "conv_2": "body.8",
}
_CONV_STACK = {
    "conv_0": "body.2",
    "conv_1": "body.5",
    "se.se.0": "body.6.gate.0",
    "se.se.2": "body.6.gate.2",
    "last_conv": "out",
}
_WEIGHT_NORM = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}


class AuthorsCheckpointError(ValueError):
    """A file or state dict that is not a loadable authors' MMHVAE checkpoint."""


def _read(source: str | Path | Mapping[str, torch.Tensor]) -> tuple[dict, str]:
    """The state dict (float32 copies) and a name for messages."""
    if isinstance(source, Mapping):
        state, name = dict(source), "the state dict"
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise AuthorsCheckpointError(
                f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error}); "
                "the file is truncated or of another kind: download it again (the authors' "
                "repository, pretrained/mmhvae_f0/models/CP_main_1000.pth)"
            ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise AuthorsCheckpointError(
            f"{name}: expected a plain state dict (tensor names -> tensors), as the authors' "
            "training script saves it"
        )
    floats = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return floats, name


def _shape(state: dict, key: str, name: str) -> torch.Size:
    """The shape of a (possibly weight-normed) tensor, naming it when absent."""
    for candidate in (
        key,
        key.replace(".weight", ".parametrizations.weight.original1"),
        key.replace(".weight", ".weight_v"),
    ):
        if candidate in state:
            return state[candidate].shape
    raise AuthorsCheckpointError(
        f"{name}: no tensor {key!r}; this is not the authors' MHVAE2D/MVAE2D state dict"
    )


def authors_config(state: Mapping[str, torch.Tensor], name: str = "the state dict") -> ModelConfig:
    """Our :class:`ModelConfig` for the authors' network whose tensors these are."""
    theirs = [
        match.group(1)
        for key in state
        if (match := re.fullmatch(r"first_conv\.(\w+)\.weight", key))
    ]
    if not theirs:
        raise AuthorsCheckpointError(
            f"{name}: no first_conv.<modality>.weight tensor; this is not the authors' "
            "MHVAE2D/MVAE2D state dict"
        )
    unknown = [m for m in theirs if m not in AUTHORS_MODALITIES]
    if unknown:
        raise AuthorsCheckpointError(
            f"{name}: modalities {unknown} are not among {list(AUTHORS_MODALITIES)}"
        )
    first = theirs[0]
    depth = sum(1 for key in state if re.fullmatch(rf"td\.{first}\.\d+\.weight", key))
    base = _shape(state, f"first_conv.{first}.weight", name)[0]
    top_out, top_latent = _shape(state, "bottleneck_up.linear.weight", name)
    max_channels = top_latent // 2
    top_size = math.isqrt(top_out // max_channels)
    if top_size * top_size * max_channels != top_out:
        raise AuthorsCheckpointError(
            f"{name}: bottleneck_up.linear maps {top_latent} to {top_out} features, which is "
            f"not {max_channels} channels on a square map"
        )
    cell = _shape(state, "conv_blocks_localization.0.conv_0.weight", name)
    hierarchical = any(key.startswith("pz.") for key in state)
    head_blocks = sum(
        1
        for key in state
        if re.fullmatch(rf"final_blocks\.{first}\.res\.\d+\.conv_block\.1\.weight", key)
    )
    return ModelConfig(
        modalities=tuple(AUTHORS_MODALITIES[m] for m in theirs),
        image_size=top_size * 2**depth,
        base_channels=base,
        max_channels=max_channels,
        downsamplings=depth,
        latent_levels=depth + 1 if hierarchical else 1,
        head_channels=_shape(state, f"final_blocks.{first}.convt2.weight", name)[0],
        expand=cell[0] // cell[1],
        head_blocks=head_blocks,
        # their product of experts, KL estimate, output mask and discriminator
        fusion="poe",
        poe="authors",
        kl="sampled",
        output_mask="first_input",
        discriminator_channels=64,
        discriminator_layers=6,
    )


def our_key(key: str, config: ModelConfig) -> str:
    """Our parameter name for one of the authors' tensor names (ValueError if unknown)."""
    depth = config.downsamplings
    index = {m: i for i, m in enumerate(config.modalities)}
    for old, new in _WEIGHT_NORM.items():
        if key.endswith(old):
            key = key[: -len(old)] + new
    rules = [
        (r"first_conv\.(\w+)\.(.+)", lambda m, rest: f"encoders.{m}.stem.{rest}"),
        (r"td\.(\w+)\.(\d+)\.(.+)", lambda m, s, rest: f"encoders.{m}.downs.{s}.{rest}"),
        (
            r"conv_blocks_context\.(\w+)\.(\d+)\.(conv_0|conv_1|se\.se\.0|se\.se\.2)\.(.+)",
            lambda m, s, layer, rest: f"encoders.{m}.blocks.{s}.{_ENCODER_BLOCK[layer]}.{rest}",
        ),
        (r"bottleneck_down\.linear\.(.+)", lambda rest: f"top_expert.linear.{rest}"),
        (r"bottleneck_up\.linear\.(.+)", lambda rest: f"top_decode.{rest}"),
        (r"tu\.(\d+)\.conv_1\.(.+)", lambda i, rest: f"ups.{depth - 1 - int(i)}.conv.{rest}"),
        (
            r"conv_blocks_localization\.(\d+)\.(conv_0|dw_conv_1|se_2\.se\.0|se_2\.se\.2|conv_2)"
            r"\.(.+)",
            lambda i, layer, rest: f"cells.{depth - 1 - int(i)}.{_DECODER_CELL[layer]}.{rest}",
        ),
        (
            r"qz\.(\d+)\.(conv_0|conv_1|se\.se\.0|se\.se\.2|last_conv)\.(.+)",
            lambda i, layer, rest: (
                f"experts.{depth - 1 - int(i)}.net.{_CONV_STACK[layer]}.{rest}"
                if config.latent_levels > 1
                else f"deterministic.{depth - 1 - int(i)}.{_CONV_STACK[layer]}.{rest}"
            ),
        ),
        (r"pz\.(\d+)\.(.+)", lambda i, rest: f"priors.{depth - 1 - int(i)}.conv.{rest}"),
        (
            r"final_blocks\.(\w+)\.res\.(\d+)\.conv_block\.(1|5)\.(.+)",
            lambda m, j, layer, rest: f"heads.{m}.body.{j}.body.{0 if layer == '1' else 3}.{rest}",
        ),
        (r"final_blocks\.(\w+)\.res\.0\.(weight|bias)", lambda m, rest: f"heads.{m}.body.0.{rest}"),
        (
            r"final_blocks\.(\w+)\.(convt2|convt3)\.(.+)",
            lambda m, layer, rest: f"heads.{m}.body.{_head_offset(config, layer)}.{rest}",
        ),
    ]
    for pattern, build in rules:
        match = re.fullmatch(pattern, key)
        if match:
            groups = list(match.groups())
            if pattern.startswith(("first_conv", "td", "conv_blocks_context", "final_blocks")):
                groups[0] = str(index[AUTHORS_MODALITIES[groups[0]]])
            return build(*groups)
    raise ValueError(f"no counterpart for the authors' tensor {key!r}")


def _head_offset(config: ModelConfig, layer: str) -> int:
    """Index in our head's body of the authors' ``convt2`` / ``convt3``."""
    latent = config.latent_channels(0)
    start = (0 if latent == config.head_channels else 1) + config.head_blocks
    return start if layer == "convt2" else start + 3


def convert_state_dict(state: Mapping[str, torch.Tensor], config: ModelConfig, name: str) -> dict:
    """The authors' tensors under our names, every one checked against ``config``'s model."""
    expected = MMHVAE(config).state_dict()
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        try:
            ours = our_key(key, config)
        except (ValueError, KeyError):
            raise AuthorsCheckpointError(
                f"{name}: tensor {key!r} has no counterpart in the model read from the "
                f"checkpoint ({config})"
            ) from None
        if ours not in expected:
            raise AuthorsCheckpointError(
                f"{name}: tensor {key!r} maps to {ours!r}, which the model read from the "
                "checkpoint does not have"
            )
        if tuple(expected[ours].shape) != tuple(tensor.shape):
            raise AuthorsCheckpointError(
                f"{name}: tensor {key!r} has shape {tuple(tensor.shape)}; the model read from "
                f"the checkpoint expects {tuple(expected[ours].shape)} for it ({ours})"
            )
        converted[ours] = tensor
    missing = [key for key in expected if key not in converted]
    if missing:
        raise AuthorsCheckpointError(
            f"{name}: no tensor for our {missing[0]!r} (and {len(missing) - 1} more); the "
            "checkpoint is incomplete or of another architecture"
        )
    return converted


def load_authors_checkpoint(source: str | Path | Mapping[str, torch.Tensor]) -> MMHVAE:
    """Our :class:`MMHVAE` holding the authors' weights, in eval mode (public API).

    ``source``: a checkpoint file saved by the authors' training script (e.g. their
    published ``pretrained/mmhvae_f0/models/CP_main_1000.pth``) or its state dict. The
    architecture (modalities, widths, poolings, image size, head width and blocks) is read
    from the tensors; the model uses their product of experts and output mask.
    """
    state, name = _read(source)
    config = authors_config(state, name)
    model = MMHVAE(config)
    model.load_state_dict(convert_state_dict(state, config, name), strict=True)
    return model.eval()
