"""The ResViT generator (Dalmaz et al., IEEE TMI 2022), written from its paper and settings.

A convolutional encoder (7 x 7 convolution, then two stride-2 convolutions to 4 widths),
a bottleneck of aggregated residual transformer ("ART") blocks at a quarter of the
resolution, a decoder of transposed convolutions and a tanh. Every ART block ends in a
residual CNN block; the ones listed in ``transformer_blocks`` first add a transformer
branch: two more stride-2 convolutions, a 1 x 1 patch embedding with learned positions,
the ViT encoder (one encoder shared by every such block, as in the original), transposed
convolutions back, concatenation with the block's input and a residual channel
compression. Batch norm and reflection padding throughout, as in ResViT. With its
transformer branches switched off (:meth:`ResViTGenerator.use_transformers`) it is the
ResNet that ResViT's first training stage trains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from iusynth.methods.resvit import TOKEN_STRIDE, ResViTSettings


def _conv_bn_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


def _up(in_channels: int, out_channels: int) -> list[nn.Module]:
    conv = nn.ConvTranspose2d(
        in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False
    )
    return _conv_bn_relu(conv, out_channels)


def _down(in_channels: int, out_channels: int) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)
    return _conv_bn_relu(conv, out_channels)


class ResidualBlock(nn.Module):
    """Two reflection-padded 3 x 3 convolutions with batch norm, added to the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            *_conv_bn_relu(nn.Conv2d(channels, channels, 3, bias=False), channels),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the block's residual."""
        return x + self.body(x)


class ChannelCompression(nn.Module):
    """A residual block from ``in_channels`` to ``out_channels`` (1 x 1 projected skip)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), out_channels
            ),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.skip = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The compressed features, ReLU'd."""
        return torch.relu(self.body(x) + self.skip(x))


