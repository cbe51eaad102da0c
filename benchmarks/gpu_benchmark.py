"""Measure the model on a CUDA GPU (or, for a check of the code path, on the CPU).

Paper-size generator forward (one input, four outputs, temperature 0.7) in ms per slice
at batch 16 and 64, fp32 and bf16 (autocast); paper-size training throughput (slices/s,
three passes per step, GAN and discriminators on, bf16 as configured); and one epoch of
the demo's nnU-Net on a small synthetic dataset. Prints Markdown; ``benchmarks/gpu_check.sh``
runs it (with a micro end-to-end run) and writes ``benchmarks/gpu.md``.

    python -m benchmarks.gpu_benchmark [--device cuda] [--size 192] [--quick]

``--quick`` (the tests' CPU check) measures tiny sizes once.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.model_benchmark import training_slices_per_s
from iusynth import jobs
from iusynth.core.config import merge_config
from iusynth.model.network import MMHVAE

REPO = Path(__file__).resolve().parents[1]


QUICK = {
    "preprocessing": {"slice_size": [64, 64]},
    "models": {
        "architecture": {
            "downsamplings": 3,
            "latent_levels": 4,
            "base_channels": 4,
            "max_channels": 8,
            "head_channels": 4,
            "discriminator_channels": 8,
            "discriminator_layers": 3,
        }
    },
}


def paper_config(size: int, quick: bool) -> dict:
    """The default config with config/paper.yaml merged in (tiny sizes if ``quick``)."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    sized = QUICK if quick else {"preprocessing": {"slice_size": [size, size]}}
    return merge_config(base, paper, sized)


def synchronise(device: torch.device) -> None:
    """Wait for the GPU's queued work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_ms(model: MMHVAE, device: torch.device, batch: int, bf16: bool, repeats: int) -> float:
    """Generator forward time per slice: T2 in, four out, temperature 0.7."""
    size = model.config.image_size
    images = torch.rand(batch, len(model.config.modalities), size, size, device=device) * 2 - 1
    observed = torch.zeros(batch, len(model.config.modalities), dtype=torch.bool, device=device)
    observed[:, model.config.modalities.index("T2")] = True
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.inference_mode(), autocast:
        model(images, observed, temperature=0.7, with_kl=False)
        synchronise(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(images, observed, temperature=0.7, with_kl=False)
        synchronise(device)
    return (time.perf_counter() - start) / repeats / batch * 1000


def nnunet_epoch_s(device: str, quick: bool) -> float:
    """Seconds of one nnU-Net epoch (the demo's schedule) on a small synthetic dataset."""
    from iusynth.experiments.segmentation import nnunet
    from iusynth.experiments.segmentation.planes import SubjectPlanes

    config = merge_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), {})
    settings = dataclasses.replace(
        jobs.segmenter(config), device=device, epochs=1, folds=2, batch_size=2
    )
    rng = np.random.default_rng(0)
    size = 64 if quick else 192
    yy, xx = np.mgrid[:size, :size]
    subjects = []
    for index in range(4):
        centre = rng.uniform(size * 0.3, size * 0.7, 2)
        labels = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < (size / 8) ** 2).astype(np.uint8)
        images = rng.integers(0, 80, (6, size, size)).astype(np.uint8) + 120 * labels
        subjects.append(
            SubjectPlanes(f"case{index:02d}", images, np.repeat(labels[None], 6, 0), (1.0, 1.0))
        )
    with tempfile.TemporaryDirectory() as folder:
        segmenter = nnunet.NnunetSegmenter(settings)
        segmenter.prepare(Path(folder), subjects)
        splits = Path(folder) / "splits.json"
        segmenter.write_splits(Path(folder), splits)
        start = time.perf_counter()
        segmenter.train(Path(folder), 0, splits)
        return time.perf_counter() - start


def main() -> None:
    """Measure and print the Markdown lines."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (tests)")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = paper_config(args.size, args.quick)
    model_config = jobs.model(config, "mmhvae")
    model = MMHVAE(model_config).to(device).eval()
    repeats = 1 if args.quick else 10
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [f"| measure ({name}, torch {torch.__version__}) | value |", "| --- | --- |"]
    for batch in (2, 4) if args.quick else (16, 64):
        for bf16 in (False, True):
            value = forward_ms(model, device, batch, bf16, repeats)
            precision = "bf16" if bf16 else "fp32"
            lines.append(f"| forward, batch {batch}, {precision} | {value:.2f} ms/slice |")
    training = dataclasses.replace(
        jobs.training(config, "mmhvae"), batch_slices=2 if args.quick else 16
    )
    throughput = training_slices_per_s(model_config, training, args.device, 1 if args.quick else 10)
    lines.append(f"| training, GAN on, bf16 {training.bf16} | {throughput:.1f} slices/s |")
    lines.append(
        f"| nnU-Net, one epoch (demo schedule) | {nnunet_epoch_s(args.device, args.quick):.1f} s |"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
