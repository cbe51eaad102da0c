"""Training of MMHVAE and its variants: subsets, losses, schedule, checkpoints, resume.

One epoch takes, from every training volume in a shuffled order, one batch of contiguous
axial slices (randomly flipped left-right). For each batch the input subsets are
enumerated (or one is drawn) from the modalities the volume has:

- ``all``: every available modality, nothing else;
- ``mixture``: all available, iUS alone, and every non-empty subset of the available MR
  sequences (MMHVAE's mixture of products of experts; for MHVAE's iUS + T2: both, iUS
  alone, T2 alone);
- ``unimodal``: all available and each single modality (MVAE's sub-sampled terms).

Loss per subset: L1 over the present modalities (missing ones are neither input nor
target) + w_kl * KL (summed over levels, per pixel) with w_kl ramped linearly over the
first epochs + w_gan * LSGAN on the modalities that were not input, from a given epoch.
Adamax with a cosine schedule for the generator, Adam for the discriminators.

A checkpoint (weights, optimisers, schedule, random states, loss history) is written
atomically every N epochs; a killed run resumes from it and ends with the same weights
as an uninterrupted one.
"""

from __future__ import annotations

import csv
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from iusynth.fileio import atomic_path
from iusynth.model.discriminator import (
    PatchDiscriminator,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from iusynth.model.network import MMHVAE, ModelConfig
from iusynth.slices import SliceStack, load_slices

log = logging.getLogger(__name__)

SUBSET_MODES = ("all", "mixture", "unimodal")
LOSS_COLUMNS = (
    "epoch",
    "loss",
    "l1",
    "kl",
    "kl_weight",
    "gan_g",
    "gan_d",
    "lr",
    "val_l1",
    "seconds",
)


@dataclass(frozen=True)
class TrainingConfig:
    """The optimisation of one model (see the module docstring)."""

    epochs: int = 1000
    batch_slices: int = 16
    learning_rate: float = 2e-3
    final_learning_rate: float = 1e-4
    discriminator_learning_rate: float = 2e-4
    kl_weight: float = 1e-3
    kl_warmup_epochs: int = 50
    gan_weight: float = 0.05
    gan_start_epoch: int | None = 800
    subsets: str = "mixture"
    subset_sampling: str = "enumerate"
    complete_pairs: bool = False  # train only on volumes with every modality of the model
    temperature: float = 1.0
    checkpoint_every: int = 10
    seed: int = 0
    device: str = "auto"
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.subsets not in SUBSET_MODES:
            raise ValueError(
                f"training: subsets must be one of {SUBSET_MODES}, not {self.subsets!r}"
            )
        if self.subset_sampling not in ("enumerate", "random"):
            raise ValueError("training: subset_sampling must be 'enumerate' or 'random'")

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> TrainingConfig:
        """Build from a config section (keys as the field names)."""
        unknown = set(section) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"training: unknown keys {sorted(unknown)}")
        return cls(**section)

    def kl_weight_at(self, epoch: int) -> float:
        """The KL weight of an epoch (0-based): a linear ramp, then constant."""
        if self.kl_warmup_epochs <= 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, (epoch + 1) / self.kl_warmup_epochs)

    def gan_on(self, epoch: int) -> bool:
        """Whether the adversarial terms are active at an epoch (0-based)."""
        return self.gan_start_epoch is not None and epoch >= self.gan_start_epoch


def input_subsets(
    available: tuple[int, ...], mode: str, modalities: tuple[str, ...]
) -> list[tuple[int, ...]]:
    """The input subsets (modality indices) trained for a volume with ``available`` modalities."""
    subsets = [tuple(available)]
    if mode == "mixture":
        us = modalities.index("US") if "US" in modalities else None
        if us is not None and us in available:
            subsets.append((us,))
        mr = [index for index in available if index != us]
        for size in range(1, len(mr) + 1):
            subsets += list(itertools.combinations(mr, size))
    elif mode == "unimodal":
        subsets += [(index,) for index in available]
    unique = []
    for subset in subsets:
        if subset and subset not in unique:
            unique.append(subset)
    return unique


def select_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU; or the device named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Batch:
    """Slices of one volume: images (B x M x H x W), fov (B x H x W), present (M,)."""

    images: torch.Tensor
    fov: torch.Tensor
    present: torch.Tensor


