"""Our inference beside the authors' MMHVAE code, quiet and on a busy machine.

Writes benchmarks/contention.md. Both networks hold the same weights: the paper-size
random state dict the authors' ``MHVAE2D`` (ReubenDo/MMHVAE) saved for the parity
reference (``../shared/reference/authors_mmhvae/paper.pt``), loaded into theirs from
the checkout ``--authors-code`` names and into ours by ``load_authors_checkpoint``. One
T2 slice in, four out, temperature 0.7, ms per slice, for every (threads, batch) cell:

- ``authors``: their forward under ``torch.no_grad()``, as their inference script runs
  it, in their default environment (no OpenMP wait policy set);
- ``authors, passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (what importing
  ``iusynth`` sets; :mod:`iusynth.core.threads`), to show what the policy alone does;
- ``translate``: ours through the public API, ``MMHVAE.translate`` under
  ``torch.inference_mode()``;
- ``stage``: ours through the synthesis stage's own call (``VAESynthesizer``).

Each measurement is a fresh process (the wait policy is read when torch loads); the
implementations alternate in a rotating order within each round, rounds repeat the
whole grid, and "busy" runs ``--busy`` processes spinning on the CPU, started before
and stopped after each state's grid. At temperature 0 the translate worker also checks
our output against our own unchunked forward (max |d|).

    python -m benchmarks.contention_benchmark --authors-code ../MMHVAE [--rounds 5]

``--quick`` (the tests' check) runs the small reference at batch 1 and 2, one round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "authors_mmhvae"
IMPLEMENTATIONS = ("authors", "authors, passive", "translate", "stage")
TEMPERATURE = 0.7


def worker(arguments: dict) -> dict:
    """One implementation's ms per slice (median of ``repeats`` timed calls after one)."""
    implementation = arguments["implementation"]
    if implementation in ("translate", "stage"):
        import iusynth  # noqa: F401  (its wait policy, before torch loads)
    import time

    import torch

    torch.set_num_threads(arguments["threads"])
    data = torch.load(arguments["reference"], weights_only=False)
    state = {key: value.float() for key, value in data["state_dict"].items()}
    t2 = data["inputs"]["t2"]
    t2 = t2.repeat((arguments["batch"] + t2.shape[0] - 1) // t2.shape[0], 1, 1, 1)
    t2 = t2[: arguments["batch"]].contiguous()
    call, check = _calls(implementation, arguments, data, state, t2)
    with torch.inference_mode():
        call()
        times = []
        for _ in range(arguments["repeats"]):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1000 / arguments["batch"])
    return {"ms": statistics.median(times), "difference": check() if check else None}


def _calls(implementation: str, arguments: dict, data: dict, state: dict, t2) -> tuple:
    """The timed call of an implementation, and the equality check of ours (or None)."""
    import torch

    if implementation.startswith("authors"):
        sys.path.insert(0, arguments["authors_code"])
        from network.mhvae import MHVAE2D

        theirs = MHVAE2D(**data["authors_constructor"])
        theirs.load_state_dict(state)
        theirs.eval()
        return (lambda: theirs({"t2": t2}, TEMPERATURE)), None
    from iusynth.core.modalities import MODALITIES
    from iusynth.model import network
    from iusynth.model.authors import load_authors_checkpoint
    from iusynth.synthesis.synthesizers import VAESynthesizer

    model = load_authors_checkpoint(state)

    def difference() -> float:  # the inference path against one unchunked forward, at T 0
        with torch.inference_mode():
            fast = model.translate({"T2": t2}, 0.0)
            pixels, network.CPU_INFERENCE_PIXELS = network.CPU_INFERENCE_PIXELS, 10**12
            try:
                whole = model.translate({"T2": t2}, 0.0)
            finally:
                network.CPU_INFERENCE_PIXELS = pixels
        return max(float((fast[m] - whole[m]).abs().max()) for m in fast)

    if implementation == "translate":
        return (lambda: model.translate({"T2": t2}, TEMPERATURE)), difference
    synthesizer = VAESynthesizer(model)
    images = torch.full((t2.shape[0], len(MODALITIES), *t2.shape[2:]), -1.0)
    images[:, MODALITIES.index("T2")] = t2[:, 0]
    observed = torch.tensor([[m == "T2" for m in MODALITIES]] * t2.shape[0])
    fov = torch.ones(t2.shape[0], *t2.shape[2:], dtype=torch.bool)
    return (lambda: synthesizer(images, observed, fov, TEMPERATURE)), None


