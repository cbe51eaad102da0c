"""What each synthesis method costs at the paper's size: parameters, MACs and time per slice.

For every method of the papers' Table 1 that the workflow has, built at the paper's size
(config/paper.yaml): the MMHVAE family's variants ``mmhvae`` and ``mhvae``, and every
registered GAN baseline (:data:`iusynth.methods.TRANSLATORS`, its network for T2 -> iUS).
Each is called as the synthesis stage calls it (:mod:`iusynth.synthesis.synthesizers`),
T2 in, on 192 x 192 slices:

- generator parameters: unique tensors, and as registered (a tensor counted in every
  module that holds it: ResViT's shared ViT encoder three times, as in its original code);
- multiply-accumulates per slice (``torch.utils.flop_counter``: FLOPs / 2, batch 2);
- CPU milliseconds per slice at batch 16 with ``--threads`` torch threads, the methods
  interleaved over ``--rounds`` rounds after a one-slice warm-up (median, min-max); and on a GPU
  when one is present;
- sampling steps (network passes per synthesis: M2DN's DDIM steps).

Beside them, what the papers state. Writes ``benchmarks/efficiency.md``::

    python -m benchmarks.efficiency_benchmark [--rounds 5] [--threads 2] [--no-timing]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.model_benchmark import merged
from iusynth import jobs
from iusynth.core.modalities import MODALITIES
from iusynth.methods import TRANSLATORS
from iusynth.model.network import MMHVAE
from iusynth.synthesis.synthesizers import Synthesizer, TranslatorSynthesizer, VAESynthesizer
from iusynth.training.baselines import build_generator

REPO = Path(__file__).resolve().parents[1]
PAPER_MMHVAE_GMACS = 13.0
PAPER_RESVIT_GMACS = 274.0
VARIANTS = ("mmhvae", "mhvae")
DIRECTION = "T2-to-US"
# The papers' statements (SPEC.md section 3; hardware not stated for the times).
CLAIMS = {
    "mmhvae": "~14 M parameters, 13 G MACs, 55 ms per inference (MMHVAE paper)",
    "resvit": "293 M parameters, 274 G MACs (MMHVAE paper)",
    "m2dn": "290 ms per inference, 18 sampling steps (MMHVAE paper)",
}


def synthesizers(config: dict[str, Any]) -> dict[str, tuple[Synthesizer, torch.nn.Module]]:
    """Every method at the paper's size, with random weights: its synthesiser and generator."""
    torch.manual_seed(0)
    built: dict[str, tuple[Synthesizer, torch.nn.Module]] = {}
    for name in VARIANTS:
        model = MMHVAE(jobs.model(config, name)).eval()
        built[name] = (VAESynthesizer(model), model)
    for name, method in TRANSLATORS.items():
        network = method.networks([DIRECTION])[0]
        inputs, targets = method.modalities(network)
        generator = build_generator(jobs.translator(config, name, inputs, targets)).eval()
        built[name] = (TranslatorSynthesizer([generator]), generator)
    return built


def network_passes(name: str, generator: torch.nn.Module) -> int:
    """Network evaluations per synthesis: sampling steps for a diffusion model, else 1."""
    return TRANSLATORS[name].network_passes(generator.config) if name in TRANSLATORS else 1