class TransformerLayer(nn.Module):
    """A pre-norm ViT layer: self-attention and a GELU MLP, each added to its input.

    Dropout after the MLP's activation and output only, none on the attention (ResViT's
    ViT-B settings).
    """

    def __init__(self, settings: ResViTSettings) -> None:
        super().__init__()
        width = settings.vit_width
        self.attention_norm = nn.LayerNorm(width, eps=1e-6)
        self.attention = nn.MultiheadAttention(width, settings.vit_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(width, settings.vit_mlp),
            nn.GELU(),
            nn.Dropout(settings.vit_dropout),
            nn.Linear(settings.vit_mlp, width),
            nn.Dropout(settings.vit_dropout),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tokens after attention and MLP (batch x tokens x width)."""
        normed = self.attention_norm(tokens)
        tokens = tokens + self.attention(normed, normed, normed, need_weights=False)[0]
        return tokens + self.mlp(self.mlp_norm(tokens))


class ViTEncoder(nn.Module):
    """``vit_layers`` transformer layers and a final layer norm: ViT-B's encoder."""

    def __init__(self, settings: ResViTSettings) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(TransformerLayer(settings) for _ in range(settings.vit_layers))
        )
        self.norm = nn.LayerNorm(settings.vit_width, eps=1e-6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encoded tokens (batch x tokens x width)."""
        return self.norm(self.layers(tokens))


class ARTBlock(nn.Module):
    """A residual CNN block, after a transformer branch when given the shared encoder."""

    def __init__(self, settings: ResViTSettings, encoder: ViTEncoder | None) -> None:
        super().__init__()
        width = 4 * settings.base_channels
        self.encoder = encoder
        if encoder is not None:
            middle, branch = 2 * width, settings.branch_channels
            self.downsample = nn.Sequential(*_down(width, middle), *_down(middle, branch))
            self.embedding = nn.Conv2d(branch, settings.vit_width, 1)
            tokens = (settings.image_size // TOKEN_STRIDE) ** 2
            self.positions = nn.Parameter(torch.zeros(1, tokens, settings.vit_width))
            self.dropout = nn.Dropout(settings.vit_dropout)
            self.upsample = nn.Sequential(*_up(settings.vit_width, middle), *_up(middle, width))
            self.compression = ChannelCompression(2 * width, width)
        self.residual = ResidualBlock(width)
        self.transformer_on = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output features, the input's shape."""
        if self.encoder is not None and self.transformer_on:
            grid = self.embedding(self.downsample(x))
            batch, width, height, breadth = grid.shape
            tokens = self.dropout(grid.flatten(2).transpose(1, 2) + self.positions)
            encoded = self.encoder(tokens).transpose(1, 2).reshape(batch, width, height, breadth)
            x = self.compression(torch.cat([self.upsample(encoded), x], dim=1))
        return self.residual(x)


class ResViTGenerator(nn.Module):
    """ResViT from ``in_channels`` input images to ``out_channels`` images in [-1, 1]."""

    def __init__(self, settings: ResViTSettings, in_channels: int, out_channels: int) -> None:
        super().__init__()
        base = settings.base_channels
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            *_conv_bn_relu(nn.Conv2d(in_channels, base, 7, bias=False), base),
            *_down(base, 2 * base),
            *_down(2 * base, 4 * base),
        )
        self.vit = ViTEncoder(settings)
        self.blocks = nn.Sequential(
            *(
                ARTBlock(settings, self.vit if index in settings.transformer_blocks else None)
                for index in range(1, settings.art_blocks + 1)
            )
        )
        self.decoder = nn.Sequential(
            *_up(4 * base, 2 * base),
            *_up(2 * base, base),
            nn.ReflectionPad2d(3),
            nn.Conv2d(base, out_channels, 7),
            nn.Tanh(),
        )

    def use_transformers(self, on: bool) -> None:
        """Switch the ART blocks' transformer branches on (ResViT) or off (its ResNet)."""
        for block in self.blocks:
            block.transformer_on = on

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs (batch x out_channels x H x W) from inputs (batch x in_channels x H x W)."""
        return self.decoder(self.blocks(self.encoder(inputs)))


def vit_b16_state(arrays: dict[str, np.ndarray], encoder: ViTEncoder) -> dict[str, torch.Tensor]:
    """``encoder``'s state dict from ViT weights in Google's ``.npz`` layout.

    Per layer ``i`` of ``Transformer/encoderblock_{i}``: ``LayerNorm_0`` and ``LayerNorm_2``
    (before attention and MLP), ``MultiHeadDotProductAttention_1`` (query, key, value:
    width x heads x head width kernels; out: heads x head width x width) and
    ``MlpBlock_3/Dense_0``, ``Dense_1`` (in x out kernels); ``Transformer/encoder_norm``.
    Only the encoder is taken (ResViT embeds its own tokens). Raises KeyError or
    ValueError naming the array that is absent or of another shape.
    """
    width = encoder.norm.normalized_shape[0]

    def array(key: str, shape: tuple[int, ...]) -> torch.Tensor:
        value = np.asarray(arrays[key], dtype=np.float32)
        if value.size != int(np.prod(shape)):
            raise ValueError(f"{key}: shape {value.shape}, the encoder needs {shape}")
        return torch.from_numpy(value.reshape(shape).copy())

    def dense(key: str, inputs: int, outputs: int) -> torch.Tensor:  # (out, in) for torch
        return array(f"{key}/kernel", (inputs, outputs)).T.contiguous()

    state: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(encoder.layers):
        block, ours = f"Transformer/encoderblock_{index}", f"layers.{index}"
        attention = f"{block}/MultiHeadDotProductAttention_1"
        mlp = layer.mlp[0].out_features
        for norm, name in (("LayerNorm_0", "attention_norm"), ("LayerNorm_2", "mlp_norm")):
            state[f"{ours}.{name}.weight"] = array(f"{block}/{norm}/scale", (width,))
            state[f"{ours}.{name}.bias"] = array(f"{block}/{norm}/bias", (width,))
        projections = ("query", "key", "value")
        state[f"{ours}.attention.in_proj_weight"] = torch.cat(
            [dense(f"{attention}/{p}", width, width) for p in projections]
        )
        state[f"{ours}.attention.in_proj_bias"] = torch.cat(
            [array(f"{attention}/{p}/bias", (width,)) for p in projections]
        )
        state[f"{ours}.attention.out_proj.weight"] = dense(f"{attention}/out", width, width)
        state[f"{ours}.attention.out_proj.bias"] = array(f"{attention}/out/bias", (width,))
        state[f"{ours}.mlp.0.weight"] = dense(f"{block}/MlpBlock_3/Dense_0", width, mlp)
        state[f"{ours}.mlp.0.bias"] = array(f"{block}/MlpBlock_3/Dense_0/bias", (mlp,))
        state[f"{ours}.mlp.3.weight"] = dense(f"{block}/MlpBlock_3/Dense_1", mlp, width)
        state[f"{ours}.mlp.3.bias"] = array(f"{block}/MlpBlock_3/Dense_1/bias", (width,))
    state["norm.weight"] = array("Transformer/encoder_norm/scale", (width,))
    state["norm.bias"] = array("Transformer/encoder_norm/bias", (width,))
    return state


def load_vit_weights(encoder: ViTEncoder, path: Path) -> None:
    """Load ViT-B/16 weights (Google's ``.npz``, no pickles) into ``encoder``.

    Raises ValueError naming the file and the array when they do not fit.
    """
    try:
        with np.load(path, allow_pickle=False) as arrays:
            state = vit_b16_state(dict(arrays), encoder)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"ResViT ViT weights {path} (baselines.generators.resvit.vit_weights) do not fit "
            f"its encoder: {error}; give ViT-B/16 weights in Google's .npz layout, or null"
        ) from error
    encoder.load_state_dict(state)
