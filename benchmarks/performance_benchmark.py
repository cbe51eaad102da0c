"""Measure inference speed side by side against an older commit; write benchmarks/performance.md.

This machine is shared and noisy, so every comparison is made in one run, interleaved:

- **Generator forward** at paper size (config/paper.yaml; batch 16, one input (T2), four
  outputs, temperature 0.7, ``--threads`` threads): the old commit's package (a
  ``git worktree`` given by ``--old``) and this one, each in its own process, alternating
  for ``--rounds`` rounds; the median ms per slice of each. The fast inference path of
  this commit (``inference_mode``, no KL terms, on the CPU in chunks) is checked against
  its reference path (the training forward on the same chunks) at temperature 0: max |d|;
  beside it, the reference's own float32 spread between the whole batch and those chunks.
- **nnU-Net prediction** of one real-size iUS volume (``--planes`` planes of 192 x 192)
  with a 5-fold ensemble: nnU-Net's own per-plane call (what the old commit ran for each
  plane) against the batched prediction of this commit, alternating. Tiles batched
  together round differently from one tile at a time, so a voxel may flip where
  nnU-Net's own tumour probability is a tie; the page gives how many voxels differ and
  how far from 0.5 the farthest of them is, beside both Dice. The ensemble's five members
  are one trained fold (a short training on synthetic planes): prediction time does not
  depend on the weights.

    python -m benchmarks.performance_benchmark --old ../wt_old [--rounds 3] [--planes 160]

``--keep-nnunet`` measures the generator alone and keeps the page's nnU-Net row (marked
as kept, with the commits it was measured on).

``--quick`` (the tests' check) measures tiny sizes once, with this commit as the "old" one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from iusynth.experiments.segmentation.planes import SubjectPlanes

REPO = Path(__file__).resolve().parents[1]

# Runs inside the package of either commit: both read config/paper.yaml's architecture
# into their ModelConfig (fields absent from an old ModelConfig are left out).
FORWARD_SNIPPET = """
import dataclasses, json, sys, time
from pathlib import Path
import torch, yaml
from iusynth.model.network import MMHVAE, ModelConfig
size, batch, repeats, threads, quick = json.loads(sys.argv[1])
root = Path(sys.argv[2])
torch.set_num_threads(threads)
architecture = yaml.safe_load(open(root / "config" / "paper.yaml"))["models"]["architecture"]
architecture["image_size"] = size
if quick:
    architecture.update(downsamplings=3, latent_levels=4, base_channels=4, max_channels=8)
try:  # a commit with the settings model builds the config as the workflow does
    from iusynth import jobs
    from iusynth.core.config import merge_config
    base = yaml.safe_load(open(root / "config" / "config.yaml"))
    sized = {"preprocessing": {"slice_size": [size, size]}}
    sized["models"] = {"architecture": architecture}
    model_config = jobs.model(merge_config(base, sized), "mmhvae")
except ImportError:  # an older one takes the architecture's fields it knows
    fields = {field.name for field in dataclasses.fields(ModelConfig)}
    model_config = ModelConfig(**{k: v for k, v in architecture.items() if k in fields})
