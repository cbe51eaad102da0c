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


def series_volume(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 3D volume and its RAS affine from one DICOM folder.

    The folder holds either one single-frame series (MR) or one multi-frame image with
    per-frame plane positions (an enhanced MR or a 3D ultrasound volume).
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
    try:
        if len(datasets) == 1 and int(getattr(datasets[0], "NumberOfFrames", 1)) > 1:
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
    return data.astype(np.float32), affine


def segmentation_volume(path: Path) -> tuple[np.ndarray, np.ndarray, str | None]:
    """A binary mask (union of the segments) and RAS affine from a DICOM SEG file.

    Also returns the SeriesInstanceUID of the series the segmentation was drawn on.
    """
    import highdicom as hd

    path = Path(path)
    try:
        segmentation = hd.seg.segread(path)
        volume = segmentation.get_volume(combine_segments=True, skip_overlap_checks=True)
    except Exception as error:
        raise DicomConversionError(
            f"{path}: not a usable DICOM SEG ({type(error).__name__}: {error})"
        ) from error
    data, affine = _ras_volume(volume)
    referenced = None
    for item in getattr(segmentation, "ReferencedSeriesSequence", []) or []:
        referenced = str(item.SeriesInstanceUID)
        break
    return (data > 0).astype(np.uint8), affine, referenced


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
