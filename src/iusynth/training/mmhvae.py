"""Training of MMHVAE and its variants: steps, losses, schedule, checkpoints, resume.

By default every detail follows the authors' training script. An epoch visits every
training volume once, in a shuffled order; from each it takes one batch of contiguous
axial slices (a random window, the volume flipped along its first array axis with
probability 1/2). The modalities *present* are those acquired and not all background in
the window. Each optimiser step sums the losses of several passes (input subsets):

- ``mixture`` (MMHVAE, MHVAE): one step per non-empty subset S of the present MR
  sequences, each summing three passes: all present modalities, iUS alone, S (a volume
  with 3 MR sequences gives 7 steps per epoch, one with no MR none);
- ``all``: one step, one pass with every present modality;
- ``unimodal`` (MVAE's sub-sampled terms, ours): one step: all present, then each alone.

``subset_sampling: random`` (ours, for short schedules) takes one step per volume: one
random S (mixture) or one random single modality (unimodal).

Loss of a pass: (mean |output - target| / 2) averaged over the present modalities;
w_kl * KL / (batch x H x W x modalities), KL summed over batch and levels (a single-sample
estimate, or closed form with ``kl: analytic``), w_kl ramped linearly over the first
``kl_warmup_epochs``; from ``gan_start_epoch``, w_gan * the least-squares GAN term of
every output modality (averaged), on every pass but the first. The discriminators (one
per modality) train after each step from ``discriminator_start_epoch``: real present
images against the outputs of the passes that did not take that modality as input.
Adamax with cosine decay (re-created at ``optimiser_reset_epoch``), Adam for the
discriminators. Epoch numbers in the settings count from 1, as the authors' do.

``losses: miccai`` takes the loss forms of the MHVAE (MICCAI 2023) script instead: Smooth
L1 summed over every voxel, the raw KL sum, the GAN term summed over the modalities and
scaled by the voxels of one modality's batch, and discriminators that see every output of
the last pass as fake, their terms summed.

A checkpoint (weights, optimisers, schedule, random states, loss history) is written
atomically every N epochs; a killed run resumes from it and ends with the same weights
as an uninterrupted one. Only a checkpoint of the same settings and slice stacks is
resumed (:func:`iusynth.training.loop.fit`).
"""

from __future__ import annotations

import itertools
import logging
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from iusynth.core.settings import ConfigError, build
from iusynth.core.torch_io import load_torch
from iusynth.model.discriminator import (
    PatchDiscriminator,
    lsgan_generator_loss,
)
from iusynth.model.network import MMHVAE, ModelConfig
from iusynth.preprocessing.slices import SliceStack, load_slices
from iusynth.training.data import Batch, SliceSampler, training_digest
from iusynth.training.loop import EpochTrainer, fit, select_device
from iusynth.training.settings import TrainingConfig

log = logging.getLogger(__name__)

