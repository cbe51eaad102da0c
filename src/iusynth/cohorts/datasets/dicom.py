"""DICOM to NIfTI with the geometry kept: MR series, multi-frame iUS volumes, DICOM SEG.

highdicom builds a :class:`highdicom.Volume` (voxel array plus LPS affine) from each
source; the volume is written as NIfTI with its RAS affine. Every failure names the
file or folder and says what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class DicomConversionError(ValueError):
    """A DICOM source that cannot be turned into a 3D volume."""


def _read_datasets(folder: Path) -> list[Any]:
    """Read every DICOM file of a folder (recursively), skipping non-DICOM files."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    datasets = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            datasets.append(pydicom.dcmread(path))
        except InvalidDicomError:
            continue
    if not datasets:
        raise DicomConversionError(f"{folder} holds no DICOM file")
    return datasets


def _ras_volume(volume: Any) -> tuple[np.ndarray, np.ndarray]:
    """The voxel array and RAS affine of a highdicom volume (channel axes squeezed)."""
    if volume.number_of_channel_dimensions:
        volume = volume.squeeze_channel()
    image = volume.to_nibabel()
    return np.asarray(image.dataobj), image.affine


def _grey(volume: Any) -> Any:
    """A single-channel volume from an RGB one (ITU-R BT.601 luma); others unchanged."""
    array = volume.array
    if array.ndim == 4 and array.shape[-1] == 3 and volume.number_of_channel_dimensions == 1:
        luma = array @ np.array([0.299, 0.587, 0.114])
        return volume.with_array(luma, channels={})
    return volume


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
NO_FRAME_OF_REFERENCE = (
    "no FrameOfReferenceUID: the volume was built from the per-frame plane positions and the "
    "shared orientation and pixel spacing of its functional groups"
)


