"""LPIPS (Zhang et al. 2018, version 0.1) with an AlexNet trunk defined here.

torchvision cannot be imported on every machine this workflow runs on, so the AlexNet
feature layers are declared in this module with the same layer indices as torchvision's
``alexnet().features``; its standard weight file loads into them unchanged. The learned
per-channel weights of LPIPS come from the ``lpips`` package's ``weights/v0.1/alex.pth``.

Both files live in one folder (``evaluation.lpips_weights`` in the config)::

    alexnet-owt-7be5be79.pth    torchvision's ImageNet AlexNet (233 MB)
    lpips-alex-v0.1.pth         the five linear layers of LPIPS v0.1 (6 kB)

``python -m iusynth lpips-weights --folder <folder>`` downloads them (internet needed).
Without them, :func:`load_lpips` returns None and the tables say the weights are absent.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from iusynth.datasets.download import CorruptDownload, RetryPolicy, fetch, fetch_text
from iusynth.fileio import atomic_path

log = logging.getLogger(__name__)

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
LINEAR_FILE = "lpips-alex-v0.1.pth"
BACKBONE_URL = f"https://download.pytorch.org/models/{BACKBONE_FILE}"
BACKBONE_SHA256_PREFIX = "7be5be79"  # torchvision names its files by their hash prefix
LPIPS_RELEASE_JSON = "https://pypi.org/pypi/lpips/0.1.4/json"
LPIPS_WHEEL_MEMBER = "lpips/weights/v0.1/alex.pth"

# Feature maps compared: after each ReLU of AlexNet's five convolutions.
TAP_LAYERS = (1, 4, 7, 9, 11)
TAP_CHANNELS = (64, 192, 384, 256, 256)
# Input scaling of LPIPS v0.1 (ImageNet statistics in the [-1, 1] range).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional part, indexed like torchvision's ``features``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five tapped activations."""
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAP_LAYERS:
                taps.append(x)
        return taps


def _unit_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Each pixel's feature vector divided by its L2 norm."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Learned perceptual distance between images in [-1, 1] (1 or 3 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = AlexNetFeatures()
        self.linear = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in TAP_CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """One distance per image pair (batch,)."""
        if first.shape[1] == 1:
            first, second = first.expand(-1, 3, -1, -1), second.expand(-1, 3, -1, -1)
        taps_a = self.trunk((first - self.shift) / self.scale)
        taps_b = self.trunk((second - self.shift) / self.scale)
        distance = torch.zeros(first.shape[0], device=first.device, dtype=first.dtype)
        for linear, a, b in zip(self.linear, taps_a, taps_b, strict=True):
            difference = (_unit_channels(a) - _unit_channels(b)) ** 2
            distance = distance + linear(difference).mean(dim=(1, 2, 3))
        return distance


def load_lpips(folder: Path | None, device: str | torch.device = "cpu") -> LPIPS | None:
    """LPIPS with its weights from ``folder``; None when the weight files are not there."""
    if folder is None:
        return None
    folder = Path(folder).expanduser()
    backbone, linear = folder / BACKBONE_FILE, folder / LINEAR_FILE
    missing = [path.name for path in (backbone, linear) if not path.is_file()]
    if missing:
        log.warning(
            "LPIPS: %s not in %s; the LPIPS column will say the weights are absent "
            "(python -m iusynth lpips-weights --folder %s gets them)",
            ", ".join(missing),
            folder,
            folder,
        )
        return None
    model = LPIPS()
    try:
        trunk_state = torch.load(backbone, map_location="cpu", weights_only=True)
        linear_state = torch.load(linear, map_location="cpu", weights_only=True)
        model.trunk.load_state_dict(
            {k: v for k, v in trunk_state.items() if k.startswith("features.")}
        )
        model.linear.load_state_dict(
            {f"{k[3]}.weight": v for k, v in linear_state.items() if k.startswith("lin")}
        )
    except (
        RuntimeError,
        KeyError,
        IndexError,
        EOFError,
        ValueError,
        pickle.UnpicklingError,
    ) as error:
        raise ValueError(
            f"LPIPS weights in {folder} could not be loaded ({error}); delete them and run "
            f"python -m iusynth lpips-weights --folder {folder}"
        ) from error
    return model.to(device).eval()


def _sha256_prefix_check(path: Path) -> None:
    """Refuse a backbone file whose SHA-256 does not start with torchvision's prefix."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(BACKBONE_SHA256_PREFIX):
        raise CorruptDownload(f"SHA-256 {digest[:8]}... is not {BACKBONE_SHA256_PREFIX}...")


def fetch_lpips_weights(
    folder: Path,
    policy: RetryPolicy | None = None,
    backbone_url: str = BACKBONE_URL,
    release_json: str = LPIPS_RELEASE_JSON,
) -> list[Path]:
    """Download the AlexNet trunk and LPIPS's linear layers into ``folder``.

    The linear layers are read from the ``lpips`` wheel on PyPI (checked against PyPI's
    MD5), without installing it.
    """
    import json

    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    backbone = folder / BACKBONE_FILE
    if not backbone.is_file():
        fetch(backbone_url, backbone, policy=policy, validate=_sha256_prefix_check)
    linear = folder / LINEAR_FILE
    if not linear.is_file():
        release = json.loads(fetch_text(release_json, policy=policy))
        wheel = next(u for u in release["urls"] if u["filename"].endswith(".whl"))
        wheel_path = folder / wheel["filename"]
        fetch(wheel["url"], wheel_path, policy=policy, expected_md5=wheel["md5_digest"])
        with zipfile.ZipFile(wheel_path) as archive:
            payload = archive.read(LPIPS_WHEEL_MEMBER)
        torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        with atomic_path(linear) as tmp:
            tmp.write_bytes(payload)
        wheel_path.unlink()
    return [backbone, linear]


def lpips_distance(
    model: LPIPS, first: torch.Tensor, second: torch.Tensor, batch: int = 64
) -> torch.Tensor:
    """LPIPS of image pairs (N x H x W, in [-1, 1]) in batches; returns (N,) on the CPU."""
    device = next(model.parameters()).device
    values = []
    with torch.no_grad():
        for start in range(0, first.shape[0], batch):
            a = first[start : start + batch, None].to(device, torch.float32)
            b = second[start : start + batch, None].to(device, torch.float32)
            values.append(model(a, b).cpu())
    return torch.cat(values) if values else torch.zeros(0)
