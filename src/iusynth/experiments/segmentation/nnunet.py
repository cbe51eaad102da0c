"""Tumour segmentation in iUS with nnU-Net v2 (2D), trained on synthetic or real iUS planes.

The paper's downstream experiment (MMHVAE, Table 4): a 5-fold 2D nnU-Net trained on
synthetic iUS planes with the tumour labels of their virtual sweeps, ensembled, and
tested on real iUS, scored per subject in 3D (Dice, ASSD in mm).

nnU-Net is driven through its Python API only. Its command-line tools and its
look-up of trainer classes by name import every trainer module, and one of them imports
timm -> torchvision, which a CPU-only torch may not load. So this module instantiates its
own trainer subclass (:func:`trainer_class`) and builds the inference network itself.

Steps, each a function:

1. :func:`export_dataset` writes a raw nnU-Net dataset (``DatasetXXX_Name``) of 2D
   NIfTI planes named ``<subject>_<plane:04d>`` from :class:`SubjectPlanes` (synthetic
   planes from arrays, or real iUS from a slice stack with :func:`planes_from_stack`).
2. :func:`plan_and_preprocess`: fingerprint, default experiment planner, ``2d``
   preprocessing.
3. :func:`write_splits`: k folds grouped by subject, written once (by a job of its own)
   before any fold trains; the trainer reads them from that file.
4. :func:`train_fold` trains one fold (``checkpoint_final.pth``).
5. :func:`iusynth.experiments.segmentation.nnunet_prediction.predict_cases` ensembles
   the folds on in-memory planes, every tile of a subject batched through each fold.
6. :func:`dice`, :func:`assd`, :func:`case_metrics`, :func:`score_stack` score a
   subject's 3D mask.

Every function that calls nnU-Net takes :class:`NnunetPaths` and a thread count and sets
nnU-Net's environment variables for the call (:func:`nnunet_environment`):
``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``, and ``OMP_NUM_THREADS``,
``nnUNet_n_proc_DA``, ``nnUNet_def_n_proc`` set to the thread count (nnU-Net otherwise
starts 8+ worker processes, which on a small machine makes training many times slower).
``nnUNet_def_n_proc`` is read once, when nnU-Net is first imported, so a process should
use one thread count throughout. nnU-Net starts worker processes with the ``spawn``
method, so scripts that call these functions need an ``if __name__ == "__main__"`` guard.

Intensities: planes are given either as uint8 0..255 or as float in [-1, 1] (the slice
stacks' scale); :func:`to_intensity` maps both to float 0..255 with 0 outside the field
of view. nnU-Net then z-scores every plane on its own (channel name ``US``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from iusynth.core.fileio import atomic_directory, atomic_path, set_aside, write_json
from iusynth.core.processes import exclusive_lock
from iusynth.core.settings import to_json
from iusynth.core.splits import kfold
from iusynth.core.torch_io import load_checkpoint_or_set_aside, load_torch
from iusynth.experiments.segmentation.planes import SubjectPlanes, subject_of, to_intensity
from iusynth.experiments.segmentation.segmenter import DATA
from iusynth.experiments.segmentation.settings import NnunetSettings
from iusynth.training.loop import select_device

log = logging.getLogger(__name__)

CONFIGURATION = "2d"
PLANS = "nnUNetPlans"
TRAINER_NAME = "IusynthTrainer"
FILE_ENDING = ".nii.gz"
LABELS = {"background": 0, "tumour": 1}
# One dataset per method, each under its own nnU-Net folders, so the id and name are fixed.
DATASET_ID = 501
DATASET_NAME = "iUSTumour"
# nnU-Net's SimpleITKIO gives a 2D image this spacing along its dummy first axis
_DUMMY_AXIS_FACTOR = 999


@dataclass(frozen=True)
class NnunetPaths:
    """nnU-Net's three folders: raw datasets, preprocessed datasets, trained models."""

    raw: Path
    preprocessed: Path
    results: Path

    @classmethod
    def under(cls, root: Path) -> NnunetPaths:
        """``root/raw``, ``root/preprocessed``, ``root/results``."""
        root = Path(root)
        return cls(root / "raw", root / "preprocessed", root / "results")


