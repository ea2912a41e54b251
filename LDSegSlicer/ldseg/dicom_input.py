"""Reads one DICOM image series into a SimpleITK image whose geometry comes from the DICOM itself.

Geometry (origin, spacing, direction, slice order) is computed here from ImagePositionPatient,
ImageOrientationPatient and PixelSpacing rather than left to a reader's heuristics, so that oblique
series are exact and every broken series is refused with a message that names the problem. The
kept headers are what DICOM SEG export references (dicom_seg.py).
"""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
import SimpleITK as sitk
from pydicom.multival import MultiValue

from .errors import LDSegError
from .imageio import itk_message, one_line
from .limits import current as current_limits

GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")
ORIENTATION_TOLERANCE = 1e-4  # direction cosines, unitless
POSITION_TOLERANCE_MM = 0.01  # plus 1 % of the slice spacing, for rounding in DS strings


@dataclass(frozen=True)
class DicomSeries:
    """One single-frame image series: the 3D image, its files and headers in slice order.

    image[z] (numpy order) is the slice of files[z] and headers[z]; headers are read without pixel
    data and are what a DICOM SEG or Parametric Map references.
    """

    image: sitk.Image
    files: tuple[Path, ...]
    headers: tuple[pydicom.Dataset, ...]
    series_uid: str

    @property
    def description(self) -> str:
        return str(self.headers[0].get("SeriesDescription", ""))

    @classmethod
    def from_files(cls, files: list[str | Path] | tuple[str | Path, ...]) -> DicomSeries:
        """Loads the series made of exactly these files (e.g. resolved from Slicer's DICOM database)."""
        with _quiet_pydicom():
            return cls._from_files(files)

    @classmethod
    def _from_files(cls, files) -> DicomSeries:
        if not files:
            raise LDSegError(
                "There are no source DICOM files: the image was not loaded from DICOM. DICOM SEG export "
                "needs the source series; load it from the DICOM database and segment that volume."
            )
        instances = _read_headers(Path(f) for f in files)
        if len(instances) < len(files):
            unreadable = sorted({str(f) for f in files} - {str(p) for p, _ in instances})
            raise LDSegError(
                f"{len(unreadable)} of the {len(files)} source files cannot be read as DICOM "
                f"(first: {unreadable[0]}). Re-import the series into the DICOM database."
            )
        series = _group_by_series(instances)
        if len(series) != 1:
            raise LDSegError(
                f"The source files belong to {len(series)} series ({', '.join(series)}); "
                "export needs the files of exactly one series."
            )
        (uid, members), = series.items()
        return _load_series(uid, members, where="the source files")


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> DicomSeries:
    """Reads the image series in `folder` (searched recursively); `series_uid` picks one of several."""
    with _quiet_pydicom():
        return _read_dicom_series(Path(folder), series_uid)


@contextlib.contextmanager
def _quiet_pydicom():
    """pydicom warns about each odd value when it is first used; we check what we use and say what is
    wrong in one line, so its warnings (and their validation) are off while we read."""
    mode = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        pydicom.config.settings.reading_validation_mode = mode


def _read_dicom_series(folder: Path, series_uid: str | None) -> DicomSeries:
    if not folder.is_dir():
        raise LDSegError(f"DICOM folder {folder} does not exist or is not a folder.")
    instances = _read_headers(path for path in sorted(folder.rglob("*")) if path.is_file())
    if not instances:
        raise LDSegError(f"No DICOM files found in {folder}. Point to the folder that holds the series' files.")
    series = _group_by_series(instances)
    images = {uid: members for uid, members in series.items() if any(_is_image(ds) for _, ds in members)}
    if not images:
        kinds = sorted({_sop_class_name(ds) for _, ds in instances})
        raise LDSegError(
            f"{folder} holds no image series, only non-image DICOM objects ({', '.join(kinds)}). "
            "Point to the folder of the MR series itself."
        )
    if series_uid is None:
        if len(images) > 1:
            listing = "\n".join(f"  {uid}  {_series_summary(members)}" for uid, members in images.items())
            raise LDSegError(
                f"{folder} holds {len(images)} image series; choose one with its Series Instance UID "
                f"(--series-uid):\n{listing}"
            )
        series_uid = next(iter(images))
    elif series_uid not in series:
        listing = "\n".join(f"  {uid}  {_series_summary(members)}" for uid, members in images.items())
        raise LDSegError(f"Series {series_uid} is not in {folder}. The image series there are:\n{listing}")
    elif series_uid not in images:
        kinds = sorted({_sop_class_name(ds) for _, ds in series[series_uid]})
        raise LDSegError(f"Series {series_uid} in {folder} holds no images, only {', '.join(kinds)}.")
    return _load_series(series_uid, images[series_uid], where=f"Series {series_uid} in {folder}")


