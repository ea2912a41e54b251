"""Builds real DICOM MR series (MR Image Storage, one file per slice) from the shared knee cases.

Tests need DICOM input that independent validators accept (dciodvfy checks the MR Image IOD), with
known geometry: an axial series on the NIfTI grid and an oblique, anisotropic one resampled from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The shared knee cases: $LDSEG_DATA_DIR, else <repo>/../shared/data/knee-oai."""
    return Path(os.environ.get("LDSEG_DATA_DIR", REPO.parent / "shared" / "data" / "knee-oai"))


def knee_case(case: str = "knee1", step: int = 2) -> tuple[sitk.Image, sitk.Image]:
    """Image (int16) and label map (uint8) of a shared case, subsampled by `step` to keep tests fast."""
    image = sitk.ReadImage(str(data_dir() / "images" / f"{case}.nii.gz"), sitk.sitkInt16)
    labels = sitk.ReadImage(str(data_dir() / "labels" / f"{case}.nii.gz"), sitk.sitkUInt8)
    return image[::step, ::step, ::step], labels[::step, ::step, ::step]


def oblique_grid(reference: sitk.Image, labels: sitk.Image) -> sitk.Image:
    """An oblique, anisotropic grid (0.6 x 0.6 x 1.5 mm, tilted 20 and 10 degrees) around the joint.

    The grid is centred on the labelled bones so that both femur and tibia are in the crop.
    """
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(np.deg2rad(20.0), np.deg2rad(10.0), np.deg2rad(5.0))
    direction = np.array(rotation.GetMatrix()).reshape(3, 3)
    size = np.array([100, 90, 36])
    spacing = np.array([0.6, 0.6, 1.5])
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(labels > 0)
    centre = np.array(statistics.GetCentroid(1))
    origin = centre - direction @ ((size - 1) * spacing / 2)
    grid = sitk.Image([int(s) for s in size], reference.GetPixelID())
    grid.SetSpacing(tuple(spacing))
    grid.SetDirection(tuple(direction.ravel()))
    grid.SetOrigin(tuple(origin))
    return grid


def resample_to(image: sitk.Image, grid: sitk.Image, nearest: bool) -> sitk.Image:
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.Resample(image, grid, sitk.Transform(), interpolator, 0.0, image.GetPixelID())


def write_mr_series(
    image: sitk.Image,
    folder: Path,
    *,
    description: str = "Knee DESS sagittal",
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 3,
    patient_id: str = "LDSEG-TEST-1",
) -> list[Path]:
    """Writes `image` (int16) as an MR Image Storage series, one file per slice; returns the files.

    File names are shuffled relative to slice order, so readers must sort by geometry.
    """
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_of_reference_uid = generate_uid()
    array = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkInt16))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    orientation = [float(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
    files = []
    for index in range(array.shape[0]):
        position = image.TransformIndexToPhysicalPoint((0, 0, index))
        dataset = _mr_slice(array[index])
        dataset.update(_identifiers(study_uid, series_uid, frame_of_reference_uid, patient_id))
        dataset.SeriesDescription = description
        dataset.SeriesNumber = series_number
        dataset.InstanceNumber = index + 1
        dataset.ImagePositionPatient = [_ds(v) for v in position]
        dataset.ImageOrientationPatient = [_ds(v) for v in orientation]
        dataset.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
        dataset.SliceThickness = _ds(spacing[2])
        dataset.SpacingBetweenSlices = _ds(spacing[2])
        path = folder / f"IM{(index * 7919) % 100003:06d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def _ds(value: float) -> str:
    """A decimal string that fits DICOM's 16 characters without losing more than 1e-10 mm."""
    return f"{value:.10g}"


def _identifiers(study_uid: str, series_uid: str, frame_of_reference_uid: str, patient_id: str) -> dict:
    dataset = pydicom.Dataset()
    dataset.PatientName = "Knee^Test"
    dataset.PatientID = patient_id
    dataset.PatientBirthDate = "19600101"
    dataset.PatientSex = "F"
    dataset.StudyInstanceUID = study_uid
    dataset.StudyDate = "20250101"
    dataset.StudyTime = "120000"
    dataset.StudyID = "1"
    dataset.AccessionNumber = "LDSEG1"
    dataset.ReferringPhysicianName = ""
    dataset.SeriesInstanceUID = series_uid
    dataset.FrameOfReferenceUID = frame_of_reference_uid
    dataset.PositionReferenceIndicator = ""
    return dataset


def _mr_slice(pixels: np.ndarray) -> FileDataset:
    """The MR Image IOD's modules for one slice, except identifiers and geometry."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SpecificCharacterSet = "ISO_IR 100"
    dataset.SOPClassUID = MRImageStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    dataset.Modality = "MR"
    dataset.Manufacturer = "LDSeg test factory"
    dataset.BodyPartExamined = "KNEE"
    dataset.PatientPosition = "FFS"
    dataset.Laterality = "R"
    dataset.ContentDate = "20250101"
    dataset.ContentTime = "120000"
    dataset.PatientOrientation = ""
    dataset.ScanningSequence = "GR"
    dataset.SequenceVariant = "SS"
    dataset.ScanOptions = ""
    dataset.MRAcquisitionType = "3D"
    dataset.RepetitionTime = "16.3"
    dataset.EchoTime = "4.7"
    dataset.EchoTrainLength = "1"
    dataset.MagneticFieldStrength = "3"
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.BitsAllocated = 16
    dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    return dataset
