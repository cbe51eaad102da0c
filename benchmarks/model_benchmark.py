"""Measure the synthesis model; write benchmarks/model.md.

Parity with the authors' MMHVAE (max |ours - theirs| per reference case, when
``../shared/reference/authors_mmhvae`` is present), parameters per part, MACs per slice
(torch.utils.flop_counter) with T2 in and with all four in, CPU forward time per slice
(batch 16) and, when CUDA is present, GPU forward time and training throughput, for the
paper's configuration (config/paper.yaml) and the demo's.
Run from the repository root:  python -m benchmarks.model_benchmark [--output PATH]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from iusynth import jobs
from iusynth.core.config import merge_config
from iusynth.model.authors import AUTHORS_MODALITIES, load_authors_checkpoint
from iusynth.model.discriminator import PatchDiscriminator
from iusynth.model.network import MMHVAE, ModelConfig, parameter_counts
from iusynth.preprocessing.slices import SliceStack
from iusynth.training.mmhvae import Trainer, TrainingConfig, training_steps

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "authors_mmhvae"


def merged(*files: str) -> dict:
    """The default config with overlays merged in."""
    return merge_config(
        yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
        *(yaml.safe_load((REPO / "config" / name).read_text()) for name in files),
    )


def parity_lines() -> list[str]:
    """Max |ours - theirs| per case of the authors' reference outputs."""
    if not REFERENCE.is_dir():
        return [f"Parity not measured: {REFERENCE} is absent.", ""]
    lines = [
        "## Parity with the authors' MMHVAE",
        "",
        "Their `MHVAE2D` (ReubenDo/MMHVAE) computed these outputs from random weights; ours "
        "loads the same state dict with `load_authors_checkpoint` and runs `translate`.",
        "",
        "| reference | inputs | temperature | max abs difference |",
        "| --- | --- | --- | --- |",
    ]
    for name in ("small", "paper"):
        data = torch.load(REFERENCE / f"{name}.pt", weights_only=False)
        model = load_authors_checkpoint(data["state_dict"])
        for case in data["cases"]:
            images = {AUTHORS_MODALITIES[m]: data["inputs"][m] for m in case["inputs"]}
            torch.manual_seed(case["seed_before_forward"])
            with torch.inference_mode():
                outputs = model.translate(images, case["temperature"])
            difference = max(
                float((outputs[AUTHORS_MODALITIES[m]] - expected).abs().max())
                for m, expected in case["outputs"].items()
            )
            inputs = "+".join(AUTHORS_MODALITIES[m] for m in case["inputs"])
            lines.append(f"| {name}.pt | {inputs} | {case['temperature']} | {difference:.1e} |")
    return [*lines, ""]


def macs_per_slice(model: MMHVAE, inputs: tuple[str, ...], size: int) -> float:
    """Multiply-accumulates of one forward pass per slice (FLOPs / 2), batch 2."""
    images = torch.rand(2, len(model.config.modalities), size, size) * 2 - 1
    observed = torch.zeros(2, len(model.config.modalities), dtype=torch.bool)
    observed[:, [model.config.modalities.index(m) for m in inputs]] = True
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images, observed, temperature=0.0)
    return counter.get_total_flops() / 2 / 2


def forward_ms_per_slice(model: MMHVAE, device: torch.device, size: int, repeats: int) -> float:
    """Forward time per slice, batch 16, T2 in (four out), temperature 0.7."""
    model = model.to(device).eval()
    images = torch.rand(16, len(model.config.modalities), size, size, device=device) * 2 - 1
    observed = torch.zeros(16, len(model.config.modalities), dtype=torch.bool, device=device)
    observed[:, model.config.modalities.index("T2")] = True
    with torch.inference_mode():
        model(images, observed, temperature=0.7)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            model(images, observed, temperature=0.7)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats / 16 * 1000


def training_slices_per_s(
    model_config: ModelConfig, training: TrainingConfig, device: str, steps: int
) -> float:
    """Training throughput: slices per second of optimiser steps (three passes, GAN on)."""
    size = model_config.image_size
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (training.batch_slices, 4, size, size)).astype(np.float16)
    meta = {"modalities": ["US", "T2", "ceT1", "FLAIR"], "present": [True] * 4}
    stack = SliceStack(images, np.ones((training.batch_slices, size, size), bool), {}, meta)
    config = TrainingConfig(
        **{
            **training.__dict__,
            "device": device,
            "gan_start_epoch": 1,
            "discriminator_start_epoch": 1,
        }
    )
    trainer = Trainer(model_config, config, [stack], [])
    batch = trainer.train.batch(0, rng)
    passes = training_steps((0, 1, 2, 3), "mixture", model_config.modalities)
    trainer.step(batch, passes[0], 1)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for index in range(steps):
        trainer.step(batch, passes[index % len(passes)], 1)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * training.batch_slices / (time.perf_counter() - start)


def section_for(name: str, config: dict, cpu_training: bool) -> list[str]:
    """Markdown for one configuration (CPU training throughput only if asked)."""
    architecture = jobs.model(config, "mmhvae")
    training = jobs.training(config, "mmhvae")
    model = MMHVAE(architecture)
    counts = parameter_counts(model)
    two = parameter_counts(
        MMHVAE(ModelConfig(**{**architecture.__dict__, "modalities": ("US", "T2")}))
    )
    disc = sum(
        p.numel()
        for p in PatchDiscriminator(
            architecture.discriminator_channels, architecture.discriminator_layers
        ).parameters()
    )
    size = architecture.image_size
    one_input = macs_per_slice(model, ("T2",), size)
    all_inputs = macs_per_slice(model, architecture.modalities, size)
    lines = [
        f"## {name}",
        "",
        f"Architecture: `{config['models']['architecture']}`, slices "
        f"{config['preprocessing']['slice_size']}",
        "",
        "| part | parameters |",
        "| --- | --- |",
        *[f"| {part} | {n:,} |" for part, n in counts.items()],
        f"| generator with 2 modalities (MHVAE: iUS, T2) | {two['total']:,} |",
        f"| one PatchGAN discriminator | {disc:,} |",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| MACs per slice, T2 in, 4 out ({size}x{size}) | {one_input / 1e9:.2f} G |",
        f"| MACs per slice, 4 in, 4 out | {all_inputs / 1e9:.2f} G |",
        f"| CPU forward per slice (batch 16, T2 in, {torch.get_num_threads()} threads) | "
        f"{forward_ms_per_slice(model, torch.device('cpu'), size, 2):.0f} ms |",
    ]
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
        lines += [
            f"| GPU forward per slice (batch 16, {gpu}) | "
            f"{forward_ms_per_slice(model, torch.device('cuda'), size, 20):.2f} ms |",
            f"| training, slices/s ({gpu}, three passes per step, GAN on) | "
            f"{training_slices_per_s(architecture, training, 'cuda', 5):.1f} |",
        ]
    elif cpu_training:
        lines.append(
            f"| CPU training, slices/s (three passes per step, GAN on) | "
            f"{training_slices_per_s(architecture, training, 'cpu', 2):.2f} |"
        )
    return [*lines, ""]


def main() -> None:
    """Measure both configurations and write the Markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "model.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    lines = [
        "# The synthesis model: measured",
        "",
        f"Written by `python -m benchmarks.model_benchmark` on {platform.node()} "
        f"({platform.machine()}, {torch.get_num_threads()} CPU threads, {device}, "
        f"torch {torch.__version__}).",
        "",
        *parity_lines(),
        *section_for("Paper configuration (config/paper.yaml)", merged("paper.yaml"), False),
        *section_for("Demo configuration (config/config.yaml)", merged(), True),
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
