"""Direct vs synthesis-assisted iUS <-> MR registration from simulated displacements (TRE).

The MMHVAE paper's registration experiment (its Table 3): for each evaluation subject with
landmarks and each MR sequence it has, the ground-truth alignment is the least-squares
rigid fit of the landmark pairs (Kabsch); seeded random rigid perturbations of it, binned
by the mean landmark displacement they cause, are the starting points; from each,
``reg_aladin`` registers

- *direct* (multi-modal): the raw iUS (reference, restricted to its eroded sector and
  smoothed against speckle, as :func:`iusynth.preprocessing.registration.register_us_to_mr` does) to
  the raw MR sequence (floating);
- *synthesis* (mono-modal): a volume of that MR sequence synthesised from the iUS by the
  trained MMHVAE (reference, in the iUS's preprocessed grid, restricted to the eroded iUS
  field of view) to the same raw MR sequence.

The target registration error (TRE) is the mean distance between the iUS landmarks mapped
through a transform and their MR counterparts.

Why ``reg_aladin`` for both: the experiment is rigid, and NiftyReg's rigid/affine tool is
``reg_aladin``, whose block matching scores blocks by normalised cross-correlation
(robust to an affine intensity relation within each block, which is what makes the
direct multi-modal case workable at all). NiftyReg's NMI and LNCC similarity measures
belong to ``reg_f3d``, its non-rigid registration, and are not offered here. Both methods
thus differ only in their reference image, and the comparison isolates what synthesis
brings.

Conventions (as in :mod:`iusynth.preprocessing.registration`): transforms are 4x4
matrices on RAS world millimetres; ``reg_aladin`` returns reference world -> floating
world, and its ``-inaff`` initial transform has the same meaning (NiftyReg: ``Affine *
Reference = Floating``). With the iUS side as the reference, every transform here maps
iUS world -> MR sequence world.
A perturbation ``D`` acts on iUS world points; the start is ``T0 @ D``.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from iusynth.core import modalities
from iusynth.core.fileio import atomic_path, save_nifti
from iusynth.core.geometry import apply_transform, rigid_transform, rotation_matrix, unit
from iusynth.core.subject import SubjectRecord, check_header
from iusynth.experiments.registration_tre.settings import METHODS, ExperimentSettings
from iusynth.preprocessing.pipeline import (
    Grid,
    read_alignment_record,
    resample,
    ultrasound_fov,
)
from iusynth.preprocessing.registration import (
    reg_aladin,
    sector_mask,
)

MIN_LANDMARKS = 3
CASE_COLUMNS: tuple[str, ...] = (
    "subject",
    "sequence",
    "method",
    "bin",
    "bin_low_mm",
    "bin_high_mm",
    "repeat",
    "rotation_deg",
    "translation_mm",
    "displacement_mm",
    "ground_truth_tre_mm",
    "initial_tre_mm",
    "final_tre_mm",
    "final_tre_max_mm",
    "landmarks",
    "seconds",
)


@dataclass(frozen=True)
class Displacement:
    """A simulated rigid perturbation ``D`` of iUS world points and what it does."""

    matrix: np.ndarray
    rotation_deg: float
    translation_mm: float
    displacement_mm: float
    bin_low_mm: float
    bin_high_mm: float
    repeat: int

    @property
    def bin_label(self) -> str:
        """The bin as text, e.g. ``8-12`` for [8, 12) mm."""
        return bin_label(self.bin_low_mm, self.bin_high_mm)

    def as_row(self) -> dict[str, Any]:
        """Its columns of a case row (:data:`CASE_COLUMNS`)."""
        return {
            "bin": self.bin_label,
            "bin_low_mm": self.bin_low_mm,
            "bin_high_mm": self.bin_high_mm,
            "repeat": self.repeat,
            "rotation_deg": self.rotation_deg,
            "translation_mm": self.translation_mm,
            "displacement_mm": self.displacement_mm,
        }


def bin_label(low: float, high: float) -> str:
    """A displacement bin as text, e.g. ``8-12`` for [8, 12) mm."""
    return f"{low:g}-{high:g}"


# --- landmarks, rigid fit and TRE ------------------------------------------------------


def rigid_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares rigid map of ``source`` points onto ``target`` points (Kabsch), 4x4.

    Needs at least three pairs not on one line; raises ``ValueError`` otherwise.
    """
    source = np.asarray(source, dtype=float)
    target = np.asarray(target, dtype=float)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3:
        raise ValueError(
            f"rigid fit: expected two N x 3 arrays, got {source.shape} and {target.shape}"
        )
    if len(source) < MIN_LANDMARKS:
        raise ValueError(f"rigid fit: {len(source)} point pairs, at least {MIN_LANDMARKS} needed")
    source_centre, target_centre = source.mean(axis=0), target.mean(axis=0)
    centred = source - source_centre
    if np.linalg.matrix_rank(centred, tol=1e-6 * max(1.0, np.abs(centred).max())) < 2:
        raise ValueError("rigid fit: the points lie on one line, the rotation is undetermined")
    u, _, vt = np.linalg.svd(centred.T @ (target - target_centre))
    flip = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rotation = vt.T @ np.diag([1.0, 1.0, flip]) @ u.T
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = target_centre - rotation @ source_centre
    return matrix


