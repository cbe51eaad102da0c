"""How much skill the demo's data allow: a supervised U-Net beside the workflow's methods.

The skill target (r 0.7 against the noise-free image) is only meaningful if the data can
give it. This script measures what a plain, supervised image-to-image network reaches on
the same training subjects, scored exactly as the workflow scores every method (per
slice Pearson r and PSNR of the 0..255 synthesis against the noise-free target inside
the field of view, mean over slices, then over validation subjects):

- the best **pointwise** intensity map (no spatial context; from ``demo_convergence``);
- a **supervised U-Net** (two 3x3 convolutions per level, group norm, four poolings,
  16-128 channels), trained with L1 on the acquired target inside the field of view,
  batches of random slices from every training volume, Adam; scored every ``--every``
  steps. Its best score over training is an optimistic ceiling (chosen on the validation
  subjects themselves).

Probes of what limits that ceiling (``--conditions``): the same U-Net trained on the
noise-free targets instead of the acquired ones (``clean-target``), fed the noise-free
inputs (``clean-input``), or both (``clean-both``); ``acquired`` is the ceiling itself.

Beside them, each method's skill from the workflow's ``results/tables/skill_synthesis.csv``
(when the run wrote it). Writes ``demo_ceiling.md``, ``demo_ceiling.csv`` and
``demo_ceiling.png`` (skill over steps). Outside the default run: about 10 minutes of CPU.

Run from the repository root after the demo workflow (or its slices and splits)::

    python -m benchmarks.demo_ceiling --results results --output benchmarks/demo_ceiling
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.demo_convergence import (
    DIRECTIONS,
    fold_data,
    load_config,
    markdown_table,
    pointwise_reference,
    stack_skill,
)
from iusynth.core.directions import Direction
from iusynth.core.modalities import MODALITIES
from iusynth.evaluation import metrics
from iusynth.preprocessing.slices import SliceStack

REPO = Path(__file__).resolve().parents[1]
CONDITIONS: dict[str, frozenset[str]] = {  # name -> which images are the noise-free ones
    "acquired": frozenset(),
    "clean-target": frozenset({"target"}),
    "clean-input": frozenset({"input"}),
    "clean-both": frozenset({"input", "target"}),
}


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each with group norm and SiLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.GroupNorm(4, out_channels),
        nn.SiLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.GroupNorm(4, out_channels),
        nn.SiLU(),
    )


class ReferenceUNet(nn.Module):
    """A plain U-Net, one input channel to one output channel in [-1, 1]."""

    def __init__(self, channels: int = 16, levels: int = 4) -> None:
        super().__init__()
        widths = [channels * 2 ** min(level, 3) for level in range(levels + 1)]
        self.down = nn.ModuleList(
            _block(1 if level == 0 else widths[level - 1], widths[level]) for level in range(levels)
        )
        self.bottom = _block(widths[levels - 1], widths[levels])
        self.up = nn.ModuleList(
            _block(widths[level + 1] + widths[level], widths[level])
            for level in reversed(range(levels))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 1 x H x W (H, W divisible by 2**levels) -> N x 1 x H x W."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.bottom(x)
        for block in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(torch.cat([x, skips.pop()], dim=1))
        return torch.tanh(self.head(x))


def _pairs(stacks: list[SliceStack], direction: Direction) -> list[SliceStack]:
    (source,) = direction.inputs
    return [s for s in stacks if {source, direction.target} <= s.acquired]


def _channel(stack: SliceStack, name: str, clean: bool = False) -> np.ndarray:
    images = stack.clean if clean else stack.images
    return np.asarray(images[:, stack.meta["modalities"].index(name)], np.float32)


def skill_of(
    model: ReferenceUNet, val: list[SliceStack], direction: Direction, clean_input: bool = False
) -> dict[str, float]:
    """Mean over validation subjects of the per-slice skill (the workflow's measure).

    Every slice is scored (the workflow's demo scores every 4th: ``evaluation.slice_step``).
    """
    (source,) = direction.inputs
    model.eval()
    per_subject = []
    with torch.inference_mode():
        for stack in val:
            fov = torch.from_numpy(np.array(stack.fov, bool))
            inputs = torch.from_numpy(_channel(stack, source, clean_input)).unsqueeze(1)
            outputs = torch.cat([model(inputs[i : i + 16]) for i in range(0, len(inputs), 16)])
            outputs = torch.where(fov, outputs[:, 0], -1.0)
            per_subject.append(stack_skill(stack, direction.target, metrics.to_display(outputs)))
    model.train()
    return {name: float(np.mean([s[name] for s in per_subject])) for name in metrics.SKILL}


def train_reference(
    train: list[SliceStack],
    val: list[SliceStack],
    direction: Direction,
    steps: int,
    every: int,
    batch: int,
    seed: int,
    condition: str = "acquired",
) -> list[dict[str, Any]]:
    """Train the supervised U-Net for one direction; its validation skill every ``every``.

    ``condition`` (a key of :data:`CONDITIONS`) says which images are the noise-free
    ones: the input (in training and validation) and/or the training target. Those are
    probes of what limits the skill, not data a method has.
    """
    (source,) = direction.inputs
    train, val = _pairs(train, direction), _pairs(val, direction)
    noise_free = CONDITIONS[condition]
    clean_input, clean_target = "input" in noise_free, "target" in noise_free
    inputs = torch.from_numpy(np.concatenate([_channel(s, source, clean_input) for s in train]))
    targets = torch.from_numpy(
        np.concatenate([_channel(s, direction.target, clean_target) for s in train])
    )
    fov = torch.from_numpy(np.concatenate([np.asarray(s.fov, bool) for s in train]))
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ReferenceUNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    rows, seconds = [], 0.0
    for step in range(1, steps + 1):
        start = time.perf_counter()
        chosen = torch.randint(len(inputs), (batch,), generator=generator)
        x, y, inside = inputs[chosen, None], targets[chosen, None], fov[chosen, None]
        if torch.rand((), generator=generator) < 0.5:  # the training data's row flip
            x, y, inside = x.flip(2), y.flip(2), inside.flip(2)
        loss = ((model(x) - y).abs() * inside).sum() / inside.sum().clamp(min=1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        seconds += time.perf_counter() - start
        if step % every == 0 or step == steps:
            row = {"condition": condition, "direction": direction.name, "step": step}
            row |= {"train_s": seconds, "train_l1": loss.item()}
            rows.append(row | skill_of(model, val, direction, clean_input))
            print(
                f"{condition} {direction.name} step {step} ({seconds:.0f} s): "
                f"r {rows[-1]['skill_r']:.3f}",
                flush=True,
            )
    return rows


def workflow_skill(results: Path) -> pd.DataFrame:
    """Each method's remind skill for the benchmark's directions, from the workflow's table."""
    table = results / "tables" / "skill_synthesis.csv"
    if not table.is_file():
        return pd.DataFrame()
    frame = pd.read_csv(table)
    chosen = frame[(frame["set"] == "remind") & frame["direction"].isin(d.name for d in DIRECTIONS)]
    return chosen[["direction", "label", "skill_r", "skill_psnr", "constant_psnr"]]


def plot(frame: pd.DataFrame, path: Path) -> None:
    """The supervised U-Net's validation skill over training steps, per condition and direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.6))
    for (condition, direction), group in frame.groupby(["condition", "direction"], sort=False):
        style = "-" if condition == "acquired" else ":"
        axis.plot(
            group["step"], group["skill_r"], style, marker=".", label=f"{direction}, {condition}"
        )
    axis.set_xlabel("optimiser step")
    axis.set_ylabel("skill r (validation)")
    axis.axhline(0.7, color="grey", linestyle=":", label="target 0.7")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def report(
    curves: pd.DataFrame,
    pointwise: pd.DataFrame,
    methods: pd.DataFrame,
    command: str,
    train_volumes: int,
    seconds: float,
) -> str:
    """The Markdown page."""
    summary = []
    for (condition, direction), group in curves.groupby(["condition", "direction"], sort=False):
        best = group.loc[group["skill_r"].idxmax()]
        last = group.iloc[-1]
        points = pointwise[pointwise["direction"] == direction]
        summary.append(
            {
                "condition": condition,
                "direction": direction,
                "pointwise_r": float(points["skill_r"].mean()),
                "unet_last_r": float(last["skill_r"]),
                "unet_best_r": float(best["skill_r"]),
                "best_at_step": int(best["step"]),
                "unet_last_psnr": float(last["skill_psnr"]),
                "constant_psnr": float(last["constant_psnr"]),
            }
        )
    lines = [
        "# How much skill the demo's data allow",
        "",
        f"Written by `{command}` on {platform.node()} ({torch.get_num_threads()} threads, "
        f"{torch.__version__}) in {seconds / 60:.0f} min. {train_volumes} training volumes, "
        "the validation subjects of the demo fold; skill (per-slice r and PSNR inside the "
        "field of view against the noise-free target, mean over slices, then subjects) as "
        "the workflow scores it.",
        "",
        "## Ceiling: a supervised U-Net, beside the pointwise map",
        "",
        *markdown_table(pd.DataFrame(summary)),
        "",
        "`unet_best_r` is chosen on the validation subjects: an optimistic ceiling. "
        "Conditions: `acquired`, the data every method trains on (the ceiling); "
        "`clean-target`, trained on the noise-free targets; `clean-input`, the noise-free "
        "inputs in training and validation; `clean-both`, both (probes of what limits the "
        "ceiling, not data a method has).",
        "",
        "![demo_ceiling.png](demo_ceiling.png)",
        "",
    ]
    if not methods.empty:
        lines += [
            "## The workflow's methods on the same subjects",
            "",
            "From `results/tables/skill_synthesis.csv` of the run these slices came from.",
            "",
            *markdown_table(methods.sort_values(["direction", "skill_r"]).reset_index(drop=True)),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    """Train the references, read the workflow's skill, write the page."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--config", type=Path, nargs="*", default=[], help="overlays")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS)
    )
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "demo_ceiling")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    train, val = fold_data(args.results, config, config["models"]["fold"], MODALITIES)
    start = time.perf_counter()
    pointwise = pd.DataFrame(pointwise_reference(train, val))
    curves = pd.DataFrame(
        [
            row
            for condition in args.conditions
            for direction in DIRECTIONS
            for row in train_reference(
                train,
                val,
                direction,
                args.steps,
                args.every,
                args.batch,
                seed=0,
                condition=condition,
            )
        ]
    )
    args.output.mkdir(parents=True, exist_ok=True)
    curves.to_csv(args.output / "demo_ceiling.csv", index=False, float_format="%.5g")
    plot(curves, args.output / "demo_ceiling.png")
    command = "python -m benchmarks.demo_ceiling " + " ".join(sys.argv[1:])
    text = report(
        curves,
        pointwise,
        workflow_skill(args.results),
        command,
        len(train),
        time.perf_counter() - start,
    )
    (args.output / "demo_ceiling.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
