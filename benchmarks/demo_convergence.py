"""How the demo's models learn when trained far longer: skill, PSNR, SSIM, LPIPS over epochs.

Reads the slice stacks and splits of a finished (or partly run) demo workflow, trains
the chosen variants of the config on the train/validation fold for ``--epochs``, and
every ``--every`` epochs scores them on the validation subjects, per direction and
temperature: skill (Pearson r and PSNR of the synthesis against the noise-free target
inside the field of view; temperature 0 only, as in the workflow), and PSNR, SSIM and
LPIPS against the acquired target. Writes a CSV of every score, a figure per measure, and
``demo_convergence.md`` with the command, the timings and the last scores, beside the
skill of the best pointwise intensity map (no spatial context). The demo's schedule is
stretched to ``--epochs`` (every phase at the same fraction of training). Outside the
default run: an hour or more of CPU.

Run from the repository root, after ``snakemake --cores all results/splits/splits.json``
(and the slice stacks) on the demo config::

    python -m benchmarks.demo_convergence --results results --epochs 60 --every 10 \
        --variants mmhvae mopoe mmhvae_nogan --output benchmarks/demo_convergence
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from iusynth import jobs
from iusynth.core.config import merge_config
from iusynth.core.directions import Direction
from iusynth.evaluation import metrics
from iusynth.evaluation.perceptual import LPIPS, load_lpips
from iusynth.preprocessing.slices import SliceStack
from iusynth.synthesis.synthesizers import VAESynthesizer, synthesise_stack
from iusynth.training.mmhvae import Trainer, fold_stacks

REPO = Path(__file__).resolve().parents[1]
DIRECTIONS = (Direction(("T2",), "US"), Direction(("US",), "T2"))
TEMPERATURES = (0.0, 0.5, 0.7, 1.0)


def load_config(overlays: list[Path]) -> dict[str, Any]:
    """The default config with the overlays merged in."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return merge_config(config, *(yaml.safe_load(Path(p).read_text()) for p in overlays))


def fold_data(
    results: Path, config: dict[str, Any], fold: int, modalities: tuple[str, ...]
) -> tuple[list[SliceStack], list[SliceStack]]:
    """A run's training and validation slice stacks of one fold of the paired cohort."""
    splits = json.loads((results / "splits" / "splits.json").read_text())
    slices = results / "slices" / config["preprocessing"]["trainval_cohort"]
    return fold_stacks(splits, fold, slices, modalities, complete_only=False)


def stack_skill(
    stack: SliceStack, target: str, output: np.ndarray, keep: np.ndarray | None = None
) -> dict[str, float]:
    """Skill of a 0..255 synthesis of ``target`` against the stack's noise-free one.

    The workflow's measure per slice, averaged over the slices kept (by default those whose
    noise-free target is evaluable).
    """
    channel = stack.meta["modalities"].index(target)
    clean = metrics.to_display(np.asarray(stack.clean[:, channel], np.float32))
    if keep is None:
        keep = metrics.evaluable_slices(clean)
    fov = np.asarray(stack.fov, bool)
    values = metrics.skill(clean[keep], output[keep], fov[keep])
    return {name: float(np.nanmean(v)) for name, v in values.items()}


def score(
    model: torch.nn.Module,
    stacks: list[SliceStack],
    lpips: LPIPS | None,
    seed: int,
) -> list[dict[str, Any]]:
    """Per validation subject, direction and temperature: the mean of each measure."""
    synthesizer = VAESynthesizer(model.eval())
    rows = []
    for stack in stacks:
        names = stack.meta["modalities"]
        positions = np.arange(stack.images.shape[0])
        for direction in DIRECTIONS:
            if not {*direction.inputs, direction.target} <= stack.acquired:
                continue
            channel = names.index(direction.target)
            target = metrics.to_display(np.asarray(stack.images[:, channel], np.float32))
            keep = metrics.evaluable_slices(target)
            for temperature in TEMPERATURES:
                torch.manual_seed(seed)
                output = synthesise_stack(
                    synthesizer, stack, direction.inputs, temperature, 1, positions, 16
                )[direction.target][0]
                values = metrics.slice_metrics(target[keep], output[keep], lpips)
                row = {"subject": stack.meta["subject"], "direction": direction.name}
                row["temperature"] = temperature
                row |= {name: float(np.nanmean(v)) for name, v in values.items()}
                if temperature == 0 and stack.clean is not None:
                    row |= stack_skill(stack, direction.target, output, keep)
                rows.append(row)
    model.train()
    return rows