def measure(implementation: str, threads: int, batch: int, options: argparse.Namespace) -> dict:
    """Run one worker process; its result."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO / "src")}
    environment.pop("OMP_WAIT_POLICY", None)  # the authors' default environment
    if implementation == "authors, passive":
        environment["OMP_WAIT_POLICY"] = "PASSIVE"
    arguments = {
        "implementation": implementation,
        "threads": threads,
        "batch": batch,
        "repeats": options.repeats,
        "reference": str(options.reference),
        "authors_code": str(options.authors_code),
    }
    command = [sys.executable, "-m", "benchmarks.contention_benchmark"]
    result = subprocess.run(
        [*command, "--worker", json.dumps(arguments)],
        cwd=REPO, env=environment, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{implementation} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextmanager
def busy_processes(count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` processes spinning on the CPU while the block runs; none left after it."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield spinners
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def spread(values: list[float]) -> str:
    """Median and range of a figure over rounds."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def run_grid(options: argparse.Namespace, implementations: tuple[str, ...]) -> dict:
    """The results per (state, threads, batch) and implementation, one per round."""
    results: dict = {}
    for round_index in range(options.rounds):
        for state in options.states:
            with busy_processes(options.busy if state == "busy" else 0):
                for threads in options.threads:
                    for batch in options.batches:
                        shift = round_index % len(implementations)
                        order = implementations[shift:] + implementations[:shift]
                        for implementation in order:
                            result = measure(implementation, threads, batch, options)
                            key = (state, threads, batch)
                            results.setdefault(key, {}).setdefault(implementation, []).append(
                                result
                            )
                            print(state, threads, batch, implementation, result, flush=True)
    return results


def page(results: dict, options: argparse.Namespace, implementations: tuple[str, ...]) -> str:
    """The Markdown page of a grid's results."""
    header = " | ".join(implementations)
    lines = [
        "# Inference beside the authors' code, quiet and on a busy machine",
        "",
        f"`python -m benchmarks.contention_benchmark` on {platform.processor() or 'a CPU'}, "
        f"{os.cpu_count()} cores; {options.rounds} rounds, {options.repeats} timed calls each; "
        f"busy = {options.busy} processes spinning. ms per slice, median (range over rounds); "
        "ratio = authors / ours through `translate`, per round (median, range).",
        "",
        f"| state | threads | batch | {header} | authors / translate | max abs d at T 0 |",
        "|---" * (len(implementations) + 5) + "|",
    ]
    for (state, threads, batch), cell in results.items():
        figures = [spread([r["ms"] for r in cell[name]]) for name in implementations]
        ratios = "-"
        if "authors" in cell:
            per_round = [
                a["ms"] / t["ms"] for a, t in zip(cell["authors"], cell["translate"], strict=True)
            ]
            ratios = (
                f"{statistics.median(per_round):.2f}x ({min(per_round):.2f}-{max(per_round):.2f})"
            )
        checked = [r["difference"] for r in cell["translate"] if r["difference"] is not None]
        difference = f"{max(checked):.1e}" if checked else "-"
        lines.append(
            f"| {state} | {threads} | {batch} | {' | '.join(figures)} | {ratios} | {difference} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure the grid and write the page (or run one worker)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--authors-code", type=Path, help="a checkout of ReubenDo/MMHVAE")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--states", nargs="+", default=["quiet", "busy"])
    parser.add_argument("--busy", type=int, default=2, help="spinning processes when busy")
    parser.add_argument("--quick", action="store_true", help="small reference, one round")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "contention.md")
    options = parser.parse_args()
    if options.worker:
        print(json.dumps(worker(json.loads(options.worker))))
        return
    options.reference = REFERENCE / ("small.pt" if options.quick else "paper.pt")
    if not options.reference.is_file():
        parser.exit(0, f"skipped: {options.reference} is absent (the parity reference)\n")
    if options.quick:
        options.rounds, options.repeats, options.threads, options.batches = 1, 1, [1], [1, 2]
    implementations = IMPLEMENTATIONS
    if options.authors_code is None or not (options.authors_code / "network").is_dir():
        print(f"the authors' code is absent ({options.authors_code}): ours alone")
        implementations = ("translate", "stage")
    results = run_grid(options, implementations)
    text = page(results, options, implementations)
    print(text)
    if not options.quick:
        options.output.write_text(text)


if __name__ == "__main__":
    main()