def _read_headers(paths) -> list[tuple[Path, pydicom.Dataset]]:
    """Headers of the files that are DICOM; other files (README, DICOMDIR's siblings) are skipped.

    A file that says it is DICOM (the "DICM" marker) but cannot be parsed is refused rather than
    skipped: it may be a slice of the series.
    """
    instances = []
    for path in paths:
        try:
            with warnings.catch_warnings():  # pydicom warns about every odd value; we check what we use
                warnings.simplefilter("ignore")
                dataset = pydicom.dcmread(path, stop_before_pixels=True)
                for _element in dataset:  # decode every element now: pydicom decodes lazily, and raises then
                    pass
                usable = "SOPClassUID" in dataset and "SeriesInstanceUID" in dataset
                if usable and not all(isinstance(dataset.get(k), str) for k in ("SOPClassUID", "SeriesInstanceUID")):
                    raise ValueError("its SOPClassUID or SeriesInstanceUID is not one UID")
                uid = str(dataset.SeriesInstanceUID) if usable else ""
                if not usable and "MediaStorageSOPClassUID" not in dataset.file_meta and _has_dicom_marker(path):
                    raise ValueError("no SOP class in its header or meta information")  # garbage after "DICM"
        except Exception as error:  # not DICOM, or a damaged header (which fails in many ways inside pydicom)
            if not isinstance(error, OSError) and _has_dicom_marker(path):
                raise LDSegError(f"{path} is a damaged DICOM file ({one_line(error)}); copy the series again.") from None
            continue
        if usable and uid:
            instances.append((path, dataset))
    return instances


def _has_dicom_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as stream:
            return stream.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _group_by_series(instances) -> dict[str, list[tuple[Path, pydicom.Dataset]]]:
    series: dict[str, list[tuple[Path, pydicom.Dataset]]] = defaultdict(list)
    for path, dataset in instances:
        series[str(dataset.SeriesInstanceUID)].append((path, dataset))
    return dict(series)


def _sop_class_name(dataset: pydicom.Dataset) -> str:
    uid = dataset.SOPClassUID
    return uid.name if uid.is_valid and uid.name != str(uid) else f"SOP class {uid}"


def _is_image(dataset: pydicom.Dataset) -> bool:
    return "Image Storage" in _sop_class_name(dataset)


def _series_summary(members) -> str:
    first = members[0][1]
    description = first.get("SeriesDescription", "") or "(no description)"
    return f"{first.get('Modality', '?')}  {description!s}  {len(members)} images"