def batch(size: int, slices: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random images, T2 given, and a full field of view."""
    images = torch.rand(slices, len(MODALITIES), size, size) * 2 - 1
    observed = torch.zeros(slices, len(MODALITIES), dtype=torch.bool)
    observed[:, MODALITIES.index("T2")] = True
    return images, observed, torch.ones(slices, size, size, dtype=torch.bool)


def macs_per_slice(synthesizer: Synthesizer, size: int) -> float:
    """Multiply-accumulates of one synthesis call per slice (FLOPs / 2, batch 2).

    The call runs under ``no_grad`` rather than its own ``inference_mode``, which the flop
    counter cannot follow through weight-normalised layers; the operations are the same.
    """
    call = type(synthesizer).__call__.__wrapped__  # undecorated by inference_mode
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        call(synthesizer, *batch(size, 2), 0.7)
    return counter.get_total_flops() / 2 / 2


def seconds(synthesizer: Synthesizer, inputs: tuple, device: str) -> float:
    """Seconds of one synthesis call (synchronised on a GPU)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    synthesizer(*inputs, 0.7)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timings(
    built: dict[str, tuple[Synthesizer, torch.nn.Module]], size: int, rounds: int, device: str
) -> dict[str, list[float]]:
    """Milliseconds per slice at batch 16, the methods interleaved round by round."""
    inputs = tuple(t.to(device) for t in batch(size, 16))
    warm_up = tuple(t[:1] for t in inputs)  # one slice: the first call's set-up costs
    for synthesizer, generator in built.values():
        generator.to(device)
        synthesizer.device = torch.device(device)
        seconds(synthesizer, warm_up, device)
    result: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(rounds):
        for name, (synthesizer, _) in built.items():
            result[name].append(1000 * seconds(synthesizer, inputs, device) / 16)
    return result


def parameters(generator: torch.nn.Module) -> tuple[int, int]:
    """Parameters counted once, and counted in every module that registers them."""
    unique = sum(p.numel() for p in generator.parameters())
    registered = sum(p.numel() for _, p in generator.named_parameters(remove_duplicate=False))
    return unique, registered


def spread(values: list[float]) -> str:
    """Median (min-max)."""
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    """Measure every method and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--no-timing",
        action="store_true",
        help="parameters and MACs only (a paper-size M2DN batch takes minutes per call)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = merged("paper.yaml")
    size = int(config["preprocessing"]["slice_size"][0])
    built = synthesizers(config)
    macs = {name: macs_per_slice(s, size) for name, (s, _) in built.items()}
    cpu = None if args.no_timing else timings(built, size, args.rounds, "cpu")
    gpu = (
        timings(built, size, args.rounds, "cuda")
        if torch.cuda.is_available() and not args.no_timing
        else None
    )
    timing = (
        "times not measured (--no-timing)"
        if cpu is None
        else f"{args.threads} CPU threads, {args.rounds} interleaved rounds"
    )
    header = (
        "| method | parameters | as registered | MACs per slice | CPU ms per slice "
        "| GPU ms per slice | steps | papers |"
    )
    lines = [
        "# Efficiency of the synthesis methods at the paper's size",
        "",
        f"Written by `python -m benchmarks.efficiency_benchmark` ({platform.machine()}, torch "
        f"{torch.__version__}, {timing}, "
        f"{'GPU ' + torch.cuda.get_device_name() if gpu else 'no GPU'}).",
        "",
        f"Each method at config/paper.yaml's size, random weights, called as the synthesis "
        f"stage calls it: T2 in, {size} x {size} slices, temperature 0.7 where it has one. "
        "MACs: FLOPs / 2 by torch.utils.flop_counter. Times per slice at batch 16: median "
        "(min-max) over the rounds. GAN baselines: their network for T2 -> iUS.",
        "",
        header,
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (_, generator) in built.items():
        unique, registered = parameters(generator)
        lines.append(
            f"| {name} | {unique / 1e6:.2f} M | {registered / 1e6:.2f} M | "
            f"{macs[name] / 1e9:.2f} G | {spread(cpu[name]) if cpu else '-'} | "
            f"{spread(gpu[name]) if gpu else '-'} | {network_passes(name, generator)} | "
            f"{CLAIMS.get(name, '-')} |"
        )
    ratio = PAPER_MMHVAE_GMACS / (macs["mmhvae"] / 1e9)
    lines += [
        "",
        f"The MMHVAE paper's {PAPER_MMHVAE_GMACS:g} G MACs are {ratio:.2f} times the "
        f"{macs['mmhvae'] / 1e9:.2f} G counted here for the same network (its parameter count "
        "matches): about the factor of 2 that counting FLOPs as MACs gives. Its 55 ms is "
        "a time on unstated hardware, most likely a GPU, not comparable with CPU times.",
        "",
    ]
    if "resvit" in built:
        unique, registered = parameters(built["resvit"][1])
        gmacs = macs["resvit"] / 1e9
        lines += [
            f"ResViT's {registered / 1e6:.1f} M parameters as registered (its ViT-B encoder "
            "is held by the generator and by both transformer blocks, as in its original code, "
            f"and counted in each) are the papers' 293 M; counted once, {unique / 1e6:.1f} M. "
            f"The papers' {PAPER_RESVIT_GMACS:g} G MACs are {PAPER_RESVIT_GMACS / gmacs:.2f} "
            f"times the {gmacs:.1f} G counted here.",
            "",
        ]
    (REPO / "benchmarks" / "efficiency.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
