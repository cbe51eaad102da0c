"""The authors' trained weights as a workflow model: fetched, verified, converted.

``models.variants.<name>.pretrained`` names a checkpoint saved by the authors' training
script (their published one is ``pretrained/mmhvae_f0/models/CP_main_1000.pth`` in
ReubenDo/MMHVAE): a local path, or ``{path: ..., sha256: ...}`` / ``{url: ...,
sha256: ...}``. ``train_model`` then converts it (:func:`iusynth.model.authors.
load_authors_checkpoint`) into the variant's ``model.pt`` instead of training, and every
later stage uses it like a trained model.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from iusynth.cohorts.datasets.download import ChecksumMismatch, RetryPolicy, fetch
from iusynth.core.fileio import atomic_path
from iusynth.model.authors import load_authors_checkpoint
from iusynth.model.network import MMHVAE
from iusynth.training.loop import write_history
from iusynth.training.mmhvae import LOSS_COLUMNS
from iusynth.training.settings import PretrainedSettings

log = logging.getLogger(__name__)


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(source: PretrainedSettings, key: str, cache: Path, policy: RetryPolicy) -> Path:
    """A verified local copy of the checkpoint (downloaded once, when it is a URL)."""
    target = source.local_file(cache)
    if source.url is not None:
        if target.is_file() and sha256_of(target) == source.sha256:
            return target

        def check(tmp: Path) -> None:
            actual = sha256_of(tmp)
            if actual != source.sha256:
                raise ChecksumMismatch("SHA-256", source.sha256, actual)

        target.parent.mkdir(parents=True, exist_ok=True)
        fetch(source.url, target, policy=policy, validate=check, description=target.name)
        return target
    if not target.is_file():
        raise FileNotFoundError(
            f"config key '{key}': {target} does not exist; give the path of the authors' "
            "checkpoint (e.g. their pretrained/mmhvae_f0/models/CP_main_1000.pth)"
        )
    if source.sha256 is not None:
        actual = sha256_of(target)
        if actual != source.sha256:
            raise ValueError(
                f"config key '{key}': {target} has SHA-256 {actual}, not the configured "
                f"{source.sha256}; the file is corrupt or another one: fetch it again, or fix "
                "the digest in the config"
            )
    return target


def install_pretrained(
    source: PretrainedSettings,
    key: str,
    cache: Path,
    policy: RetryPolicy,
    output: Path,
    losses: Path | None,
) -> MMHVAE:
    """Convert the configured checkpoint into ``output`` (a ``model.pt``); write no epochs.

    ``source.slice_size``: the slices the workflow feeds the model (None: not checked).
    """
    path = resolve(source, key, cache, policy)
    model = load_authors_checkpoint(path)
    size = model.config.image_size
    slice_size = source.slice_size
    if slice_size is not None and tuple(slice_size) != (size, size):
        raise ValueError(
            f"config key '{key}': {path} holds a model of {size} x {size} slices, but "
            f"preprocessing.slice_size is {list(slice_size)}; set it to [{size}, {size}]"
        )
    record: dict[str, Any] = {
        "file": str(path),
        "sha256": sha256_of(path),
        "url": source.url,
        # which of the authors' folds trained it, and whether its training subjects may be
        # scored (iusynth.cohorts.datasets.authors.check_fair_scoring)
        "fold": source.fold,
        "score_training_subjects": source.score_training_subjects,
    }
    with atomic_path(output) as tmp:
        torch.save(
            {
                "model_config": asdict(model.config),
                "training": None,
                "epochs": 0,
                "model": model.state_dict(),
                "pretrained": record,
            },
            tmp,
        )
    if losses is not None:
        write_history(losses, [], LOSS_COLUMNS)  # no epoch was trained here
    log.info("converted the authors' checkpoint %s (SHA-256 %s)", path, record["sha256"])
    return model