ANCHOR = "US"  # the modality every mixture step also translates from alone
LOSS_COLUMNS = (
    "epoch",
    "steps",
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


Subset = tuple[int, ...]


def training_steps(
    present: Subset,
    mode: str,
    modalities: tuple[str, ...],
    sampling: str = "enumerate",
    rng: random.Random | None = None,
) -> list[list[Subset]]:
    """The optimiser steps of one batch: each a list of passes (input modality indices).

    ``present``: the indices of the modalities present in the batch, in order.
    """
    if not present:
        return []
    everything = tuple(present)
    if mode == "all":
        return [[everything]]
    if mode == "unimodal":
        singles = [(m,) for m in present]
        if sampling == "random":
            singles = [singles[rng.randrange(len(singles))]]
        return [[everything, *singles]]
    anchor = modalities.index(ANCHOR) if ANCHOR in modalities else None
    others = [m for m in present if m != anchor]
    subsets = [
        combo
        for size in range(1, len(others) + 1)
        for combo in itertools.combinations(others, size)
    ]
    if sampling == "random" and subsets:
        subsets = [subsets[rng.randrange(len(subsets))]]
    alone = [(anchor,)] if anchor in present else []
    return [[everything, *alone, subset] for subset in subsets]


def reconstruction_l1(
    outputs: torch.Tensor, targets: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """(Mean absolute error) / 2, averaged over the present modalities (the authors' L1)."""
    per_modality = (outputs - targets).abs().mean(dim=(0, 2, 3)) / 2
    weights = present.to(per_modality.dtype)
    return (per_modality * weights).sum() / weights.sum().clamp(min=1.0)


def reconstruction_smooth_l1_sum(
    outputs: torch.Tensor, targets: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """Smooth L1 (Huber, beta 1) summed over every voxel of the present modalities.

    The MHVAE (MICCAI) script's reconstruction term (``SmoothL1Loss(reduction='sum')``).
    """
    per_voxel = nn.functional.smooth_l1_loss(outputs, targets, reduction="none")
    return (per_voxel * present.to(per_voxel.dtype)[None, :, None, None]).sum()


@dataclass
class StepLosses:
    """Loss terms of one optimiser step (summed over its passes)."""

    loss: float
    l1: float
    kl: float
    gan_g: float
    gan_d: float


class Trainer(EpochTrainer):
    """Owns the model, discriminators, optimisers and data; trains an epoch at a time."""

    columns = LOSS_COLUMNS

    def __init__(
        self,
        model_config: ModelConfig,
        training: TrainingConfig,
        train_stacks: list[SliceStack],
        val_stacks: list[SliceStack],
    ) -> None:
        super().__init__({"model_config": model_config, "training": training}, training)
        self.model_config = model_config
        self.model = MMHVAE(model_config).to(self.device)
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(
                model_config.discriminator_channels, model_config.discriminator_layers
            )
            for _ in model_config.modalities
        ).to(self.device)
        self._new_optimiser(completed_epochs=0, t_max=training.epochs)
        self.d_optimiser = torch.optim.Adam(
            self.discriminators.parameters(), lr=training.discriminator_learning_rate
        )
        self.train = SliceSampler(train_stacks, model_config.modalities, training.batch_slices)
        self.val = (
            SliceSampler(val_stacks, model_config.modalities, training.batch_slices)
            if val_stacks
            else None
        )

    def parts(self) -> dict[str, Any]:
        """What a checkpoint saves besides the configs, epoch, random states and history."""
        return {
            "model": self.model,
            "discriminators": self.discriminators,
            "optimiser": self.optimiser,
            "scheduler": self.scheduler,
            "d_optimiser": self.d_optimiser,
        }

    def _new_optimiser(self, completed_epochs: int, t_max: int) -> None:
        """Adamax with a cosine schedule over ``t_max`` epochs, advanced to an epoch."""
        training = self.training
        self.optimiser = torch.optim.Adamax(self.model.parameters(), lr=training.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimiser, T_max=max(t_max, 1), eta_min=training.final_learning_rate
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # stepping before any optimiser step
            for _ in range(completed_epochs):
                self.scheduler.step()

    def _autocast(self) -> Any:
        """bf16 autocast when asked for, else a no-op context."""
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.training.bf16
        )

    def _observed(self, subset: Subset, batch: int) -> torch.Tensor:
        observed = torch.zeros(
            batch, len(self.model_config.modalities), dtype=torch.bool, device=self.device
        )
        observed[:, list(subset)] = True
        return observed

    def _gan_term(self, outputs: torch.Tensor) -> torch.Tensor:
        """The generator's LSGAN term over every output modality.

        ``mmhvae`` losses: averaged over the modalities; ``miccai``: summed, each times the
        voxels of one slice batch over the modality count (their ``nb_voxels``).
        """
        terms = torch.stack(
            [
                lsgan_generator_loss(discriminator(outputs[:, m : m + 1]))
                for m, discriminator in enumerate(self.discriminators)
            ]
        )
        if self.training.losses == "miccai":
            n_batch, n_mod, height, width = outputs.shape
            return terms.sum() * (n_batch * height * width / n_mod)
        return terms.mean()

    def step(self, batch: Batch, passes: list[Subset], epoch: int) -> StepLosses:
        """One optimiser step: the summed losses of ``passes``; then the discriminators'."""
        training = self.training
        images = batch.images.to(self.device)
        fov = batch.fov.to(self.device)
        present = batch.present.to(self.device)
        n_batch, n_mod, height, width = images.shape
        miccai = training.losses == "miccai"
        reconstruction = reconstruction_smooth_l1_sum if miccai else reconstruction_l1
        kl_scale = 1.0 if miccai else n_batch * height * width * n_mod  # MICCAI: the raw sum
        gan = training.gan_on(epoch)
        kl_weight = training.kl_weight_at(epoch)
        self.model.train()
        self.optimiser.zero_grad(set_to_none=True)
        loss = l1 = kl = gan_g = torch.zeros((), device=self.device)
        outputs_by_pass = []
        for index, subset in enumerate(passes):
            with self._autocast():
                synthesis = self.model(
                    images, self._observed(subset, n_batch), fov, training.temperature
                )
                outputs = synthesis.images.float()
                pass_l1 = reconstruction(outputs, images, present)
                pass_kl = torch.stack([level.sum() for level in synthesis.kl]).sum()
                term = pass_l1 + kl_weight * pass_kl / kl_scale
                if gan and index > 0:
                    pass_gan = training.temperature * self._gan_term(outputs)
                    term = term + training.gan_weight * pass_gan
                    gan_g = gan_g + pass_gan.detach()
            loss, l1, kl = loss + term, l1 + pass_l1.detach(), kl + pass_kl.detach()
            outputs_by_pass.append(outputs.detach())
        loss.backward()
        self.optimiser.step()
        gan_d = 0.0
        if training.discriminator_on(epoch):
            gan_d = self._train_discriminators(images, present, passes, outputs_by_pass)
        return StepLosses(float(loss.detach()), float(l1), float(kl), float(gan_g), gan_d)

    def _fakes(
        self, m: int, passes: list[Subset], outputs_by_pass: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """What the discriminator of modality ``m`` sees as fake.

        ``mmhvae``: the outputs of every pass that did not take ``m`` as input; ``miccai``:
        the last pass's output, whatever its inputs (their script's last single pass).
        """
        if self.training.losses == "miccai":
            return [outputs_by_pass[-1][:, m : m + 1]]
        return [
            out[:, m : m + 1] for out, s in zip(outputs_by_pass, passes, strict=True) if m not in s
        ]

    def _train_discriminators(
        self,
        images: torch.Tensor,
        present: torch.Tensor,
        passes: list[Subset],
        outputs_by_pass: list[torch.Tensor],
    ) -> float:
        """Real present images vs the fakes of :meth:`_fakes`.

        The terms are averaged (``mmhvae``) or summed (``miccai``) over the modalities.
        """
        real_terms, fake_terms = [], []
        with self._autocast():
            for m in torch.nonzero(present).flatten().tolist():
                discriminator = self.discriminators[m]
                real = discriminator(images[:, m : m + 1])
                real_terms.append(((real - 1.0) ** 2).mean())
                fakes = self._fakes(m, passes, outputs_by_pass)
                if fakes:
                    fake_terms.append((discriminator(torch.cat(fakes)) ** 2).mean())
        if not fake_terms:
            return 0.0
        reduce = torch.sum if self.training.losses == "miccai" else torch.mean
        d_loss = reduce(torch.stack(real_terms)) + reduce(torch.stack(fake_terms))
        self.d_optimiser.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimiser.step()
        return float(d_loss.detach())

    @torch.no_grad()
    def validate(self) -> float:
        """L1 with every present modality in, temperature 0, on central validation batches."""
        if self.val is None:
            return float("nan")
        self.model.eval()
        errors = []
        rng = np.random.default_rng(0)
        for index, stack in enumerate(self.val.stacks):
            count = stack.images.shape[0]
            start = max(0, (count - self.val.batch_slices) // 2)
            batch = self.val.batch(index, rng, flip=False, start=start)
            images = batch.images.to(self.device)
            present = batch.present.to(self.device)
            observed = present.unsqueeze(0).expand(images.shape[0], -1)
            with self._autocast():
                outputs = self.model(
                    images, observed, batch.fov.to(self.device), 0.0, with_kl=False
                )
            errors.append(float(reconstruction_l1(outputs.images.float(), images, present)))
        return float(np.mean(errors))

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch; return its row of the loss history."""
        start = time.perf_counter()
        training = self.training
        epoch = self.epoch + 1
        if epoch == training.optimiser_reset_epoch:
            log.info("epoch %d: optimiser and schedule re-created", epoch)
            self._new_optimiser(completed_epochs=epoch, t_max=training.epochs + 1)
        lr = self.optimiser.param_groups[0]["lr"]
        order = self.rng.permutation(len(self.train.stacks))
        steps = []
        for i in order:
            batch = self.train.batch(int(i), self.rng)
            present = tuple(int(m) for m in torch.nonzero(batch.present).flatten())
            for passes in training_steps(
                present,
                training.subsets,
                self.model_config.modalities,
                training.subset_sampling,
                self.python_rng,
            ):
                steps.append(self.step(batch, passes, epoch))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an epoch without any step
            self.scheduler.step()

        def mean(name: str) -> float:
            return float(np.mean([getattr(s, name) for s in steps])) if steps else float("nan")

        row = {
            "epoch": epoch,
            "steps": len(steps),
            **{name: mean(name) for name in ("loss", "l1", "kl", "gan_g", "gan_d")},
            "kl_weight": training.kl_weight_at(epoch),
            "lr": lr,
            "val_l1": float("nan"),
            "seconds": 0.0,
        }
        self.epoch = epoch
        if self.checkpoint_due():
            row["val_l1"] = self.validate()
        row["seconds"] = time.perf_counter() - start
        self.history.append(row)
        return row


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
    """Train an MMHVAE variant (resuming from ``checkpoint``); write the model and curves.

    Only a checkpoint of the same settings and slice stacks is resumed (:func:`fit`).
    """
    log.info("%d training volumes", len(train_stacks))
    settings = {"model_config": asdict(model_config), "training": asdict(training)}
    return fit(
        lambda: Trainer(model_config, training, train_stacks, val_stacks),
        output,
        checkpoint,
        losses,
        training_digest(settings, train_stacks, val_stacks),
        stop_after,
    )


def load_model(path: Path, device: str = "auto") -> MMHVAE:
    """A trained generator from a ``model.pt`` written by :func:`train`, in eval mode."""
    state = load_torch(path, "rule train_model")
    try:
        config = build(ModelConfig, state["model_config"], str(path))
    except ConfigError as error:
        raise ValueError(
            f"{path} was written by another version of iusynth ({error}); delete it and rerun "
            "train_model"
        ) from None
    model = MMHVAE(config)
    model.load_state_dict(state["model"])
    return model.to(select_device(device)).eval()


def _has_all(stack: SliceStack, modalities: tuple[str, ...]) -> bool:
    """Whether a slice stack holds every one of ``modalities``."""
    return set(modalities) <= stack.acquired


def fold_stacks(
    splits: dict[str, Any],
    fold: int,
    slices_root: Path,
    modalities: tuple[str, ...],
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
            stacks = [stack for stack in stacks if _has_all(stack, modalities)]
        return stacks

    part = splits["folds"][fold]
    return usable(part["train"]), usable(part["val"])