SCHEDULE_EPOCHS = (
    "kl_warmup_epochs",
    "optimiser_reset_epoch",
    "discriminator_start_epoch",
    "gan_start_epoch",
)


def stretched_schedule(training: Any, epochs: int) -> dict[str, Any]:
    """The demo's schedule stretched to ``epochs``: every phase at the same fraction."""
    factor = epochs / training.epochs
    schedule: dict[str, Any] = {"epochs": epochs, "checkpoint_every": epochs}
    for name in SCHEDULE_EPOCHS:
        value = getattr(training, name)
        schedule[name] = None if value is None else max(1, round(value * factor))
    return schedule


def pointwise_reference(train: list[SliceStack], val: list[SliceStack]) -> list[dict[str, Any]]:
    """Skill of the best pointwise map: no spatial context, the floor a network must beat.

    Per direction (one input), the mean noise-free target of each of 256 input intensities
    over the training subjects' fields of view, applied to the validation subjects.
    """
    rows = []
    for direction in DIRECTIONS:
        (source,) = direction.inputs
        sums, counts = np.zeros(256), np.zeros(256)
        for stack in train:
            if stack.clean is None or not {source, direction.target} <= stack.acquired:
                continue
            names = stack.meta["modalities"]
            fov = np.asarray(stack.fov, bool)
            x = metrics.to_display(np.asarray(stack.images[:, names.index(source)], np.float32))
            y = metrics.to_display(np.asarray(stack.clean[:, names.index(direction.target)]))
            np.add.at(sums, x[fov], y[fov].astype(np.float64))
            np.add.at(counts, x[fov], 1)
        table = np.where(counts > 0, sums / np.maximum(counts, 1), sums.sum() / counts.sum())
        for stack in val:
            if stack.clean is None or not {source, direction.target} <= stack.acquired:
                continue
            names = stack.meta["modalities"]
            x = metrics.to_display(np.asarray(stack.images[:, names.index(source)], np.float32))
            output = np.clip(np.floor(table[x]), 0, 255).astype(np.uint8)
            row = {"subject": stack.meta["subject"], "direction": direction.name}
            rows.append(row | stack_skill(stack, direction.target, output))
    return rows


def train_and_score(
    config: dict[str, Any],
    variant: str,
    data: tuple[list[SliceStack], list[SliceStack]],
    epochs: int,
    every: int,
    lpips: LPIPS | None,
) -> list[dict[str, Any]]:
    """Train one variant for ``epochs``; its scores every ``every`` epochs (and at 0)."""
    settings = jobs.variant(config, variant, config["models"]["fold"])
    training = settings.training
    training = type(training)(**{**training.__dict__, **stretched_schedule(training, epochs)})
    trainer = Trainer(settings.model, training, *data)
    rows, seconds = [], 0.0
    for epoch in range(epochs + 1):
        if epoch % every == 0 or epoch == epochs:
            for row in score(trainer.model, data[1], lpips, training.seed):
                rows.append({"variant": variant, "epoch": epoch, "train_s": seconds, **row})
            last = pd.DataFrame([r for r in rows if r["epoch"] == epoch])
            zero = last[last["temperature"] == 0]
            print(
                f"{variant} epoch {epoch} ({seconds:.0f} s): skill r "
                + ", ".join(f"{d} {g['skill_r'].mean():.3f}" for d, g in zero.groupby("direction")),
                flush=True,
            )
        if epoch < epochs:
            start = time.perf_counter()
            trainer.run_epoch()
            seconds += time.perf_counter() - start
    return rows