class SliceSampler:
    """Batches of contiguous slices from the training volumes, seeded."""

    def __init__(
        self, stacks: list[SliceStack], modalities: tuple[str, ...], batch_slices: int
    ) -> None:
        if not stacks:
            raise ValueError("no training volume: the split's train list is empty")
        self.stacks = stacks
        self.batch_slices = batch_slices
        self.channels = [
            [stack.meta["modalities"].index(m) for m in modalities] for stack in stacks
        ]

    def batch(
        self, index: int, rng: np.random.Generator, flip: bool = True, start: int | None = None
    ) -> Batch:
        """One batch from volume ``index`` (random start and flip unless given)."""
        stack = self.stacks[index]
        count = stack.images.shape[0]
        size = min(self.batch_slices, count)
        if start is None:
            start = int(rng.integers(0, count - size + 1))
        channels = self.channels[index]
        images = np.asarray(stack.images[start : start + size][:, channels], dtype=np.float32)
        fov = np.array(stack.fov[start : start + size], dtype=bool)
        if flip and rng.random() < 0.5:
            images, fov = images[..., ::-1], fov[..., ::-1]
        present = stack.present[channels]
        return Batch(
            torch.from_numpy(np.ascontiguousarray(images)),
            torch.from_numpy(np.ascontiguousarray(fov)),
            torch.from_numpy(present.copy()),
        )