@contextmanager
def nnunet_environment(paths: NnunetPaths, threads: int) -> Iterator[None]:
    """Set nnU-Net's folder and process-count variables and torch's threads for a block.

    Worker processes start from a fork server: nnU-Net lists a dataset's files with a
    default ``multiprocessing.Pool`` (fork on Linux), and a fork of this multithreaded
    process (torch's threads, the parent watch of :mod:`iusynth.core.processes`) can
    inherit a held lock and hang; this hung CI's end-to-end run. The previous values and
    start method are restored afterwards.
    """
    values = {
        "nnUNet_raw": str(paths.raw),
        "nnUNet_preprocessed": str(paths.preprocessed),
        "nnUNet_results": str(paths.results),
        "OMP_NUM_THREADS": str(threads),
        "nnUNet_n_proc_DA": str(threads),
        "nnUNet_def_n_proc": str(threads),
    }
    saved = {name: os.environ.get(name) for name in values}
    saved_threads = torch.get_num_threads()
    for folder in (paths.raw, paths.preprocessed, paths.results):
        Path(folder).mkdir(parents=True, exist_ok=True)
    os.environ.update(values)
    torch.set_num_threads(threads)
    start_method = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("forkserver", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(start_method, force=True)
        torch.set_num_threads(saved_threads)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dataset_name(dataset_id: int, name: str) -> str:
    """nnU-Net's dataset folder name, ``DatasetXXX_Name``."""
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset ids are 1..999, not {dataset_id}")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"dataset name {name!r} must be letters, digits, '_' or '-'")
    return f"Dataset{dataset_id:03d}_{name}"


def _write_plane(path: Path, plane: np.ndarray, spacing: tuple[float, float]) -> None:
    """One 2D plane as NIfTI; ``spacing`` is along the array's (rows, columns)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(plane)
    image.SetSpacing((float(spacing[1]), float(spacing[0])))  # ITK order: x = columns
    sitk.WriteImage(image, str(path), True)


def export_dataset(
    raw_root: Path, dataset_id: int, name: str, subjects: Iterable[SubjectPlanes]
) -> Path:
    """Write a raw nnU-Net 2D dataset; returns its folder ``raw_root/DatasetXXX_Name``.

    One case per plane with some field of view, named ``<subject>_<plane:04d>``: image
    ``imagesTr/<case>_0000.nii.gz`` (:func:`to_intensity`), label
    ``labelsTr/<case>.nii.gz`` (1 where label > 0 inside the field of view, else 0). The
    folder is replaced atomically. ``subjects`` may be a generator, so a large cohort is
    written one subject at a time.
    """
    folder = Path(raw_root) / dataset_name(dataset_id, name)
    cases: set[str] = set()
    with atomic_directory(folder) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        for planes in subjects:
            if planes.labels is None:
                raise ValueError(f"{planes.subject}: training planes need labels")
            fov = planes.fov if planes.fov is not None else np.ones(planes.images.shape, bool)
            intensity = to_intensity(planes.images, fov)
            for index in np.flatnonzero(fov.any(axis=(1, 2))):
                case = planes.case_id(index)
                if case in cases:
                    raise ValueError(f"case {case} is given twice")
                label = ((planes.labels[index] > 0) & fov[index]).astype(np.uint8)
                _write_plane(
                    tmp / "imagesTr" / f"{case}_0000{FILE_ENDING}", intensity[index], planes.spacing
                )
                _write_plane(tmp / "labelsTr" / f"{case}{FILE_ENDING}", label, planes.spacing)
                cases.add(case)
        if not cases:
            raise ValueError(f"{folder.name}: no plane with a field of view to export")
        write_json(
            tmp / "dataset.json",
            {
                "name": name,
                "channel_names": {"0": "US"},
                "labels": LABELS,
                "numTraining": len(cases),
                "file_ending": FILE_ENDING,
                "overwrite_image_reader_writer": "SimpleITKIO",
            },
        )
    log.info(
        "%s: %d planes of %d subjects", folder.name, len(cases), len({subject_of(c) for c in cases})
    )
    return folder


def plan_and_preprocess(paths: NnunetPaths, dataset_id: int, settings: NnunetSettings) -> Path:
    """Fingerprint, plan (default planner) and preprocess the ``2d`` configuration.

    Uses ``settings.threads`` processes. ``settings.batch_size`` (when set) replaces the
    planned batch size in the plans. Returns the plans file
    ``nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans.json``.
    """
    with nnunet_environment(paths, settings.threads):
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprint_dataset,
            plan_experiment_dataset,
            preprocess_dataset,
        )

        extract_fingerprint_dataset(
            dataset_id,
            num_processes=settings.threads,
            check_dataset_integrity=True,
            clean=True,
            verbose=False,
            show_progress_bar=False,
        )
        _, plans_name = plan_experiment_dataset(
            dataset_id, gpu_memory_target_in_gb=settings.gpu_memory_target_gb
        )
        plans_file = paths.preprocessed / find_dataset(paths, dataset_id) / f"{plans_name}.json"
        plans = json.loads(plans_file.read_text())
        if CONFIGURATION not in plans["configurations"]:
            raise RuntimeError(f"{plans_file}: nnU-Net planned no {CONFIGURATION} configuration")
        if settings.batch_size is not None:
            plans["configurations"][CONFIGURATION]["batch_size"] = settings.batch_size
            write_json(plans_file, plans)
        preprocess_dataset(
            dataset_id,
            plans_name,
            configurations=(CONFIGURATION,),
            num_processes=(settings.threads,),
            show_progress_bar=False,
        )
    configuration = plans["configurations"][CONFIGURATION]
    log.info(
        "%s: 2d patch %s, batch %d",
        plans_file.parent.name,
        configuration["patch_size"],
        configuration["batch_size"],
    )
    return plans_file


def grouped_splits(case_ids: Sequence[str], folds: int, seed: int) -> list[dict[str, list[str]]]:
    """The k folds of cases, grouped by subject: all planes of a subject fall in one fold.

    Subjects are shuffled with ``seed`` and dealt to the folds (:func:`iusynth.core.splits.kfold`);
    fewer subjects than folds is an error.
    """
    by_subject: dict[str, list[str]] = {}
    for case in sorted(case_ids):
        by_subject.setdefault(subject_of(case), []).append(case)
    if len(by_subject) < folds:
        raise ValueError(
            f"{folds} folds need at least {folds} subjects, but the dataset has "
            f"{len(by_subject)}: {sorted(by_subject)}"
        )
    return [
        {part: [c for s in split[part] for c in by_subject[s]] for part in ("train", "val")}
        for split in kfold(list(by_subject), folds, seed)
    ]


def find_dataset(paths: NnunetPaths, dataset_id: int) -> str:
    """The name ``DatasetXXX_Name`` of dataset ``dataset_id`` in any of nnU-Net's folders."""
    prefix = f"Dataset{dataset_id:03d}_"
    names = {
        entry.name
        for root in (paths.raw, paths.preprocessed, paths.results)
        if Path(root).is_dir()
        for entry in Path(root).iterdir()
        if entry.is_dir() and entry.name.startswith(prefix)
    }
    if len(names) != 1:
        found = sorted(names) or "none"
        raise FileNotFoundError(f"need exactly one nnU-Net dataset {prefix}*, found {found}")
    return names.pop()


def write_splits(
    paths: NnunetPaths, dataset_id: int, settings: NnunetSettings, output: Path
) -> Path:
    """Write the folds (:func:`grouped_splits` of the preprocessed cases) to ``output``.

    nnU-Net's own format (a list of ``{"train": [...], "val": [...]}``). Written once,
    by its own job, after :func:`plan_and_preprocess` and before any fold trains; the
    trainer reads this file (:func:`trainer_class`) rather than looking for
    ``splits_final.json`` in the preprocessed folder, which a trainer would otherwise
    create (ungrouped) and parallel folds would race on.
    """
    with nnunet_environment(paths, settings.threads):
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        base = paths.preprocessed / find_dataset(paths, dataset_id)
        plans = json.loads((base / f"{PLANS}.json").read_text())
        data = base / plans["configurations"][CONFIGURATION]["data_identifier"]
        cases = infer_dataset_class(str(data)).get_identifiers(str(data))
    splits = grouped_splits(cases, settings.folds, settings.seed)
    write_json(output, splits)
    return Path(output)


def read_splits(path: Path, folds: int) -> list[dict[str, list[str]]]:
    """The folds of :func:`write_splits`, checked against the configured number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run write_splits (rule nnunet_splits) first")
    splits = json.loads(path.read_text())
    if len(splits) != folds:
        raise ValueError(
            f"{path} has {len(splits)} folds, not {folds}: re-run write_splits (nnunet_splits)"
        )
    return splits


def trainer_class(settings: NnunetSettings, splits_file: Path) -> type:
    """nnU-Net's trainer with epochs, iterations and learning rate from ``settings``.

    A subclass of ``nnUNetTrainer`` named ``IusynthTrainer`` (so its models live in
    ``IusynthTrainer__nnUNetPlans__2d``), holding ``settings`` and ``splits_file`` (from
    :func:`write_splits`) as class attributes; its folds come from that file.
    """
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class IusynthTrainer(nnUNetTrainer):
        """nnU-Net's default trainer with the workflow's schedule."""

        def __init__(
            self,
            plans: dict,
            configuration: str,
            fold: int,
            dataset_json: dict,
            device: torch.device | None = None,
        ) -> None:
            # nnUNetTrainer records its __init__ arguments by name for checkpoints
            super().__init__(
                plans,
                configuration,
                fold,
                dataset_json,
                device or select_device(self.settings.device),
            )
            self.num_epochs = self.settings.epochs
            self.num_iterations_per_epoch = self.settings.iterations_per_epoch
            self.num_val_iterations_per_epoch = self.settings.val_iterations_per_epoch
            self.initial_lr = self.settings.initial_lr

        def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
            """nnU-Net's resume, reading the file weights-only (nnU-Net unpickles anything)."""
            if isinstance(filename_or_checkpoint, str):
                filename_or_checkpoint = load_torch(
                    filename_or_checkpoint,
                    "rule segmenter_train",
                    map_location=self.device,
                    numpy_scalars=True,
                )
            super().load_checkpoint(filename_or_checkpoint)

        def do_split(self) -> tuple[list[str], list[str]]:
            """Training and validation cases of this fold, from the workflow's splits file."""
            fold = read_splits(self.splits_file, self.settings.folds)[self.fold]
            self.print_to_log_file(f"fold {self.fold} from {self.splits_file}")
            return fold["train"], fold["val"]

    IusynthTrainer.settings = settings
    IusynthTrainer.splits_file = Path(splits_file)
    return IusynthTrainer


def model_folder(paths: NnunetPaths, dataset_id: int) -> Path:
    """``nnUNet_results/DatasetXXX_Name/IusynthTrainer__nnUNetPlans__2d``."""
    return (
        paths.results
        / find_dataset(paths, dataset_id)
        / f"{TRAINER_NAME}__{PLANS}__{CONFIGURATION}"
    )


def fold_digest(
    paths: NnunetPaths, dataset_id: int, fold: int, settings: NnunetSettings, splits_file: Path
) -> str:
    """SHA-256 of what decides a fold's training: settings, fold, splits, planes and plans.

    The planes are the raw dataset's files (images, labels, ``dataset.json``), each by
    name and content; the preprocessed data derive from them and the plans.
    """
    name = find_dataset(paths, dataset_id)
    digest = hashlib.sha256()
    digest.update(f"{to_json(settings)}\nfold {fold}\n".encode())
    digest.update(Path(splits_file).read_bytes())
    digest.update((paths.preprocessed / name / f"{PLANS}.json").read_bytes())
    raw = paths.raw / name
    for path in sorted(p for p in raw.rglob("*") if p.is_file()):
        digest.update(f"\n{path.relative_to(raw)}\n".encode())
        with open(path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def bind_checkpoint(latest: Path, digest: str) -> bool:
    """Keep nnU-Net's ``checkpoint_latest.pth`` only if it was trained for ``digest``.

    The digest of the run that writes it is recorded beside it (``data_digest.txt``). One
    of another digest (other planes, folds or settings), of none, or that cannot be read
    (killed while nnU-Net saved it) is set aside; returns whether ``latest`` may be resumed.
    """
    record = latest.with_name("data_digest.txt")
    recorded = record.read_text().strip() if record.is_file() else ""
    if latest.is_file():
        label = recorded[:12] or "undigested"
        if recorded != digest:
            set_aside(
                latest,
                label,
                f"was trained on other planes, folds or settings (digest {label}, this run "
                f"{digest[:12]})",
            )
        else:
            load_checkpoint_or_set_aside(latest, "rule segmenter_train", numpy_scalars=True)
    if recorded != digest:
        latest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(record) as tmp:
            tmp.write_text(digest + "\n")
    return latest.is_file()


def train_fold(
    paths: NnunetPaths,
    dataset_id: int,
    fold: int,
    settings: NnunetSettings,
    splits_file: Path,
) -> Path:
    """Train one fold; returns ``<model folder>/fold_<fold>/checkpoint_final.pth``.

    Needs the folds of :func:`write_splits` (``splits_file``). An interrupted run
    resumes from the fold's ``checkpoint_latest.pth`` (written every 50 epochs) if it was
    trained on the same data (:func:`bind_checkpoint`); one trainer at a time per fold. With
    ``settings.validate`` nnU-Net then predicts the fold's validation planes and writes
    ``fold_<fold>/validation/summary.json`` (Dice per 2D plane, not the paper's metric).
    """
    if not 0 <= fold < settings.folds:
        raise ValueError(f"fold {fold} is not one of the {settings.folds} folds")
    with nnunet_environment(paths, settings.threads):
        base = paths.preprocessed / find_dataset(paths, dataset_id)
        read_splits(splits_file, settings.folds)
        plans = json.loads((base / f"{PLANS}.json").read_text())
        latest = model_folder(paths, dataset_id) / f"fold_{fold}" / "checkpoint_latest.pth"
        with exclusive_lock(latest, "nnU-Net fold checkpoint"):
            digest = fold_digest(paths, dataset_id, fold, settings, splits_file)
            resume = bind_checkpoint(latest, digest)
            plans["continue_training"] = resume
            trainer = trainer_class(settings, splits_file)(
                plans=plans,
                configuration=CONFIGURATION,
                fold=fold,
                dataset_json=json.loads((base / "dataset.json").read_text()),
                device=select_device(settings.device),
            )
            if resume:
                log.info("resuming fold %d from %s (digest %s)", fold, latest, digest[:12])
                trainer.load_checkpoint(str(latest))
            trainer.run_training()
            if settings.validate:
                trainer.perform_actual_validation()
    return Path(trainer.output_folder) / "checkpoint_final.pth"


class NnunetSegmenter:
    """nnU-Net v2 (2D) as a :class:`~iusynth.experiments.segmentation.segmenter.Segmenter`.

    Under its folder: ``data/raw`` and ``data/preprocessed`` (one dataset, made by
    :meth:`prepare`) and ``models`` (nnU-Net's results folder, where the folds train).
    """

    def __init__(self, settings: NnunetSettings) -> None:
        self.settings = settings

    @staticmethod
    def paths(folder: Path) -> NnunetPaths:
        """nnU-Net's three folders under ``folder``."""
        data = Path(folder) / DATA
        return NnunetPaths(data / "raw", data / "preprocessed", Path(folder) / "models")

    def prepare(self, folder: Path, training: Iterable[SubjectPlanes]) -> None:
        """Export the planes as a raw dataset; fingerprint, plan and preprocess it."""
        paths = self.paths(folder)
        export_dataset(paths.raw, DATASET_ID, DATASET_NAME, training)
        plan_and_preprocess(paths, DATASET_ID, self.settings)

    def write_splits(self, folder: Path, output: Path) -> None:
        """The folds of the preprocessed cases, grouped by subject (:func:`write_splits`)."""
        write_splits(self.paths(folder), DATASET_ID, self.settings, output)

    def train(self, folder: Path, fold: int, splits: Path) -> Path:
        """Train one fold (:func:`train_fold`); its ``checkpoint_final.pth``."""
        return train_fold(self.paths(folder), DATASET_ID, fold, self.settings, splits)

    def predict(
        self, folder: Path, folds: Sequence[int], subjects: Iterable[SubjectPlanes]
    ) -> dict[str, np.ndarray]:
        """The ensemble of ``folds`` (:func:`nnunet_prediction.predict_cases`)."""
        from iusynth.experiments.segmentation import nnunet_prediction

        return nnunet_prediction.predict_cases(
            self.paths(folder), DATASET_ID, subjects, self.settings, folds
        )
