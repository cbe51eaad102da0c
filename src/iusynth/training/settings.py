"""How the models are trained, as settings (no torch here: the workflow reads them).

:class:`TrainingConfig` is MMHVAE's (``models.training``; epochs count from 1, as the
authors' do), :class:`TranslatorTraining` the GAN baselines' (``baselines.training``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iusynth.core.settings import InvalidField
from iusynth.model.config import ModelConfig, TranslatorConfig

SUBSET_MODES = ("all", "mixture", "unimodal")
LOSS_FORMS = ("mmhvae", "miccai")


@dataclass(frozen=True)
class TrainingConfig:
    """The optimisation of one model (see the module docstring; epochs count from 1)."""

    epochs: int
    batch_slices: int
    learning_rate: float
    final_learning_rate: float
    discriminator_learning_rate: float
    kl_weight: float
    kl_warmup_epochs: int
    gan_weight: float
    gan_start_epoch: int | None
    discriminator_start_epoch: int | None
    optimiser_reset_epoch: int | None
    subsets: str
    subset_sampling: str
    losses: str  # mmhvae: the MMHVAE script's loss forms | miccai: the MHVAE (MICCAI) script's
    complete_pairs: bool  # train only on volumes with every modality of the model
    temperature: float
    checkpoint_every: int
    seed: int
    device: str
    bf16: bool

    def __post_init__(self) -> None:
        if self.subsets not in SUBSET_MODES:
            raise InvalidField("subsets", f"must be one of {SUBSET_MODES}, not {self.subsets!r}")
        if self.subset_sampling not in ("enumerate", "random"):
            raise InvalidField(
                "subset_sampling",
                f"must be 'enumerate' or 'random', not {self.subset_sampling!r}",
            )
        if self.losses not in LOSS_FORMS:
            raise InvalidField("losses", f"must be one of {LOSS_FORMS}, not {self.losses!r}")
        # the MHVAE (MICCAI) script trains its discriminators from the epoch after the
        # generator's term starts: one epoch of lag is theirs, more is a configuration error
        if self.gan_start_epoch is not None and (
            self.discriminator_start_epoch is None
            or self.discriminator_start_epoch > self.gan_start_epoch + 1
        ):
            raise InvalidField(
                "discriminator_start_epoch",
                "must be set and at most gan_start_epoch + 1 "
                f"(got {self.discriminator_start_epoch} and {self.gan_start_epoch}): the "
                "generator's GAN term needs a discriminator that is training",
            )

    def kl_weight_at(self, epoch: int) -> float:
        """The KL weight of an epoch (from 1): a linear ramp, then constant."""
        if self.kl_warmup_epochs <= 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, epoch / self.kl_warmup_epochs)

    def gan_on(self, epoch: int) -> bool:
        """Whether the generator's adversarial term is active at an epoch (from 1)."""
        return self.gan_start_epoch is not None and epoch >= self.gan_start_epoch

    def discriminator_on(self, epoch: int) -> bool:
        """Whether the discriminators train at an epoch (from 1)."""
        return (
            self.gan_start_epoch is not None
            and self.discriminator_start_epoch is not None
            and epoch >= self.discriminator_start_epoch
        )


@dataclass(frozen=True)
class TranslatorTraining:
    """The optimisation of a GAN baseline."""

    epochs: int
    batch_slices: int
    learning_rate: float
    l1_weight: float
    gan_weight: float
    checkpoint_every: int
    seed: int
    device: str


@dataclass(frozen=True)
class VariantSettings:
    """One model variant's training job: its fold, architecture and optimisation."""

    fold: int  # models.fold
    model: ModelConfig
    training: TrainingConfig


@dataclass(frozen=True)
class BaselineSettings:
    """One GAN baseline network's training job: its fold, U-Net and optimisation."""

    fold: int  # models.fold
    translator: TranslatorConfig
    training: TranslatorTraining


@dataclass(frozen=True)
class PretrainedSettings:
    """The authors' checkpoint a variant converts instead of training.

    From ``models.variants.<name>.pretrained``: a ``path``, or a ``url``, with the file's
    ``sha256`` (required with a URL); ``slice_size`` is the workflow's slices (None: not
    checked). ``fold`` is the authors' fold the weights were trained on (their published
    ones: 0): only its test list's ReMIND cases are scored, unless
    ``score_training_subjects`` (see :func:`iusynth.cohorts.datasets.authors.check_fair_scoring`).
    """

    path: str | None
    url: str | None
    sha256: str | None
    slice_size: tuple[int, int] | None
    fold: int  # the authors' fold the weights come from
    score_training_subjects: bool

    def local_file(self, cache: Path) -> Path:
        """The file the checkpoint is read from (a URL's lands in ``cache``)."""
        if self.path is not None:
            return Path(self.path)
        return Path(cache) / f"{self.sha256}.pth"