def _load_series(uid: str, members, where: str) -> DicomSeries:
    """Checks the geometry of one series, sorts its slices along the normal and reads the pixels."""
    non_images = [ds for _, ds in members if not _is_image(ds)]
    if non_images:
        raise LDSegError(
            f"{where} mixes images with {len(non_images)} non-image objects ({_sop_class_name(non_images[0])}). "
            "Export the image series on its own."
        )
    multi_frame = [path for path, ds in members if _number(ds, "NumberOfFrames", 1, where, path) > 1]
    if multi_frame:
        raise LDSegError(
            f"{where} is a multi-frame (enhanced) object ({multi_frame[0].name}); LDSeg reads classic "
            "single-frame series. Export the series as classic single-frame images."
        )
    for tag in GEOMETRY_TAGS:
        missing = [path for path, ds in members if ds.get(tag) in (None, "")]
        if missing:
            raise LDSegError(
                f"{where}: {len(missing)} of {len(members)} images lack {tag} ({missing[0].name}), so their "
                "position in space is unknown. Use the scanner's original series, not a secondary capture."
            )
    if len(members) < 2:
        raise LDSegError(f"{where} has a single image; LDSeg needs a 3D series of several slices.")
    for path, ds in members:
        _check_geometry_values(ds, path, where)

    first = members[0][1]
    current_limits().check_voxels((len(members), int(first.Rows), int(first.Columns)), where)
    orientation = np.array(first.ImageOrientationPatient, dtype=float)
    for path, ds in members:
        if not np.allclose(np.array(ds.ImageOrientationPatient, dtype=float), orientation, atol=ORIENTATION_TOLERANCE):
            raise LDSegError(
                f"{where} mixes image orientations ({path.name} differs from {members[0][0].name}), "
                "e.g. a localizer with several planes. Choose a series with a single orientation."
            )
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns) or not np.allclose(
            np.array(ds.PixelSpacing, dtype=float), np.array(first.PixelSpacing, dtype=float), atol=1e-4
        ):
            raise LDSegError(
                f"{where} mixes image sizes or pixel spacings ({path.name}: {ds.Rows} x {ds.Columns}, "
                f"{list(ds.PixelSpacing)} mm; {members[0][0].name}: {first.Rows} x {first.Columns}, "
                f"{list(first.PixelSpacing)} mm). Choose a series with one matrix size."
            )
    row_direction, column_direction = orientation[:3], orientation[3:]
    normal = np.cross(row_direction, column_direction)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in members])
    order = np.argsort(positions @ normal, kind="stable")
    members = [members[i] for i in order]
    positions = positions[order]
    spacing_z = _slice_spacing(positions, normal, where)

    slices = [_read_pixels(path, ds) for path, ds in members]
    common_type = slices[0].dtype if len({array.dtype for array in slices}) == 1 else np.float32
    image = sitk.GetImageFromArray(np.stack(slices).astype(common_type, copy=False))
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    image.SetSpacing((column_spacing, row_spacing, spacing_z))
    image.SetOrigin(tuple(positions[0]))
    image.SetDirection(tuple(np.column_stack([row_direction, column_direction, normal]).ravel()))
    return DicomSeries(
        image=image,
        files=tuple(path for path, _ in members),
        headers=tuple(ds for _, ds in members),
        series_uid=uid,
    )


def _slice_spacing(positions: np.ndarray, normal: np.ndarray, where: str) -> float:
    """The one distance between neighbouring slices, refusing gaps, duplicates and tilted stacks."""
    steps = np.diff(positions, axis=0)
    distances = steps @ normal
    if np.any(distances < POSITION_TOLERANCE_MM):
        raise LDSegError(
            f"{where} has several images at the same position (e.g. several echoes, phases or time points "
            "in one series). Choose a series with one image per slice position."
        )
    off_axis = np.linalg.norm(steps - np.outer(distances, normal), axis=1)
    spacing = float(np.median(distances))
    tolerance = POSITION_TOLERANCE_MM + 0.01 * spacing
    if np.any(off_axis > tolerance):
        raise LDSegError(
            f"{where}: slices are not stacked along their normal (gantry tilt or a sheared stack, "
            f"up to {off_axis.max():.2f} mm off axis). Resample the series to an orthogonal grid first."
        )
    irregular = np.abs(distances - spacing) > tolerance
    if np.any(irregular):
        gap = float(distances[irregular][0])
        ratio = gap / spacing
        if abs(ratio - round(ratio)) * spacing <= tolerance and round(ratio) >= 2:
            raise LDSegError(
                f"{where} is incomplete: about {int(round(ratio)) - 1} slice(s) missing after slice "
                f"{int(np.argmax(irregular)) + 1} of {len(positions)} (gap {gap:.3f} mm, spacing {spacing:.3f} mm). "
                "Copy the whole series."
            )
        raise LDSegError(
            f"{where} has inconsistent slice spacing ({distances.min():.3f} to {distances.max():.3f} mm). "
            "LDSeg needs evenly spaced slices; resample the series first."
        )
    return float(distances.mean())