def target_registration_errors(
    us_to_mr: np.ndarray, us_points: np.ndarray, mr_points: np.ndarray
) -> np.ndarray:
    """Per landmark, ``|| us_to_mr(us_point) - mr_point ||`` in mm."""
    return np.linalg.norm(apply_transform(us_to_mr, us_points) - np.asarray(mr_points), axis=1)


def tre(us_to_mr: np.ndarray, us_points: np.ndarray, mr_points: np.ndarray) -> float:
    """The target registration error: the mean landmark distance after mapping, in mm."""
    return float(target_registration_errors(us_to_mr, us_points, mr_points).mean())


def sequence_landmarks(
    record: SubjectRecord, reference: str, mr_alignment: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The iUS landmarks and, per MR sequence of the subject, the MR landmarks in its world.

    The MR points are placed on :meth:`SubjectRecord.annotation_sequence`; they reach
    another sequence's world through the reference:
    ``alignment[seq] @ inv(alignment[annotated])``.
    """
    pairs = record.landmarks()
    if len(pairs.labels) < MIN_LANDMARKS:
        raise ValueError(
            f"{record.path('landmarks')}: {len(pairs.labels)} landmark pairs, at least "
            f"{MIN_LANDMARKS} are needed for the rigid ground-truth fit"
        )
    annotated = record.annotation_sequence(reference)
    identity = np.eye(4)
    to_reference = np.linalg.inv(mr_alignment.get(annotated, identity))
    mr_points = {
        sequence: apply_transform(mr_alignment.get(sequence, identity) @ to_reference, pairs.first)
        for sequence in record.mr_sequences
    }
    return pairs.second, mr_points


def ground_truth(us_points: np.ndarray, mr_points: np.ndarray, source: Path) -> np.ndarray:
    """The ground-truth iUS -> MR map: the landmarks' rigid fit (errors name ``source``)."""
    try:
        return rigid_fit(us_points, mr_points)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error


# --- simulated displacements -----------------------------------------------------------


def simulate_displacement(
    us_points: np.ndarray,
    low_mm: float,
    high_mm: float,
    max_rotation_deg: float,
    rng: np.random.Generator,
    repeat: int = 0,
) -> Displacement:
    """A random rigid perturbation whose mean landmark displacement lies in [low, high) mm.

    The target mean displacement is drawn uniformly in the bin. The rotation is about the
    centroid of the iUS landmarks, about a random axis, by an angle drawn uniformly up to
    ``max_rotation_deg`` (capped so the rotation alone does not displace the landmarks by
    more than the target: small bins get small rotations); a translation in a random
    direction then brings the mean displacement to the target (its length solved by root
    finding: the mean is continuous in it and passes the target).
    """
    points = np.asarray(us_points, dtype=float)
    centre = points.mean(axis=0)
    target = float(rng.uniform(low_mm, high_mm))
    axis = unit(rng.normal(size=3))
    direction = unit(rng.normal(size=3))
    # rotation alone moves a point at distance r from the axis by 2 r sin(angle / 2)
    offsets = points - centre
    radius = np.linalg.norm(offsets - np.outer(offsets @ axis, axis), axis=1).mean()
    cap = np.pi if radius <= target / 2 else 2 * np.arcsin(target / (2 * radius))
    angle = float(rng.uniform(0.0, min(np.deg2rad(max_rotation_deg), cap)))
    rotation = rotation_matrix(axis, angle)
    moved = offsets @ (rotation - np.eye(3)).T

    def excess(length: float) -> float:
        return float(np.linalg.norm(moved + length * direction, axis=1).mean()) - target

    # excess(0) <= 0 by the cap, and excess(2 * target) >= 0 by the triangle inequality
    length = 0.0 if excess(0.0) >= 0 else optimize.brentq(excess, 0.0, 2 * target + 1e-9)
    matrix = rigid_transform(rotation, length * direction, centre)
    return Displacement(
        matrix=matrix,
        rotation_deg=float(np.rad2deg(angle)),
        translation_mm=float(length),
        displacement_mm=float(
            np.linalg.norm(apply_transform(matrix, points) - points, axis=1).mean()
        ),
        bin_low_mm=float(low_mm),
        bin_high_mm=float(high_mm),
        repeat=repeat,
    )


def simulate_displacements(
    us_points: np.ndarray, settings: ExperimentSettings, subject: str
) -> list[Displacement]:
    """``per_bin`` perturbations per bin, seeded by (seed, subject, bin, repeat): reproducible.

    The same perturbations serve every sequence and method of the subject.
    """
    subject_key = zlib.crc32(subject.encode())
    displacements = []
    for index, (low, high) in enumerate(settings.bins):
        for repeat in range(settings.per_bin):
            rng = np.random.default_rng([settings.seed, subject_key, index, repeat])
            displacements.append(
                simulate_displacement(
                    us_points, low, high, settings.max_rotation_deg, rng, repeat=repeat
                )
            )
    return displacements


# --- registration ----------------------------------------------------------------------


def fov_mask_in_grid(
    us_image: Any, us_path: Path, affine: np.ndarray, shape: tuple[int, ...], erosion_mm: float
) -> np.ndarray:
    """The iUS field of view (filled sector) resampled into another iUS-world grid, eroded."""
    native = ultrasound_fov(np.asarray(us_image.dataobj))
    grid = Grid(np.asarray(affine, dtype=float), tuple(int(n) for n in shape[:3]))
    mask = resample(native, us_image.affine, grid, np.eye(4), order=1) > 0.5
    if erosion_mm > 0:
        spacing = np.linalg.norm(grid.affine[:3, :3], axis=0)
        mask = ndimage.distance_transform_edt(mask, sampling=spacing) > erosion_mm
    if not mask.any():
        raise ValueError(
            f"iUS image {us_path}: its field of view leaves no voxel in the synthetic volume's "
            f"grid after a {erosion_mm} mm erosion"
        )
    return mask


# --- synthetic volumes -----------------------------------------------------------------


def synthesise_volumes(
    model_path: Path,
    stack_dir: Path,
    outputs: Mapping[str, Path],
    temperature: float,
    device: str = "auto",
    batch_slices: int = 16,
    seed: int = 0,
) -> None:
    """Synthesise MR sequences from a subject's iUS slices; write each as a 3D NIfTI.

    Every slice of the stack (``results/slices/<cohort>/<subject>``) goes once through the
    trained model (``model.pt``) with the iUS as the only input, at ``temperature`` (0: the
    deterministic mean); the model gives every sequence from that one pass. Each sequence
    of ``outputs`` (sequence -> NIfTI path) is written atomically as uint8 0..255 in the
    stack's grid (meta.json's ``grid_affine``), 0 outside the iUS field of view.
    """
    import torch

    from iusynth.preprocessing.slices import load_slices
    from iusynth.synthesis.synthesizers import load_synthesizer, synthesise_stack

    stack_dir = Path(stack_dir)
    stack = load_slices(stack_dir)
    meta = stack.meta
    if "US" not in stack.acquired:
        raise ValueError(f"slice stack {stack_dir} has no iUS: nothing to synthesise from")
    if "grid_shape" not in meta or "grid_affine" not in meta:
        raise ValueError(
            f"{stack_dir}/meta.json has no grid_shape / grid_affine: re-run export_slices"
        )
    synthesizer = load_synthesizer([Path(model_path)], device)
    given = synthesizer.targets(("US",))
    missing = [sequence for sequence in outputs if sequence not in given]
    if missing:
        raise ValueError(
            f"model {model_path} does not synthesise {missing} from the iUS alone "
            f"(it gives {list(given)})"
        )
    torch.manual_seed(seed)
    positions = np.arange(stack.images.shape[0])
    synthesised = synthesise_stack(
        synthesizer, stack, ("US",), temperature, 1, positions, batch_slices
    )
    indices = np.asarray(meta["slice_indices"])
    affine = np.asarray(meta["grid_affine"])
    fov = np.zeros(tuple(meta["grid_shape"]), bool)
    fov[:, :, indices] = np.moveaxis(np.asarray(stack.fov, bool), 0, 2)
    for sequence, output in outputs.items():
        volume = np.zeros(fov.shape, np.uint8)
        volume[:, :, indices] = np.moveaxis(synthesised[sequence][0], 0, 2)
        save_nifti(output, np.where(fov, volume, 0).astype(np.uint8), affine)


# --- the experiment --------------------------------------------------------------------


def _experiment_sequences(
    record: SubjectRecord, settings: ExperimentSettings, synthetic: Mapping[str, Path]
) -> list[str]:
    """The subject's sequences among ``settings.sequences`` (their synthetic volumes present)."""
    subject = record.subject
    sequences = [s for s in settings.sequences if record.has(s)]
    if not sequences:
        raise FileNotFoundError(
            f"subject {subject} has none of the sequences {list(settings.sequences)} in "
            f"{record.folder} (expected e.g. {record.path(settings.sequences[0]).name})"
        )
    if "synthesis" in settings.methods:
        for sequence in sequences:
            path = synthetic.get(sequence)
            if path is None or not Path(path).is_file():
                raise FileNotFoundError(
                    f"subject {subject}: no synthetic {sequence} volume "
                    f"({path or 'none given'}); run synthesise_volumes for it first"
                )
    return sequences


def _reference_images(
    record: SubjectRecord,
    sequences: list[str],
    synthetic: Mapping[str, Path],
    settings: ExperimentSettings,
    workdir: Path,
) -> dict[tuple[str, str], tuple[Path, Path]]:
    """Per (sequence, method), the reference image and its eroded sector mask."""
    us_path, us_image = record.path("US"), record.ultrasound()
    erosion = settings.registration.mask_erosion_mm
    references: dict[tuple[str, str], tuple[Path, Path]] = {}
    if "direct" in settings.methods:
        mask_path = workdir / "us_sector_mask.nii.gz"
        save_nifti(mask_path, sector_mask(us_image, us_path, erosion).astype(np.uint8),
                   us_image.affine)  # fmt: skip
        references |= {(s, "direct"): (us_path, mask_path) for s in sequences}
    if "synthesis" in settings.methods:
        masks: dict[tuple[tuple[int, ...], bytes], Path] = {}  # one per synthetic grid
        for sequence in sequences:
            volume_path = Path(synthetic[sequence])
            volume = check_header(volume_path)
            grid = (tuple(volume.shape), np.asarray(volume.affine).tobytes())
            if grid not in masks:
                mask = fov_mask_in_grid(us_image, us_path, volume.affine, volume.shape, erosion)
                masks[grid] = workdir / f"synthetic_mask_{len(masks)}.nii.gz"
                save_nifti(masks[grid], mask.astype(np.uint8), volume.affine)
            references[(sequence, "synthesis")] = (volume_path, masks[grid])
    return references


def run_subject(
    record: SubjectRecord,
    alignment_path: Path,
    synthetic: Mapping[str, Path],
    settings: ExperimentSettings,
) -> Any:
    """Run the experiment on one subject: a pandas DataFrame, one row per registration.

    Reads the subject's iUS, MR sequences and landmarks from ``record``, the MR -> MR
    alignment record (JSON of the align-mr stage) and, for the synthesis method, the
    synthetic volume of each sequence (``synthetic[seq]``, from :func:`synthesise_volumes`).
    Rows (:data:`CASE_COLUMNS`): per sequence the subject has among ``settings.sequences``,
    method, bin and repeat, the perturbation, the TRE of the ground truth (the landmark
    fit's residual), before and after registration, and ``reg_aladin``'s seconds. Both
    methods start from the same perturbations. Writes nothing.
    """
    import pandas as pd

    subject = record.subject
    reference, mr_alignment = read_alignment_record(alignment_path, subject)
    sequences = _experiment_sequences(record, settings, synthetic)
    us_points, mr_points = sequence_landmarks(record, reference, mr_alignment)
    landmark_path = record.path("landmarks")
    displacements = simulate_displacements(us_points, settings, subject)
    rows = []
    with tempfile.TemporaryDirectory(prefix="registration_experiment.") as workdir:
        references = _reference_images(record, sequences, synthetic, settings, Path(workdir))
        for sequence in sequences:
            mr_path = record.path(sequence)
            record.image(sequence)  # its header is checked
            truth = ground_truth(us_points, mr_points[sequence], landmark_path)
            case = {"subject": subject, "sequence": sequence,
                    "ground_truth_tre_mm": tre(truth, us_points, mr_points[sequence])}  # fmt: skip
            for method in settings.methods:
                reference_path, mask_path = references[(sequence, method)]
                options = settings.registration.options(method)
                for displacement in displacements:
                    start = truth @ displacement.matrix
                    result = reg_aladin(reference_path, mr_path, options, mask_path, initial=start)
                    errors = target_registration_errors(
                        result.matrix, us_points, mr_points[sequence]
                    )
                    rows.append(
                        case
                        | displacement.as_row()
                        | {
                            "method": method,
                            "initial_tre_mm": tre(start, us_points, mr_points[sequence]),
                            "final_tre_mm": float(errors.mean()),
                            "final_tre_max_mm": float(errors.max()),
                            "landmarks": len(errors),
                            "seconds": result.seconds,
                        }
                    )
    return pd.DataFrame(rows, columns=list(CASE_COLUMNS))


# --- table and figure ------------------------------------------------------------------


def plot_tre(per_case: Any, output: Path) -> None:
    """Final vs initial TRE, one panel per sequence, both methods: medians with IQR per bin.

    The dashed identity line marks no improvement. Written atomically as an image
    (format from ``output``'s suffix).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sequences = [s for s in modalities.MR_SEQUENCES if s in set(per_case["sequence"])]
    if not sequences:
        raise ValueError("plot_tre: no rows to plot")
    figure, axes = plt.subplots(1, len(sequences), figsize=(4.2 * len(sequences), 4), squeeze=False)
    limit = float(max(per_case["initial_tre_mm"].max(), per_case["final_tre_mm"].max())) * 1.05
    for axis, sequence in zip(axes[0], sequences, strict=True):
        rows = per_case[per_case["sequence"] == sequence]
        for method, marker in zip(METHODS, ("o", "s"), strict=True):
            chosen = rows[rows["method"] == method]
            if chosen.empty:
                continue
            by_bin = chosen.groupby("bin_low_mm")
            initial = by_bin["initial_tre_mm"].median()
            final = by_bin["final_tre_mm"]
            median = final.median()
            low = median - final.quantile(0.25)
            high = final.quantile(0.75) - median
            axis.errorbar(initial, median, yerr=[low, high], marker=marker, capsize=3, label=method)
        axis.plot([0, limit], [0, limit], "k--", linewidth=0.8, label="no improvement")
        axis.set(
            xlim=(0, limit),
            ylim=(0, limit),
            title=sequence,
            xlabel="initial TRE (mm)",
            ylabel="TRE after registration (mm)",
        )
        axis.set_aspect("equal")
    axes[0][0].legend(loc="upper left")
    figure.tight_layout()
    with atomic_path(output) as tmp:
        figure.savefig(tmp, dpi=120)
    plt.close(figure)