def plot(frame: pd.DataFrame, folder: Path) -> list[str]:
    """One figure per measure: value over epochs per variant and direction (temperature 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for measure in ("skill_r", "psnr", "ssim", "lpips"):
        figure, axes = plt.subplots(1, len(DIRECTIONS), figsize=(10, 3.5), squeeze=False)
        for axis, direction in zip(axes[0], DIRECTIONS, strict=True):
            chosen = frame[(frame["direction"] == direction.name)]
            for (variant, temperature), group in chosen.groupby(["variant", "temperature"]):
                if measure == "skill_r" and temperature != 0:
                    continue
                means = group.groupby("epoch")[measure].mean()
                style = "-" if temperature == 0 else ":"
                label = f"{variant} T={temperature:g}"
                axis.plot(means.index, means.values, style, label=label)
            axis.set_title(f"{direction.label}: {measure}")
            axis.set_xlabel("epoch")
        axes[0][-1].legend(fontsize=6)
        figure.tight_layout()
        name = f"demo_convergence_{measure}.png"
        figure.savefig(folder / name, dpi=90)
        plt.close(figure)
        names.append(name)
    return names


def markdown_table(frame: pd.DataFrame) -> list[str]:
    """A data frame as Markdown table lines (floats with 3 decimals)."""

    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return lines


def report(
    frame: pd.DataFrame,
    reference: pd.DataFrame,
    figures: list[str],
    command: str,
    seconds: float,
) -> str:
    """The Markdown page: command, machine, last scores per variant, figures."""
    last = frame[frame["epoch"] == frame.groupby("variant")["epoch"].transform("max")]
    table = (
        last.groupby(["variant", "direction", "temperature"])[
            ["skill_r", "skill_psnr", "psnr", "ssim", "lpips"]
        ]
        .mean()
        .reset_index()
    )
    lines = [
        "# The demo's models trained far longer",
        "",
        f"Written by `{command}` on {platform.node()} ({torch.get_num_threads()} threads, "
        f"{torch.__version__}) in {seconds / 60:.0f} min. Validation subjects of the demo "
        "fold; skill (r, PSNR) against the noise-free target at temperature 0, PSNR / SSIM "
        "/ LPIPS against the acquired target (SSIM and LPIPS as fractions).",
        "",
        "## Last epoch",
        "",
        *markdown_table(table),
        "",
        "## The pointwise reference",
        "",
        "Skill of the best pointwise map from the input's intensity to the noise-free "
        "target (fitted on the training subjects, no spatial context): what a network that "
        "learned nothing of the anatomy's shape would reach.",
        "",
        *markdown_table(
            reference.groupby("direction")[["skill_r", "skill_psnr", "constant_psnr"]]
            .mean()
            .reset_index()
        ),
        "",
        "## Over training",
        "",
        *[f"![{name}]({name})" for name in figures],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Train, score and write the page."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--config", type=Path, nargs="*", default=[], help="overlays")
    parser.add_argument("--variants", nargs="+", default=["mmhvae", "mopoe"])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "demo_convergence")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    weights = Path(config["evaluation"]["lpips_weights"] or "")
    if config["evaluation"]["lpips_weights"] and not weights.is_absolute():
        weights = args.results.resolve().parent / weights  # the workflow's directory
    lpips = load_lpips(weights) if weights.is_dir() else None
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    reference = pd.DataFrame()
    for variant in args.variants:
        settings = jobs.variant(config, variant, config["models"]["fold"])
        data = fold_data(args.results, config, settings.fold, settings.model.modalities)
        if reference.empty:
            reference = pd.DataFrame(pointwise_reference(*data))
            print(reference.groupby("direction")["skill_r"].mean().to_string(), flush=True)
        rows += train_and_score(config, variant, data, args.epochs, args.every, lpips)
    frame = pd.DataFrame(rows)
    args.output.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.output / "demo_convergence.csv", index=False, float_format="%.5g")
    figures = plot(frame, args.output)
    command = "python -m benchmarks.demo_convergence " + " ".join(sys.argv[1:])
    text = report(frame, reference, figures, command, time.perf_counter() - start)
    (args.output / "demo_convergence.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
