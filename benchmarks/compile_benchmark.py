"""Does ``torch.compile`` pay for the generator's inference? Eager against compiled, measured.

For the demo's size (config/config.yaml) and the paper's (config/paper.yaml): the
generator's inference forward (``inference_mode``, no KL terms; T2 in, four out, batch
``--batch``) eager and through ``torch.compile`` (inductor, default mode), alternating for
``--rounds`` rounds after a warm-up; the compile time (the first compiled call) and the
largest difference of the outputs at temperature 0. A synthesis job synthesises a few
hundred batches, so compiling pays only when the time it saves over a job's batches
exceeds its compile time. Writes ``benchmarks/compile.md``::

    python -m benchmarks.compile_benchmark [--device cpu|cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from iusynth import jobs
from iusynth.core.config import merge_config
from iusynth.model.network import MMHVAE

REPO = Path(__file__).resolve().parents[1]


def model_for(overlay: str | None, device: str) -> MMHVAE:
    """The mmhvae generator of the default config, with an overlay (paper.yaml) merged in."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if overlay:
        config = merge_config(config, yaml.safe_load((REPO / "config" / overlay).read_text()))
    torch.manual_seed(0)
    return MMHVAE(jobs.model(config, "mmhvae")).to(device).eval()


def timed(function: Any, device: str) -> float:
    """Seconds of one call (synchronised on a GPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(overlay: str | None, batch: int, rounds: int, device: str) -> dict[str, Any]:
    """Eager and compiled ms per slice, compile seconds and max |d| at temperature 0."""
    model = model_for(overlay, device)
    size = model.config.image_size
    modalities = model.config.modalities
    images = torch.rand(batch, len(modalities), size, size, device=device) * 2 - 1
    observed = torch.zeros(batch, len(modalities), dtype=torch.bool, device=device)
    observed[:, modalities.index("T2")] = True
    compiled = torch.compile(model)

    def run(network: Any, temperature: float) -> torch.Tensor:
        with torch.inference_mode():
            torch.manual_seed(0)
            return network(images, observed, temperature=temperature, with_kl=False).images

    compile_s = timed(lambda: run(compiled, 0.7), device)
    run(model, 0.7)  # warm-up
    eager, fast = [], []
    for _ in range(rounds):
        eager.append(timed(lambda: run(model, 0.7), device) / batch * 1000)
        fast.append(timed(lambda: run(compiled, 0.7), device) / batch * 1000)
    difference = float((run(model, 0.0) - run(compiled, 0.0)).abs().max())
    return {
        "size": size,
        "eager_ms": statistics.median(eager),
        "compiled_ms": statistics.median(fast),
        "compile_s": compile_s,
        "difference": difference,
    }


def main() -> None:
    """Measure both sizes and write the page."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "compile.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        "# torch.compile of the generator's inference: measured",
        "",
        f"Written by `python -m benchmarks.compile_benchmark --device {args.device} --threads "
        f"{args.threads}` on {platform.machine()} (torch {torch.__version__}); batch "
        f"{args.batch}, T2 in, four out, temperature 0.7; medians of {args.rounds} "
        "alternating rounds after a warm-up.",
        "",
        "| size | eager ms/slice | compiled ms/slice | speed-up | compile s | batches to "
        "repay | max abs d at T 0 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, overlay in (("demo", None), ("paper", "paper.yaml")):
        result = measure(overlay, args.batch, args.rounds, args.device)
        saved_s = (result["eager_ms"] - result["compiled_ms"]) * args.batch / 1000
        repay = f"{result['compile_s'] / saved_s:.0f}" if saved_s > 0 else "never"
        lines.append(
            f"| {name} ({result['size']} x {result['size']}) | {result['eager_ms']:.1f} | "
            f"{result['compiled_ms']:.1f} | {result['eager_ms'] / result['compiled_ms']:.2f}x | "
            f"{result['compile_s']:.0f} | {repay} | {result['difference']:.1e} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "Compiling pays for a job only where it runs more batches than the batches to repay "
        "(compile seconds over the seconds saved per batch); each job compiles anew.",
        "",
    ]
    args.output.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
