"""Temperature-swept synthesis of evaluation subjects, written as NIfTI in their grids.

A *method* is either a VAE variant (one ``model.pt`` from :func:`iusynth.training.mmhvae.train`:
any subset of its modalities in, all of them out, stochastic) or a GAN baseline (one or
several U-Nets from :func:`iusynth.training.baselines.train_translator`: deterministic, only the
modalities that were not input out). Each method synthesises, for every input subset the
subject has, every target it can, at every temperature (VAEs) with N samples (one at
temperature 0, which is deterministic).

Per subject, one folder::

    <subject>_in-<T2+ceT1>_out-<US>_tau-<0.7>.nii.gz   uint8 0..255 (the evaluation scale),
                                                      X x Y x Z x samples in the
                                                      subject's preprocessed grid;
                                                      background 0
    synthesis.json                                    one record per file

GAN baselines have no temperature: their files end in ``_tau-none``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iusynth.core.directions import subset_name, temperature_tag
from iusynth.core.fileio import atomic_directory, save_nifti, write_json
from iusynth.core.modalities import MODALITIES
from iusynth.core.torch_io import load_torch
from iusynth.evaluation.metrics import to_display
from iusynth.methods import translator_method
from iusynth.model.network import MMHVAE
from iusynth.preprocessing.slices import SliceStack, load_slices
from iusynth.synthesis.settings import SweepSettings
from iusynth.training.baselines import load_translator, translator_outputs
from iusynth.training.mmhvae import load_model

log = logging.getLogger(__name__)

INDEX_NAME = "synthesis.json"


class Synthesizer:
    """What every method offers the evaluation: which targets it gives, and a forward pass."""

    stochastic: bool
    device: torch.device = torch.device("cpu")

    def targets(self, inputs: tuple[str, ...]) -> tuple[str, ...]:
        """The modalities synthesised from ``inputs`` (empty if the inputs are not supported)."""
        raise NotImplementedError

    def __call__(
        self, images: torch.Tensor, observed: torch.Tensor, fov: torch.Tensor, temperature: float
    ) -> dict[str, torch.Tensor]:
        """Per target modality, batch x H x W in [-1, 1]; ``images``: batch x 4 x H x W."""
        raise NotImplementedError


class VAESynthesizer(Synthesizer):
    """A trained MMHVAE variant (its own modality subset, e.g. MHVAE's iUS and T2)."""

    stochastic = True

    def __init__(self, model: MMHVAE, pretrained: dict[str, Any] | None = None) -> None:
        self.model = model
        self.pretrained = pretrained  # the authors' checkpoint it came from, if any
        self.device = next(model.parameters()).device
        self.modalities = tuple(model.config.modalities)
        self.channels = [MODALITIES.index(m) for m in self.modalities]

    def targets(self, inputs: tuple[str, ...]) -> tuple[str, ...]:
        """Every modality of the model, when the inputs are among them."""
        return self.modalities if set(inputs) <= set(self.modalities) else ()

    @torch.inference_mode()
    def __call__(
        self, images: torch.Tensor, observed: torch.Tensor, fov: torch.Tensor, temperature: float
    ) -> dict[str, torch.Tensor]:
        """One sample of every modality."""
        result = self.model(
            images[:, self.channels], observed[:, self.channels], fov, temperature, with_kl=False
        ).images
        return {m: result[:, i] for i, m in enumerate(self.modalities)}


class TranslatorSynthesizer(Synthesizer):
    """A GAN baseline's networks (:mod:`iusynth.methods`: e.g. one per direction, or one).

    Each network carries its ``config`` (:func:`iusynth.training.baselines.build_generator`).
    """

    stochastic = False

    def __init__(self, models: list[torch.nn.Module]) -> None:
        if not models:
            raise ValueError("a GAN baseline needs at least one trained model")
        self.models = models
        self.device = next(models[0].parameters()).device

    def _model_for(self, inputs: tuple[str, ...]) -> list[torch.nn.Module]:
        """The networks that synthesise from ``inputs`` (their method says which)."""
        return [
            model
            for model in self.models
            if translator_method(model.config.kind).serves(model.config, inputs)
        ]

    def targets(self, inputs: tuple[str, ...]) -> tuple[str, ...]:
        """The modalities not among the inputs that some network produces from them."""
        produced = {t for model in self._model_for(inputs) for t in model.config.targets}
        return tuple(m for m in MODALITIES if m in produced and m not in inputs)

    @torch.inference_mode()
    def __call__(
        self, images: torch.Tensor, observed: torch.Tensor, fov: torch.Tensor, temperature: float
    ) -> dict[str, torch.Tensor]:
        """The deterministic outputs (``temperature`` is ignored)."""
        inputs = tuple(m for i, m in enumerate(MODALITIES) if bool(observed[0, i]))
        outputs: dict[str, torch.Tensor] = {}
        for model in self._model_for(inputs):
            result = translator_outputs(model, images, observed)
            result = torch.where(fov.unsqueeze(1), result, torch.full_like(result, -1.0))
            for index, target in enumerate(model.config.targets):
                if target not in inputs:
                    outputs[target] = result[:, index]
        return outputs


def load_synthesizer(model_paths: list[Path], device: str = "auto") -> Synthesizer:
    """The method behind one or several ``model.pt`` files (a VAE, or GAN baseline U-Nets)."""
    states = [load_torch(path, "rule train_model or train_baseline") for path in model_paths]
    if all("translator_config" in state for state in states):
        return TranslatorSynthesizer([load_translator(path, device) for path in model_paths])
    if len(model_paths) == 1 and "model_config" in states[0]:
        return VAESynthesizer(load_model(model_paths[0], device), states[0].get("pretrained"))
    raise ValueError(
        f"{[str(p) for p in model_paths]}: expected one VAE model.pt or GAN baseline model.pt "
        "files; re-run the training rules"
    )


def synthesise_stack(
    synthesizer: Synthesizer,
    stack: SliceStack,
    inputs: tuple[str, ...],
    temperature: float,
    samples: int,
    slice_positions: np.ndarray,
    batch_slices: int = 16,
) -> dict[str, np.ndarray]:
    """Per target, samples x slices x H x W uint8 (0..255) for the chosen slice positions."""
    device = synthesizer.device
    names = stack.meta["modalities"]
    order = [names.index(m) for m in MODALITIES]
    observed_row = torch.tensor([m in inputs for m in MODALITIES])
    targets = synthesizer.targets(inputs)
    height, width = stack.images.shape[2:]
    result = {
        t: np.zeros((samples, len(slice_positions), height, width), np.uint8) for t in targets
    }
    # Every sample of a batch of slices in one pass: the batch repeated ``samples`` times.
    step = max(1, batch_slices // samples)
    for start in range(0, len(slice_positions), step):
        chosen = slice_positions[start : start + step]
        images = torch.from_numpy(np.asarray(stack.images[chosen][:, order], np.float32))
        fov = torch.from_numpy(np.asarray(stack.fov[chosen], bool))
        observed = observed_row.unsqueeze(0).expand(len(chosen) * samples, -1)
        outputs = synthesizer(
            images.repeat(samples, 1, 1, 1).to(device),
            observed.to(device),
            fov.repeat(samples, 1, 1).to(device),
            temperature,
        )
        for target, output in outputs.items():
            result[target][:, start : start + len(chosen)] = to_display(
                output.reshape(samples, len(chosen), height, width)
            )
    return result


def synthesise_subject(
    synthesizer: Synthesizer, stack_dir: Path, settings: SweepSettings, output_dir: Path
) -> list[dict[str, Any]]:
    """Synthesise one subject for every subset, target and temperature; write its folder."""
    stack = load_slices(stack_dir)
    meta = stack.meta
    if "grid_shape" not in meta:
        raise ValueError(f"{stack_dir}/meta.json has no grid_shape: re-run the export_slices rule")
    subject = meta["subject"]
    positions = np.arange(0, stack.images.shape[0], settings.slice_step)
    grid_slices = np.asarray(meta["slice_indices"])[positions]
    affine = np.asarray(meta["grid_affine"])
    temperatures: tuple[float | None, ...] = (
        settings.temperatures if synthesizer.stochastic else (None,)
    )
    torch.manual_seed(settings.seed)
    records = []
    with atomic_directory(output_dir) as folder:
        for inputs in settings.subsets:
            if not set(inputs) <= stack.acquired or not synthesizer.targets(inputs):
                continue
            for temperature in temperatures:
                samples = 1 if not temperature else settings.samples
                volumes = synthesise_stack(
                    synthesizer,
                    stack,
                    inputs,
                    temperature or 0.0,
                    samples,
                    positions,
                    settings.batch_slices,
                )
                for target, slices in volumes.items():
                    name = (
                        f"{subject}_in-{subset_name(inputs)}_out-{target}"
                        f"_tau-{temperature_tag(temperature)}.nii.gz"
                    )
                    volume = np.zeros((*meta["grid_shape"], samples), np.uint8)
                    volume[:, :, grid_slices] = np.moveaxis(slices, (0, 1), (3, 2))
                    save_nifti(folder / name, volume, affine)
                    records.append(
                        {
                            "inputs": list(inputs),
                            "target": target,
                            "temperature": temperature,
                            "samples": samples,
                            "file": name,
                        }
                    )
        write_json(
            folder / INDEX_NAME,
            {
                "subject": subject,
                "slice_indices": grid_slices.tolist(),
                "records": records,
            },
        )
    log.info("%s: %d volumes", subject, len(records))
    return records