def _frame_attribute(ds: Any, frame: int, sequence: str, attribute: str) -> Any:
    """An attribute of a frame's functional group: its per-frame item, else the shared one."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        items = group.get(sequence)
        if items and attribute in items[0]:
            return items[0][attribute].value
    raise DicomConversionError(
        f"frame {frame + 1} has no {sequence} > {attribute} in its functional groups"
    )


def _frame_planes(ds: Any, frames: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """The frames' shared orientation (6 cosines), their positions and the pixel spacing."""
    orientations = np.array(
        [
            _frame_attribute(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient")
            for i in range(frames)
        ],
        dtype=float,
    )
    if not np.allclose(orientations, orientations[0], atol=1e-4):
        raise DicomConversionError("its frames do not share one plane orientation")
    spacing = [float(v) for v in _frame_attribute(ds, 0, "PixelMeasuresSequence", "PixelSpacing")]
    positions = np.array(
        [
            _frame_attribute(ds, i, "PlanePositionSequence", "ImagePositionPatient")
            for i in range(frames)
        ],
        dtype=float,
    )
    return orientations[0], positions, spacing


def _stack_indices(
    ds: Any, positions: np.ndarray, normal: np.ndarray, combine: bool
) -> tuple[np.ndarray, int, np.ndarray, int]:
    """Each frame's plane along the stack, the plane count, the slice vector, the first frame.

    Frames must lie on one line of equally spaced planes; ``combine`` allows repeated and
    missing planes.
    """
    frames = len(positions)
    depth = positions @ normal
    first = int(np.argmin(depth))
    planes = np.unique(np.round(depth - depth[first], 3))
    if len(planes) < 2:
        raise DicomConversionError("all its frames lie in one plane: it is not a 3D volume")
    step = float(np.min(np.diff(planes)))
    try:
        step = float(_frame_attribute(ds, 0, "PixelMeasuresSequence", "SpacingBetweenSlices"))
    except DicomConversionError:
        pass
    index = (depth - depth[first]) / step
    if not np.allclose(index, np.round(index), atol=0.01):
        raise DicomConversionError(
            f"its frames are not equally spaced along the stack (spacing {step:.4f} mm)"
        )
    index = np.round(index).astype(int)
    count = int(index.max()) + 1
    if not combine and (len(set(index.tolist())) != frames or count != frames):
        raise DicomConversionError(
            "its frames do not fill one regular stack (repeated or missing planes)"
        )
    last = int(np.argmax(depth))
    slice_vector = (positions[last] - positions[first]) / max(int(index[last]), 1)
    expected = positions[first] + index[:, None] * slice_vector
    if not np.allclose(positions, expected, atol=0.01):
        raise DicomConversionError("its frame positions do not lie on one line")
    return index, count, slice_vector, first


def frames_volume(ds: Any, *, combine: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A 3D volume and RAS affine from a multi-frame object's functional groups alone.

    Needs, per frame (per-frame or shared groups), the plane position, the plane
    orientation and the pixel spacing; no frame of reference. Frames are placed along the
    stack by their positions: all must share one orientation and lie on one line of
    equally spaced planes. ``combine`` (segmentations) ORs frames that share a plane
    (several segments) and allows planes without a frame (left empty).
    """
    frames = int(getattr(ds, "NumberOfFrames", 1))
    pixels = np.asarray(ds.pixel_array)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or pixels.shape[0] != frames:
        raise DicomConversionError(
            f"pixel data of shape {pixels.shape} is not {frames} grayscale frames"
        )
    orientation, positions, spacing = _frame_planes(ds, frames)
    row_cosines, column_cosines = orientation[:3], orientation[3:]
    normal = np.cross(row_cosines, column_cosines)
    index, count, slice_vector, first = _stack_indices(ds, positions, normal, combine)
    data = np.zeros((pixels.shape[2], pixels.shape[1], count), dtype=pixels.dtype)
    for frame, plane in enumerate(index):
        if combine:
            data[:, :, plane] = np.maximum(data[:, :, plane], pixels[frame].T)
        else:
            data[:, :, plane] = pixels[frame].T
    affine = np.eye(4)
    affine[:3, 0] = row_cosines * spacing[1]  # along a row: the column spacing
    affine[:3, 1] = column_cosines * spacing[0]
    affine[:3, 2] = slice_vector
    affine[:3, 3] = positions[first]
    return data, LPS_TO_RAS @ affine


def series_volume(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A 3D volume, its RAS affine and notes on how it was built, from one DICOM folder.

    The folder holds either one single-frame series (MR) or one multi-frame image with
    per-frame plane positions: an enhanced MR, an enhanced US volume, or ReMIND's iUS,
    a Multi-frame Grayscale Byte Secondary Capture with its geometry in functional groups.
    A multi-frame image without FrameOfReferenceUID is built from its functional groups
    (:func:`frames_volume`), and the notes say so.
    """
    import highdicom as hd

    folder = Path(folder)
    datasets = _read_datasets(folder)
    series = {str(ds.SeriesInstanceUID) for ds in datasets}
    if len(series) != 1:
        raise DicomConversionError(
            f"{folder} mixes {len(series)} series ({sorted(series)}); one series per folder "
            "is expected"
        )
    notes: list[str] = []
    multi_frame = len(datasets) == 1 and int(getattr(datasets[0], "NumberOfFrames", 1)) > 1
    if multi_frame and "FrameOfReferenceUID" not in datasets[0]:
        try:
            data, affine = frames_volume(datasets[0])
        except DicomConversionError as error:
            raise DicomConversionError(
                f"{folder}: no FrameOfReferenceUID, and the functional groups do not give "
                f"a 3D volume either: {error}"
            ) from error
        notes.append(NO_FRAME_OF_REFERENCE)
    else:
        try:
            if multi_frame:
                image = hd.Image.from_dataset(datasets[0], copy=False)
                volume = image.get_volume(dtype=np.float32)
            else:
                volume = hd.get_volume_from_series(datasets, dtype=np.float32)
        except Exception as error:  # highdicom raises several types for unusable geometry
            raise DicomConversionError(
                f"{folder}: cannot build a 3D volume ({type(error).__name__}: {error}); "
                "the series may be 2D, a localiser, or lack plane positions"
            ) from error
        data, affine = _ras_volume(_grey(volume))
    if data.ndim != 3 or min(data.shape) < 2:
        raise DicomConversionError(f"{folder}: the series is not a 3D volume (shape {data.shape})")
    return data.astype(np.float32), affine, notes


def segmentation_volume(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A binary mask (union of the segments) and RAS affine from a DICOM SEG file.

    Also returns notes on how it was read. ReMIND's SEGs reference no source series (their
    description names the MR they were drawn on); their geometry is their own.
    """
    import highdicom as hd
    import pydicom

    path = Path(path)
    notes: list[str] = []
    try:
        segmentation = hd.seg.segread(path)
        volume = segmentation.get_volume(combine_segments=True, skip_overlap_checks=True)
        data, affine = _ras_volume(volume)
    except Exception as error:
        try:
            data, affine = frames_volume(pydicom.dcmread(path), combine=True)
        except Exception as fallback:
            raise DicomConversionError(
                f"{path}: not a usable DICOM SEG ({type(error).__name__}: {error}; from its "
                f"functional groups: {fallback})"
            ) from error
        notes.append(
            f"highdicom could not read it ({type(error).__name__}: {error}); the mask was "
            "built from the per-frame plane positions of its functional groups"
        )
    return (data > 0).astype(np.uint8), affine, notes


def compact(data: np.ndarray) -> np.ndarray:
    """The smallest integer type that holds integer-valued data exactly, else float32."""
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        return data.astype(np.float32)
    for dtype in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if data.min() >= info.min and data.max() <= info.max:
            return data.astype(dtype)
    return data.astype(np.float32)


def voxel_volume_mm3(affine: np.ndarray) -> float:
    """The volume of one voxel (mm^3) of an affine."""
    return float(abs(np.linalg.det(np.asarray(affine)[:3, :3])))
