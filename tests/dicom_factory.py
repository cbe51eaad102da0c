"""Small DICOM objects with known geometry, made with pydicom and highdicom, for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_US_VOLUME = "1.2.840.10008.5.1.4.1.1.6.2"
MULTIFRAME_GRAYSCALE_BYTE_SC = "1.2.840.10008.5.1.4.1.1.7.2"


def _base(
    sop_class: str, modality: str, patient: str, series_uid: str, frame_of_reference: str
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = patient
    ds.PatientName = f"{patient}^Test"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_of_reference
    ds.StudyDate = "20200101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.Manufacturer = "test"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def lps_affine(
    orientation: np.ndarray, spacing: tuple[float, float, float], origin: np.ndarray
) -> np.ndarray:
    """Voxel (column, row, slice) -> LPS affine from row/column cosines, spacing and origin."""
    row_cos, col_cos = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row_cos, col_cos)
    affine = np.eye(4)
    affine[:3, 0] = row_cos * spacing[0]
    affine[:3, 1] = col_cos * spacing[1]
    affine[:3, 2] = normal * spacing[2]
    affine[:3, 3] = origin
    return affine


def mr_series(
    volume: np.ndarray,
    orientation: np.ndarray,
    spacing: tuple[float, float, float],
    origin: np.ndarray,
    *,
    patient: str = "P1",
    description: str = "3D_AX_T2_SPACE",
    frame_of_reference: str | None = None,
) -> list[Dataset]:
    """One single-frame MR dataset per slice of ``volume`` (columns, rows, slices)."""
    series_uid = generate_uid()
    frame_of_reference = frame_of_reference or generate_uid()
    affine = lps_affine(orientation, spacing, origin)
    study_uid = generate_uid()
    datasets = []
    for k in range(volume.shape[2]):
        ds = _base(MR_STORAGE, "MR", patient, series_uid, frame_of_reference)
        ds.StudyInstanceUID = study_uid
        ds.SeriesDescription = description
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.ImagePositionPatient = [float(v) for v in affine[:3, :3] @ [0, 0, k] + affine[:3, 3]]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # row spacing, column spacing
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T.astype(np.uint16)).tobytes()
        datasets.append(ds)
    return datasets


def us_volume(
    volume: np.ndarray,
    orientation: np.ndarray,
    spacing: tuple[float, float, float],
    origin: np.ndarray,
    *,
    patient: str = "P1",
    description: str = "US_pre_dura",
) -> Dataset:
    """One multi-frame enhanced US volume with per-frame plane positions (8-bit)."""
    affine = lps_affine(orientation, spacing, origin)
    ds = _base(ENHANCED_US_VOLUME, "US", patient, generate_uid(), generate_uid())
    ds.SeriesDescription = description
    ds.InstanceNumber = 1
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
    ds.NumberOfFrames = volume.shape[2]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.ContentDate = "20200101"
    ds.ContentTime = "120000"
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [float(spacing[1]), float(spacing[0])]
    measures.SliceThickness = float(spacing[2])
    measures.SpacingBetweenSlices = float(spacing[2])
    shared.PixelMeasuresSequence = Sequence([measures])
    plane = Dataset()
    plane.ImageOrientationPatient = [float(v) for v in orientation]
    shared.PlaneOrientationSequence = Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(volume.shape[2]):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [
            float(v) for v in affine[:3, :3] @ [0, 0, k] + affine[:3, 3]
        ]
        item.PlanePositionSequence = Sequence([position])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    pixels = np.ascontiguousarray(np.transpose(volume, (2, 1, 0)).astype(np.uint8))
    ds.PixelData = pixels.tobytes()
    return ds


def us_secondary_capture(
    volume: np.ndarray,
    orientation: np.ndarray,
    spacing: tuple[float, float, float],
    origin: np.ndarray,
    *,
    patient: str = "P1",
    description: str = "US_pre_dura",
    frame_of_reference: str | None = "generate",
    frame_order: list[int] | None = None,
) -> Dataset:
    """A 3D iUS as ReMIND publishes it: Multi-frame Grayscale Byte Secondary Capture.

    Written as PixelMed's NRRDToDicom does: 8-bit frames, pixel spacing and orientation in
    the shared functional groups, one plane position per frame in the per-frame groups,
    and no Image Position / Orientation at the top level. ``frame_of_reference=None``
    leaves FrameOfReferenceUID out; ``frame_order`` stores the slices in another order.
    """
    affine = lps_affine(orientation, spacing, origin)
    ds = _base(MULTIFRAME_GRAYSCALE_BYTE_SC, "US", patient, generate_uid(), "")
    del ds.FrameOfReferenceUID
    if frame_of_reference is not None:
        ds.FrameOfReferenceUID = (
            generate_uid() if frame_of_reference == "generate" else frame_of_reference
        )
    ds.SeriesDescription = description
    ds.InstanceNumber = 1
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
    ds.NumberOfFrames = volume.shape[2]
    ds.ContentDate = "20200101"
    ds.ContentTime = "120000"
    ds.FrameIncrementPointer = Tag("PerFrameFunctionalGroupsSequence")
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [float(spacing[1]), float(spacing[0])]
    measures.SliceThickness = float(spacing[2])
    shared.PixelMeasuresSequence = Sequence([measures])
    plane = Dataset()
    plane.ImageOrientationPatient = [float(v) for v in orientation]
    shared.PlaneOrientationSequence = Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    order = list(range(volume.shape[2])) if frame_order is None else list(frame_order)
    frames = []
    for k in order:
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [
            float(v) for v in affine[:3, :3] @ [0, 0, k] + affine[:3, 3]
        ]
        item.PlanePositionSequence = Sequence([position])
        content = Dataset()
        content.InStackPositionNumber = k + 1
        item.FrameContentSequence = Sequence([content])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    pixels = np.ascontiguousarray(np.transpose(volume[:, :, order], (2, 1, 0)).astype(np.uint8))
    ds.PixelData = pixels.tobytes()
    return ds


def segmentation(
    source: list[Dataset], mask: np.ndarray, description: str, *, referenced: bool = True
) -> Dataset:
    """A binary DICOM SEG of ``mask`` (same axes as the source volume) drawn on ``source``.

    ``referenced=False`` drops the references to the source series and images, as in
    ReMIND, whose SEGs name their MR only in the series description.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    ordered = sorted(source, key=lambda ds: int(ds.InstanceNumber))
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="tumor",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    frames = np.ascontiguousarray(np.transpose(mask, (2, 1, 0)).astype(np.uint8))
    seg = hd.seg.Segmentation(
        source_images=ordered,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=generate_uid(),
        series_number=100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
        series_description=description,
    )
    if not referenced:
        del seg.ReferencedSeriesSequence
        for frame in seg.PerFrameFunctionalGroupsSequence:
            if "DerivationImageSequence" in frame:
                del frame.DerivationImageSequence
    return seg


def write_datasets(datasets: list[Dataset], folder: Path) -> list[Path]:
    """Write datasets as ``1-NN.dcm`` files (the NBIA zip naming)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets, start=1):
        path = folder / f"1-{index:02d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