def reconstruction_l1(
    outputs: torch.Tensor, targets: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """Mean absolute error over the present modalities (each modality weighs the same)."""
    per_modality = (outputs - targets).abs().flatten(2).mean(dim=2).mean(dim=0)
    weights = present.to(per_modality.dtype)
    return (per_modality * weights).sum() / weights.sum().clamp(min=1.0)


@dataclass
class StepLosses:
    """Loss terms of one batch, averaged over its subsets."""

    loss: float
    l1: float
    kl: float
    gan_g: float
    gan_d: float


class Trainer:
    """Owns the model, discriminators, optimisers and data; trains, checkpoints, resumes."""

    def __init__(
        self,
        model_config: ModelConfig,
        training: TrainingConfig,
        train_stacks: list[SliceStack],
        val_stacks: list[SliceStack],
    ) -> None:
        self.model_config = model_config
        self.training = training
        self.device = select_device(training.device)
        torch.manual_seed(training.seed)
        self.rng = np.random.default_rng(training.seed)
        self.python_rng = random.Random(training.seed)
        self.model = MMHVAE(model_config).to(self.device)
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(
                model_config.discriminator_channels, model_config.discriminator_layers
            )
            for _ in model_config.modalities
        ).to(self.device)
        self.optimiser = torch.optim.Adamax(self.model.parameters(), lr=training.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimiser, T_max=max(training.epochs, 1), eta_min=training.final_learning_rate
        )
        self.d_optimiser = torch.optim.Adam(
            self.discriminators.parameters(),
            lr=training.discriminator_learning_rate,
            betas=(0.5, 0.999),
        )
        self.train = SliceSampler(train_stacks, model_config.modalities, training.batch_slices)
        self.val = (
            SliceSampler(val_stacks, model_config.modalities, training.batch_slices)
            if val_stacks
            else None
        )
        self.epoch = 0
        self.history: list[dict[str, Any]] = []

    def _autocast(self) -> Any:
        """bf16 autocast when asked for, else a no-op context."""
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.training.bf16
        )

    def _subsets(self, present: torch.Tensor) -> list[tuple[int, ...]]:
        available = tuple(int(i) for i in torch.nonzero(present).flatten())
        subsets = input_subsets(available, self.training.subsets, self.model_config.modalities)
        if self.training.subset_sampling == "random":
            return [subsets[self.python_rng.randrange(len(subsets))]]
        return subsets

    def step(self, batch: Batch, epoch: int) -> StepLosses:
        """One optimisation step on one batch (all its subsets)."""
        training = self.training
        images = batch.images.to(self.device)
        fov = batch.fov.to(self.device)
        present = batch.present.to(self.device)
        n_batch, n_mod = images.shape[:2]
        pixels = images.shape[2] * images.shape[3]
        gan = training.gan_on(epoch)
        kl_weight = training.kl_weight_at(epoch)
        subsets = self._subsets(batch.present)
        self.model.train()
        self.optimiser.zero_grad(set_to_none=True)
        totals = np.zeros(4)
        fakes = []
        for subset in subsets:
            observed = torch.zeros(n_batch, n_mod, dtype=torch.bool, device=self.device)
            observed[:, list(subset)] = True
            with self._autocast():
                synthesis = self.model(images, observed, fov, training.temperature)
                outputs = synthesis.images.float()
                l1 = reconstruction_l1(outputs, images, present)
                kl = sum(level.mean() for level in synthesis.kl) / pixels
                loss = l1 + kl_weight * kl
                gan_g = torch.zeros((), device=self.device)
                if gan:
                    targets = [m for m in range(n_mod) if bool(present[m]) and m not in subset]
                    for m in targets:
                        gan_g = gan_g + lsgan_generator_loss(
                            self.discriminators[m](outputs[:, m : m + 1])
                        )
                        fakes.append((m, outputs[:, m : m + 1].detach()))
                    loss = loss + training.gan_weight * gan_g / max(len(targets), 1)
            (loss / len(subsets)).backward()
            totals += [
                float(loss.detach()),
                float(l1.detach()),
                float(kl.detach()),
                float(gan_g.detach()),
            ]
        self.optimiser.step()
        gan_d = 0.0
        if fakes:
            self.d_optimiser.zero_grad(set_to_none=True)
            d_loss = torch.zeros((), device=self.device)
            for m, fake in fakes:
                with self._autocast():
                    real = self.discriminators[m](images[:, m : m + 1])
                    d_loss = d_loss + lsgan_discriminator_loss(real, self.discriminators[m](fake))
            (d_loss / len(fakes)).backward()
            self.d_optimiser.step()
            gan_d = float(d_loss.detach()) / len(fakes)
        totals /= len(subsets)
        return StepLosses(*totals[:3], gan_g=float(totals[3]), gan_d=gan_d)

    @torch.no_grad()
    def validate(self) -> float:
        """L1 with every available modality in, temperature 0, on central validation batches."""
        if self.val is None:
            return float("nan")
        self.model.eval()
        errors = []
        rng = np.random.default_rng(0)
        for index, stack in enumerate(self.val.stacks):
            count = stack.images.shape[0]
            start = max(0, (count - self.val.batch_slices) // 2)
            batch = self.val.batch(index, rng, flip=False, start=start)
            observed = batch.present.unsqueeze(0).expand(batch.images.shape[0], -1).to(self.device)
            with self._autocast():
                outputs = self.model(
                    batch.images.to(self.device), observed, batch.fov.to(self.device), 0.0
                ).images.float()
            errors.append(
                float(
                    reconstruction_l1(
                        outputs, batch.images.to(self.device), batch.present.to(self.device)
                    )
                )
            )
        return float(np.mean(errors))

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch; return its row of the loss history."""
        start = time.perf_counter()
        epoch = self.epoch
        order = self.rng.permutation(len(self.train.stacks))
        steps = [self.step(self.train.batch(int(i), self.rng), epoch) for i in order]
        self.scheduler.step()
        row = {
            "epoch": epoch + 1,
            "loss": float(np.mean([s.loss for s in steps])),
            "l1": float(np.mean([s.l1 for s in steps])),
            "kl": float(np.mean([s.kl for s in steps])),
            "kl_weight": self.training.kl_weight_at(epoch),
            "gan_g": float(np.mean([s.gan_g for s in steps])),
            "gan_d": float(np.mean([s.gan_d for s in steps])),
            "lr": self.optimiser.param_groups[0]["lr"],
            "val_l1": float("nan"),
            "seconds": 0.0,
        }
        self.epoch += 1
        if self.checkpoint_due():
            row["val_l1"] = self.validate()
        row["seconds"] = time.perf_counter() - start
        self.history.append(row)
        return row

    columns = LOSS_COLUMNS

    @property
    def epochs(self) -> int:
        """The number of epochs to train."""
        return self.training.epochs

    def checkpoint_due(self) -> bool:
        """Whether the epoch just finished ends with a checkpoint (and a validation)."""
        every = self.training.checkpoint_every
        return self.epoch % every == 0 or self.epoch == self.training.epochs

    def final_state(self) -> dict[str, Any]:
        """What ``model.pt`` holds: the configs and the generator's weights."""
        return {
            "model_config": asdict(self.model_config),
            "training": asdict(self.training),
            "epochs": self.epoch,
            "model": self.model.state_dict(),
        }

    def state(self) -> dict[str, Any]:
        """Everything needed to resume exactly."""
        return {
            "model_config": asdict(self.model_config),
            "training": asdict(self.training),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "discriminators": self.discriminators.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "d_optimiser": self.d_optimiser.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy_rng": self.rng.bit_generator.state,
            "python_rng": self.python_rng.getstate(),
            "history": self.history,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state` (same configs)."""
        if state["model_config"] != asdict(self.model_config) or state["training"] != asdict(
            self.training
        ):
            raise ValueError("the checkpoint was written with another model or training config")
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        self.discriminators.load_state_dict(state["discriminators"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.d_optimiser.load_state_dict(state["d_optimiser"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.python_rng.setstate(state["python_rng"])
        self.history = state["history"]

    def save_checkpoint(self, path: Path) -> None:
        """Write the state atomically."""
        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)


def write_history(
    path: Path, history: list[dict[str, Any]], columns: tuple[str, ...] = LOSS_COLUMNS
) -> None:
    """The loss curves as CSV, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def fit(
    make_trainer: Callable[[], Any],
    output: Path,
    checkpoint: Path,
    losses: Path,
    stop_after: int | None = None,
) -> Any:
    """Run a trainer to its last epoch, resuming from ``checkpoint``; write model and curves.

    The trainer (:class:`Trainer`, or a baseline's) has ``epoch``, ``epochs``, ``history``,
    ``columns``, ``run_epoch()``, ``checkpoint_due()``, ``save_checkpoint(path)``,
    ``load_state(state)`` (ValueError for another config) and ``final_state()``.
    ``stop_after`` ends the run after that many epochs (a simulated kill, for tests).
    """
    from tqdm import tqdm

    trainer = make_trainer()
    if Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=trainer.device, weights_only=False)
        try:
            trainer.load_state(state)
            log.info("resumed from %s at epoch %d", checkpoint, trainer.epoch)
        except ValueError as error:
            log.warning("%s: %s; training from scratch (it will be overwritten)", checkpoint, error)
            trainer = make_trainer()
    log.info("training on %s", trainer.device)
    progress = tqdm(
        total=trainer.epochs, initial=trainer.epoch, desc="epochs", unit="epoch", mininterval=5.0
    )
    with progress:
        while trainer.epoch < trainer.epochs:
            if stop_after is not None and trainer.epoch >= stop_after:
                return trainer
            row = trainer.run_epoch()
            progress.update(1)
            progress.set_postfix(loss=f"{row['loss']:.4f}")
            if trainer.checkpoint_due():
                trainer.save_checkpoint(checkpoint)
                write_history(losses, trainer.history, trainer.columns)
    with atomic_path(output) as tmp:
        torch.save(trainer.final_state(), tmp)
    write_history(losses, trainer.history, trainer.columns)
    return trainer


def train(
    model_config: ModelConfig,
    training: TrainingConfig,
    train_stacks: list[SliceStack],
    val_stacks: list[SliceStack],
    output: Path,
    checkpoint: Path,
    losses: Path,
    stop_after: int | None = None,
) -> Trainer:
    """Train an MMHVAE variant (resuming from ``checkpoint``); write the model and curves."""
    log.info("%d training volumes", len(train_stacks))
    return fit(
        lambda: Trainer(model_config, training, train_stacks, val_stacks),
        output,
        checkpoint,
        losses,
        stop_after,
    )


def load_model(path: Path, device: str = "auto") -> MMHVAE:
    """A trained generator from a ``model.pt`` written by :func:`train`, in eval mode."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    config = dict(state["model_config"])
    config["modalities"] = tuple(config["modalities"])
    model = MMHVAE(ModelConfig(**config))
    model.load_state_dict(state["model"])
    return model.to(select_device(device)).eval()


def variant_configs(section: dict[str, Any], variant: str) -> tuple[ModelConfig, TrainingConfig]:
    """The model and training configs of one variant: the shared ones, then its overrides."""
    if variant not in section["variants"]:
        raise ValueError(f"models: no variant {variant!r}; known: {sorted(section['variants'])}")
    overrides = section["variants"][variant] or {}
    architecture = {**section["architecture"], **overrides.get("architecture", {})}
    training = {**section["training"], **overrides.get("training", {})}
    return ModelConfig.from_config(architecture), TrainingConfig.from_config(training)


def _has_all(stack: SliceStack, modalities: tuple[str, ...]) -> bool:
    """Whether a slice stack holds every one of ``modalities``."""
    names = stack.meta["modalities"]
    return all(stack.meta["present"][names.index(m)] for m in modalities)


def fold_stacks(
    splits: dict[str, Any],
    fold: int,
    slices_root: Path,
    model_config: ModelConfig,
    complete_only: bool,
) -> tuple[list[SliceStack], list[SliceStack]]:
    """Training and validation slice stacks of one fold (complete pairs only if asked)."""
    if not 0 <= fold < len(splits["folds"]):
        raise ValueError(f"models.fold {fold}: the splits have {len(splits['folds'])} folds")

    def usable(subjects: list[str]) -> list[SliceStack]:
        stacks = [
            load_slices(Path(slices_root) / s)
            for s in subjects
            if (Path(slices_root) / s / "meta.json").is_file()
        ]
        if complete_only:
            stacks = [stack for stack in stacks if _has_all(stack, model_config.modalities)]
        return stacks

    part = splits["folds"][fold]
    return usable(part["train"]), usable(part["val"])