def _read_pixels(path: Path, dataset: pydicom.Dataset) -> np.ndarray:
    """One slice's pixel values, rescaled, through GDCM (which decodes the compressed transfer syntaxes)."""
    _check_pixel_data_length(path, dataset)
    try:
        slice_image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise LDSegError(f"The pixel data of {path} cannot be read ({itk_message(error)}).") from None
    if slice_image.GetNumberOfComponentsPerPixel() != 1:
        raise LDSegError(f"{path} is a color image; LDSeg reads grayscale MR series.")
    pixels = sitk.GetArrayFromImage(slice_image)
    if pixels.size != int(dataset.Rows) * int(dataset.Columns):
        raise LDSegError(f"The pixel data of {path} holds {pixels.size} values, not Rows x Columns = "
                         f"{int(dataset.Rows) * int(dataset.Columns)}; the file is damaged.")
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise LDSegError(f"The pixel data of {path} holds NaN or infinite values; the file is damaged.")
    return pixels.reshape(int(dataset.Rows), int(dataset.Columns))


def _check_pixel_data_length(path: Path, header: pydicom.Dataset) -> None:
    """Refuses uncompressed pixel data shorter than Rows x Columns: GDCM would pad it with zeros or
    leftover memory and return an image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path)
            pixel_data = dataset.get("PixelData")
            syntax = dataset.file_meta.get("TransferSyntaxUID")
            encapsulated = syntax is not None and syntax.is_encapsulated
    except Exception as error:
        raise LDSegError(f"{path} is a damaged DICOM file ({one_line(error)}); copy the series again.") from None
    if pixel_data is None:
        raise LDSegError(f"{path} has no pixel data; copy the series again.")
    if encapsulated:
        return  # compressed: the decoder reports a short stream itself
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    bits = int(header.get("BitsAllocated", 16) or 16)
    needed = (int(header.Rows) * int(header.Columns) * samples * bits + 7) // 8
    if len(pixel_data) < needed:
        raise LDSegError(
            f"The pixel data of {path} is {len(pixel_data)} bytes, {header.Rows} x {header.Columns} pixels need "
            f"{needed}: the file is truncated or damaged. Copy the series again."
        )


def _number(dataset: pydicom.Dataset, tag: str, default: float, where: str, path: Path) -> float:
    try:
        value = dataset.get(tag, default)
        return float(value if value not in (None, "") else default)
    except (TypeError, ValueError):
        raise LDSegError(f"{where}: {path.name} has an invalid {tag} ({dataset.get(tag)!r}).") from None


def _check_geometry_values(dataset: pydicom.Dataset, path: Path, where: str) -> None:
    """Refuses geometry attributes that are malformed: wrong counts, not numbers, not a rotation."""
    counts = {"ImagePositionPatient": 3, "ImageOrientationPatient": 6, "PixelSpacing": 2}
    try:
        values = {tag: [float(v) for v in _as_list(dataset.get(tag))] for tag in counts}
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except (TypeError, ValueError):
        values, rows, columns = {}, 0, 0
    problems = [f"{tag} needs {count} numbers" for tag, count in counts.items() if len(values.get(tag, ())) != count]
    if not problems:
        if not all(np.isfinite(v).all() for v in map(np.array, values.values())):
            problems.append("a position, orientation or spacing is not a finite number")
        elif min(values["PixelSpacing"]) <= 0:
            problems.append(f"PixelSpacing {values['PixelSpacing']} is not positive")
        else:
            row, column = np.array(values["ImageOrientationPatient"][:3]), np.array(values["ImageOrientationPatient"][3:])
            if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(column) - 1) > 1e-3 or abs(row @ column) > 1e-3:
                problems.append("ImageOrientationPatient is not two perpendicular unit vectors")
    if not 1 <= rows <= 65535 or not 1 <= columns <= 65535:
        problems.append(f"Rows x Columns {dataset.get('Rows')} x {dataset.get('Columns')} is not an image size")
    if problems:
        raise LDSegError(f"{where}: {path.name} has malformed geometry ({'; '.join(problems)}). "
                         "Use the scanner's original series.")


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