torch.manual_seed(0)
model = MMHVAE(model_config).eval()
modalities = model.config.modalities
images = torch.rand(batch, len(modalities), size, size) * 2 - 1
observed = torch.zeros(batch, len(modalities), dtype=torch.bool)
observed[:, modalities.index("T2")] = True
kwargs = {"with_kl": False} if "with_kl" in MMHVAE.forward.__code__.co_varnames else {}
with torch.inference_mode():
    model(images, observed, temperature=0.7, **kwargs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(images, observed, temperature=0.7, **kwargs)
        times.append(time.perf_counter() - start)
print(json.dumps(min(times) / batch * 1000))
"""


def forward_ms(tree: Path, size: int, batch: int, repeats: int, threads: int, quick: bool) -> float:
    """Forward ms per slice of the generator of the package under ``tree/src``."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(tree / "src"),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    arguments = json.dumps([size, batch, repeats, threads, quick])
    result = subprocess.run(
        [sys.executable, "-c", FORWARD_SNIPPET, arguments, str(tree)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"forward benchmark failed in {tree}:\n{result.stderr[-3000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def fast_path_difference(size: int, quick: bool) -> tuple[float, float]:
    """Max |d| at temperature 0: the inference path against the training forward.

    The inference path runs the batch as the workflow does (on the CPU in chunks, see
    ``cpu_inference_chunk``); the training forward is run on the same chunks. Also
    returned: the training forward's own spread, whole batch against those chunks (the
    CPU's convolution kernels depend on the batch size).
    """
    import torch
    import yaml

    from iusynth import jobs
    from iusynth.core.config import merge_config
    from iusynth.model.network import MMHVAE, cpu_inference_chunk

    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    architecture = dict(paper["models"]["architecture"], image_size=size)
    if quick:
        architecture.update(downsamplings=3, latent_levels=4, base_channels=4, max_channels=8)
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    sized = {"preprocessing": {"slice_size": [size, size]}}
    sized["models"] = {"architecture": architecture}
    torch.manual_seed(0)
    model = MMHVAE(jobs.model(merge_config(base, sized), "mmhvae")).eval()
    modalities = model.config.modalities
    images = torch.rand(4, len(modalities), size, size) * 2 - 1
    observed = torch.zeros(4, len(modalities), dtype=torch.bool)
    observed[:, modalities.index("T2")] = True
    chunk = cpu_inference_chunk(size, size)
    with torch.no_grad():
        whole = model(images, observed, temperature=0.0).images
        chunked = torch.cat(
            [
                model(images[i : i + chunk], observed[i : i + chunk], temperature=0.0).images
                for i in range(0, len(images), chunk)
            ]
        )
    with torch.inference_mode():
        fast = model(images, observed, temperature=0.0, with_kl=False).images
    return float((chunked - fast).abs().max()), float((whole - chunked).abs().max())


def synthetic_planes(subject: str, n: int, size: int, rng: np.random.Generator) -> SubjectPlanes:
    """Bright discs (a tumour) on Rayleigh speckle: uint8 planes with their labels."""
    rows, columns = np.mgrid[:size, :size]
    images = np.empty((n, size, size), np.uint8)
    labels = np.zeros((n, size, size), np.uint8)
    for index in range(n):
        centre = rng.integers(size // 4, 3 * size // 4, 2)
        radius = rng.integers(size // 10, size // 5)
        disc = (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius**2
        speckle = rng.rayleigh(40, (size, size)) + 120 * disc
        images[index] = np.clip(speckle, 0, 255).astype(np.uint8)
        labels[index] = disc
    return SubjectPlanes(subject, images, labels, (0.5, 0.5))


def per_plane_prediction(predictor: Any, planes: SubjectPlanes) -> tuple[np.ndarray, np.ndarray]:
    """nnU-Net's own ``predict_single_npy_array``, one plane at a time (the old commit's way).

    Returns the masks and nnU-Net's tumour probability of every voxel.
    """
    from iusynth.experiments.segmentation.nnunet import _DUMMY_AXIS_FACTOR
    from iusynth.experiments.segmentation.planes import to_intensity

    fov = np.ones(planes.images.shape, bool)
    intensity = to_intensity(planes.images, fov)
    spacing = [_DUMMY_AXIS_FACTOR * max(planes.spacing), *planes.spacing]
    masks = np.zeros(planes.images.shape, np.uint8)
    probabilities = np.zeros(planes.images.shape, np.float32)
    for index, plane in enumerate(intensity):
        segmentation, probability = predictor.predict_single_npy_array(
            plane[None, None], {"spacing": spacing}, save_or_return_probabilities=True
        )
        masks[index] = np.asarray(segmentation)[0] > 0
        probabilities[index] = np.asarray(probability)[1, 0]
    return masks, probabilities


def mask_agreement(reference: np.ndarray, probability: np.ndarray, masks: np.ndarray) -> dict:
    """Voxels where ``masks`` differ from ``reference``, and the largest |p - 0.5| among them.

    ``probability`` is the reference's tumour probability: a voxel that flips by rounding
    alone sits at a tie, so that distance stays near float32 resolution.
    """
    differing = reference.astype(bool) != masks.astype(bool)
    margin = float(np.abs(probability[differing] - 0.5).max()) if differing.any() else 0.0
    return {"differing": int(differing.sum()), "voxels": int(differing.size), "margin": margin}


def nnunet_comparison(planes_count: int, size: int, rounds: int, threads: int) -> dict:
    """Per-plane vs batched ensemble prediction of one volume: seconds and mask agreement.

    The agreement is :func:`mask_agreement` of the last round.
    """
    import yaml

    from iusynth import jobs
    from iusynth.core.config import merge_config
    from iusynth.experiments.segmentation import nnunet, nnunet_prediction

    config = merge_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), {})
    settings = dataclasses.replace(
        jobs.segmenter(config),
        device="cpu",
        epochs=1,
        iterations_per_epoch=2,
        val_iterations_per_epoch=1,
        folds=2,
        threads=threads,
    )
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        segmenter = nnunet.NnunetSegmenter(settings)
        training = [synthetic_planes(f"case{i:02d}", 6, size, rng) for i in range(4)]
        segmenter.prepare(Path(folder), training)
        splits = Path(folder) / "splits.json"
        segmenter.write_splits(Path(folder), splits)
        segmenter.train(Path(folder), 0, splits)
        paths = segmenter.paths(Path(folder))
        volume = synthetic_planes("volume", planes_count, size, rng)
        predictor = nnunet_prediction.load_predictor(paths, nnunet.DATASET_ID, [0] * 5, settings)
        old_times, new_times = [], []
        with nnunet.nnunet_environment(paths, threads):
            for _ in range(rounds):
                start = time.perf_counter()
                old, probability = per_plane_prediction(predictor, volume)
                old_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                new = nnunet_prediction.predict_planes(predictor, volume)
                new_times.append(time.perf_counter() - start)
    truth = volume.labels > 0
    return {
        "old_s": statistics.median(old_times),
        "new_s": statistics.median(new_times),
        **mask_agreement(old, probability, new),
        "old_dice": nnunet_dice(old, truth),
        "new_dice": nnunet_dice(new, truth),
    }


def nnunet_dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary volumes."""
    prediction = prediction > 0
    total = prediction.sum() + truth.sum()
    return float(2 * (prediction & truth).sum() / total) if total else 1.0


def kept_nnunet_row(page: str) -> str:
    """The nnU-Net row of an earlier page, marked with the commits it was measured on."""
    header = re.search(r"old commit (\S+), new commit (\S+);", page)
    row = next((line for line in page.splitlines() if line.startswith("| (kept: ")), None)
    if row is not None:  # kept before: it names its commits already
        return row
    row = next((line for line in page.splitlines() if line.startswith("| nnU-Net")), None)
    if header is None or row is None:
        raise ValueError("--keep-nnunet: the page has no nnU-Net row to keep; measure it")
    old, new = header.group(1), header.group(2)
    return row.replace("| nnU-Net", f"| (kept: {old} vs {new}) nnU-Net", 1)


def commit_of(tree: Path) -> str:
    """The short commit hash checked out in ``tree`` (``?`` outside git)."""
    result = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "?"


def main() -> None:
    """Measure and write the Markdown page."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", type=Path, help="worktree of the commit to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--planes", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (tests)")
    parser.add_argument(
        "--keep-nnunet", action="store_true", help="keep the page's nnU-Net row, not re-measured"
    )
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "performance.md")
    args = parser.parse_args()
    old = REPO if args.quick else args.old
    if old is None:
        parser.error("--old is required (a git worktree of the commit before the work)")
    size, batch, repeats = (32, 2, 1) if args.quick else (192, 16, 3)
    rounds = 1 if args.quick else args.rounds
    old_ms, new_ms = [], []
    for _ in range(rounds):
        old_ms.append(forward_ms(old.resolve(), size, batch, repeats, args.threads, args.quick))
        new_ms.append(forward_ms(REPO, size, batch, repeats, args.threads, args.quick))
    difference, spread = fast_path_difference(size, args.quick)
    kept = args.output.read_text() if args.output.is_file() else ""
    if args.keep_nnunet:
        nnunet_row = kept_nnunet_row(kept)
    else:
        planes, plane_size = (4, 64) if args.quick else (args.planes, 192)
        segmentation = nnunet_comparison(planes, plane_size, rounds, args.threads)
        nnunet_row = (
            f"| nnU-Net 5-fold ensemble, one volume of {planes} planes {plane_size} x "
            f"{plane_size} (s) | {segmentation['old_s']:.1f} | {segmentation['new_s']:.1f} | "
            f"{segmentation['old_s'] / segmentation['new_s']:.2f}x | voxels differing: "
            f"{segmentation['differing']} of {segmentation['voxels']}, all within "
            f"{segmentation['margin']:.1e} of p = 0.5; Dice {segmentation['old_dice']:.4f} vs "
            f"{segmentation['new_dice']:.4f} |"
        )
    old_median, new_median = statistics.median(old_ms), statistics.median(new_ms)
    lines = [
        "# Inference speed: measured side by side",
        "",
        f"Written by `python -m benchmarks.performance_benchmark --old <worktree>` on "
        f"{platform.machine()}, {args.threads} CPU threads, no GPU; old commit "
        f"{commit_of(old)}, new commit {commit_of(REPO)}; {rounds} interleaved rounds, medians.",
        "",
        "| what | old | new | speed-up | check |",
        "| --- | --- | --- | --- | --- |",
        f"| generator forward, paper size, batch {batch}, T2 in, four out, T 0.7 "
        f"(ms/slice) | {old_median:.1f} | {new_median:.1f} | {old_median / new_median:.2f}x "
        f"| fast path vs reference at T 0: max abs d {difference:.1e} (the reference "
        f"itself, whole batch vs the fast path's chunks: {spread:.1e}) |",
        nnunet_row,
        "",
        "Per round (ms/slice, old / new): "
        + ", ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(old_ms, new_ms, strict=True)),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        from benchmarks.demo_benchmark import SECTIONS, write_section

        args.output.write_text(text)
        for start, end in SECTIONS:
            if start in kept:  # demo_benchmark's sections stay
                section = kept[kept.index(start) : kept.index(end) + len(end)]
                write_section(args.output, section, (start, end))


if __name__ == "__main__":
    main()
