"""Measure the synthesis evaluation; write benchmarks/synthesis.md.

- Metrics: batched PSNR + SSIM (ours, float64) against scikit-image's per-slice functions
  on the same slices (agreement and time), and LPIPS time per slice (AlexNet, 192 x 192;
  timing only, so random weights).
- GAN baselines: generator and discriminator parameters at the demo's and Pix2Pix's sizes.
- Synthesis: CPU time per slice of the demo MMHVAE and of the U-Net baseline (batch 16).

Run from the repository root:  python -m benchmarks.synthesis_benchmark [--output PATH]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from iusynth import jobs
from iusynth.core.config import merge_config
from iusynth.core.modalities import MODALITIES
from iusynth.evaluation import metrics
from iusynth.evaluation.perceptual import LPIPS, lpips_distance
from iusynth.model.discriminator import PatchDiscriminator
from iusynth.model.network import MMHVAE
from iusynth.model.translator import UNetTranslator

REPO = Path(__file__).resolve().parents[1]
SIZE = 192
SIZED = {"preprocessing": {"slice_size": [SIZE, SIZE]}}


def config_with(*files: str | dict) -> dict:
    """The default config with overlays (files of config/, or dicts) merged in."""
    return merge_config(
        yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
        *(
            name if isinstance(name, dict) else yaml.safe_load((REPO / "config" / name).read_text())
            for name in files
        ),
    )


def test_slices(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Sector-like targets with a background, and noisy outputs (0..255)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    sector = (yy > 0.1) & (np.abs(xx - 0.5) < yy * 0.6)
    base = 120 + 60 * np.sin(20 * xx) * np.cos(15 * yy)
    targets = np.stack(
        [np.where(sector, base + rng.normal(0, 20, base.shape), 0) for _ in range(count)]
    )
    outputs = targets + rng.normal(0, 15, targets.shape)
    return (
        np.clip(targets, 0, 255).astype(np.uint8),
        np.clip(np.where(sector, outputs, 0), 0, 255).astype(np.uint8),
    )


def measure_metrics(count: int = 256) -> list[str]:
    """Ours vs scikit-image: largest difference and time."""
    targets, outputs = test_slices(count)
    start = time.perf_counter()
    ranges = metrics.data_ranges(targets)
    psnr, ssim = metrics.psnr(targets, outputs, ranges), metrics.ssim(targets, outputs, ranges)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    reference_psnr, reference_ssim = [], []
    for t, o in zip(targets, outputs, strict=True):
        data_range = float(t.max()) - float(t.min())
        reference_psnr.append(peak_signal_noise_ratio(t, o, data_range=data_range))
        reference_ssim.append(
            structural_similarity(t.astype(float), o.astype(float), data_range=data_range)
        )
    theirs = time.perf_counter() - start
    torch.manual_seed(0)
    lpips = LPIPS().eval()
    first = torch.as_tensor(targets[:64], dtype=torch.float32) / 127.5 - 1
    second = torch.as_tensor(outputs[:64], dtype=torch.float32) / 127.5 - 1
    start = time.perf_counter()
    lpips_distance(lpips, first, second)
    lpips_ms = (time.perf_counter() - start) / 64 * 1e3
    return [
        f"| PSNR + SSIM, batched float64 (ours) | {ours / count * 1e3:.2f} ms |",
        f"| PSNR + SSIM, scikit-image per slice | {theirs / count * 1e3:.2f} ms |",
        f"| largest difference, PSNR (dB) | {np.max(np.abs(psnr - reference_psnr)):.1e} |",
        f"| largest difference, SSIM | {np.max(np.abs(ssim - reference_ssim)):.1e} |",
        f"| LPIPS (AlexNet), per slice pair | {lpips_ms:.2f} ms |",
    ]


def parameters(module: torch.nn.Module) -> str:
    """Trainable parameters in millions."""
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f} M"


def forward_ms(model: torch.nn.Module, call, repeats: int = 3) -> float:
    """Mean time of ``call()`` per slice of a batch of 16."""
    with torch.no_grad():
        call()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
    return (time.perf_counter() - start) / repeats / 16 * 1e3


def measure_models() -> list[str]:
    """Baseline sizes; CPU synthesis time per slice of the demo models."""
    rows = []
    for name, files in (("demo", ()), ("paper", ("paper.yaml",))):
        config = config_with(*files, SIZED)
        pix2pix = jobs.translator(config, "pix2pix", ("T2",), ("US",))
        mmgan = jobs.translator(config, "mmgan", MODALITIES, MODALITIES)
        for config in (pix2pix, mmgan):
            generator = UNetTranslator(config)
            discriminator = PatchDiscriminator(
                config.discriminator_channels,
                config.discriminator_layers,
                in_channels=len(config.inputs) + len(config.targets),
            )
            rows.append(
                f"| {config.kind}, {name} size | {parameters(generator)} | "
                f"{parameters(discriminator)} |"
            )
    torch.manual_seed(0)
    demo = config_with(SIZED)
    vae = MMHVAE(jobs.model(demo, "mmhvae")).eval()
    images = torch.rand(16, 4, SIZE, SIZE) * 2 - 1
    observed = torch.zeros(16, 4, dtype=torch.bool)
    observed[:, 1] = True
    unet = UNetTranslator(jobs.translator(demo, "mmgan", MODALITIES, MODALITIES)).eval()
    timing = [
        f"| MMHVAE, demo size, one sample | "
        f"{forward_ms(vae, lambda: vae(images, observed, temperature=0.7)):.1f} ms |",
        f"| MM-GAN U-Net, demo size | {forward_ms(unet, lambda: unet(images)):.1f} ms |",
    ]
    return rows, timing


def main() -> None:
    """Measure and write the Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "synthesis.md")
    args = parser.parse_args()
    torch.set_num_threads(2)
    metric_rows = measure_metrics()
    size_rows, timing_rows = measure_models()
    lines = [
        "# Synthesis evaluation: measurements",
        "",
        f"Written by `python -m benchmarks.synthesis_benchmark` on {platform.machine()}, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}.",
        "",
        f"## Metrics (256 slices of {SIZE} x {SIZE}, 0..255)",
        "",
        "| what | per slice / value |",
        "|---|---|",
        *metric_rows,
        "",
        "## GAN baselines (generator U-Net, conditional PatchGAN)",
        "",
        "| model | generator | discriminator |",
        "|---|---|---|",
        *size_rows,
        "",
        f"## Synthesis on the CPU (batch 16, {SIZE} x {SIZE}, per slice)",
        "",
        "| model | time |",
        "|---|---|",
        *timing_rows,
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
