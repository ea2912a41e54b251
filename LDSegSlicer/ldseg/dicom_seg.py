"""DICOM SEG (and optional Parametric Map) export of LDSeg results, built with highdicom.

Results go back to PACS as standard objects that reference the source series: a BINARY SEG of the
fused mask with coded, colored segments and the algorithm's identity, optionally a FRACTIONAL
PROBABILITY SEG of the mean probability and a Parametric Map of the uncertainty. Every writer checks
first that the result lies on the source series' grid, and writes atomically, so a refused export
leaves nothing behind.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.charset import python_encoding
from pydicom.sr.codedict import codes

from . import __version__
from .card import Code, Label, ModelCard
from .dicom_input import DicomSeries
from .errors import LDSegError
from .imageio import default_file_mode
from .uncertainty import MEASURES, uncertainty_range

ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL")
MANUFACTURER = "LDSegSlicer"
SPACING_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-4
# Real-world value mapping of each uncertainty measure: LUT label and explanation (ldseg.uncertainty.MEASURES);
# the values have no unit (entropies in nats).
MEASURE_LABELS = {name: (measure.dicom_label, measure.dicom_meaning) for name, measure in MEASURES.items()}
# Offsets from the source series number, so the derived series sort after their source in a viewer.
SEG_SERIES_OFFSET, PROBABILITY_SERIES_OFFSET, UNCERTAINTY_SERIES_OFFSET = 1000, 1001, 1002


def write_dicom_seg(
    labels: sitk.Image,
    source: DicomSeries,
    card: ModelCard,
    out_path: str | Path,
    algorithm_type: str | Mapping[int, str] = "AUTOMATIC",
    structures: Sequence[Label] | None = None,
) -> Path:
    """Writes the label map as a BINARY DICOM SEG, one segment per structure; returns out_path.

    labels: integer label map on the source series' grid (0 background, label values as in the card).
    algorithm_type: "AUTOMATIC" for the model's output, "SEMIAUTOMATIC" once a person edited it;
        a mapping label value -> type gives each structure its own.
    structures: the segments to write (name, color, codes); the card's labels by default. The Slicer
        panel passes its segments here so edited names and colors are kept.
    Refuses (LDSegError, nothing written) when the grid differs from the source series, the label map
    holds values no structure describes, or a structure is empty: DICOM SEG has no empty segments.
    """
    structures = tuple(structures if structures is not None else card.labels)
    labels = _on_source_grid(labels, source, "segmentation")
    if labels.GetNumberOfComponentsPerPixel() != 1 or not _is_integer(labels):
        raise LDSegError(
            f"The segmentation to export is a {labels.GetPixelIDTypeAsString()} image; DICOM SEG export "
            "needs an integer label map."
        )
    values = sitk.GetArrayViewFromImage(labels)
    present = set(np.unique(values).tolist()) - {0}
    described = {structure.value for structure in structures}
    if present - described:
        raise LDSegError(
            f"The segmentation holds label value(s) {sorted(present - described)} that no segment describes "
            f"(described: {sorted(described)}). Name those segments or remove them before export."
        )
    empty = [structure.name for structure in structures if structure.value not in present]
    if empty:
        raise LDSegError(
            f"Segment(s) {', '.join(empty)} are empty, and a DICOM SEG cannot hold empty segments. "
            "Check that the series covers them; in Slicer, draw or remove the empty segment before export."
        )
    masks = np.stack([values == structure.value for structure in structures], axis=-1).astype(np.uint8)
    segmentation = hd.seg.Segmentation(
        source_images=_source_headers(source),
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(structures, card, algorithm_type),
        omit_empty_frames=True,
        content_label="LDSEG",
        content_description=f"{card.name} {card.version} segmentation"[:64],
        series_description=f"LDSeg segmentation of {source.description}"[:64],
        **_new_instance(source, card, SEG_SERIES_OFFSET),
    )
    return _save_atomically(segmentation, out_path)


def write_probability_seg(
    mean_probability: np.ndarray,
    source: DicomSeries,
    card: ModelCard,
    out_path: str | Path,
    algorithm_type: str | Mapping[int, str] = "AUTOMATIC",
) -> Path:
    """Writes the mean class probabilities as a FRACTIONAL PROBABILITY SEG, one segment per card label.

    mean_probability: (C, z, y, x) array on the source grid (numpy order of source.image), C =
        card.num_classes, class 0 the background and class v the label of value v.
    Stored in 8 bits (0..255), the precision DICOM FRACTIONAL SEG carries at most.
    """
    expected = (card.num_classes, *sitk.GetArrayViewFromImage(source.image).shape)
    if mean_probability.shape != expected:
        raise LDSegError(
            f"The probability map has shape {mean_probability.shape}; export needs {expected} "
            f"({card.num_classes} classes of model {card.name} on the grid of source series {source.series_uid})."
        )
    structures = tuple(sorted(card.labels, key=lambda label: label.value))
    fractions = np.clip(np.moveaxis(mean_probability[[label.value for label in structures]], 0, -1), 0.0, 1.0)
    fractions = fractions.astype(np.float32, copy=False)
    empty = [label.name for i, label in enumerate(structures) if not np.any(fractions[..., i] >= 0.5 / 255)]
    if empty:
        raise LDSegError(f"Probability of {', '.join(empty)} is zero everywhere; there is nothing to export.")
    segmentation = hd.seg.Segmentation(
        source_images=_source_headers(source),
        pixel_array=fractions,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=255,
        segment_descriptions=_segment_descriptions(structures, card, algorithm_type),
        omit_empty_frames=True,
        content_label="LDSEGPROB",
        content_description=f"{card.name} {card.version} mean probability"[:64],
        series_description=f"LDSeg probability of {source.description}"[:64],
        **_new_instance(source, card, PROBABILITY_SERIES_OFFSET),
    )
    return _save_atomically(segmentation, out_path)


def write_uncertainty_parametric_map(
    uncertainty: sitk.Image, source: DicomSeries, card: ModelCard, measure: str, out_path: str | Path
) -> Path:
    """Writes the per-voxel uncertainty map (float32) as a DICOM Parametric Map referencing the source.

    measure: the map's definition, one of ldseg.uncertainty.UNCERTAINTY_MEASURES; it names the
        real-world value mapping and sets its range and the display window.
    """
    if measure not in MEASURE_LABELS:
        raise LDSegError(f"Unknown uncertainty measure {measure!r}; choose one of {', '.join(MEASURE_LABELS)}.")
    uncertainty = _on_source_grid(uncertainty, source, "uncertainty map")
    if uncertainty.GetNumberOfComponentsPerPixel() != 1:
        raise LDSegError("The uncertainty map must be a scalar image (one value per voxel).")
    array = sitk.GetArrayFromImage(uncertainty).astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise LDSegError("The uncertainty map holds NaN or infinite values; recompute it before export.")
    low, high = uncertainty_range(measure, card.num_classes)
    label, explanation = MEASURE_LABELS[measure]
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=label,
        lut_explanation=explanation,
        unit=codes.UCUM.NoUnits,
        value_range=(min(low, float(array.min())), max(high, float(array.max()))),
        slope=1.0,
        intercept=0.0,
    )
    parametric_map = hd.pm.ParametricMap(
        source_images=_source_headers(source),
        pixel_array=array,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            # LINEAR_EXACT maps [low, high] exactly, also for the small ranges of entropy or variance.
            hd.VOILUTTransformation(
                window_center=(low + high) / 2, window_width=high - low, voi_lut_function="LINEAR_EXACT"
            )
        ],
        content_label="LDSEGUNC",
        content_description=f"{card.name} {card.version} {label}"[:64],
        series_description=f"LDSeg {label} of {source.description}"[:64],
        **_new_instance(source, card, UNCERTAINTY_SERIES_OFFSET),
    )
    _copy_laterality(source, parametric_map)
    return _save_atomically(parametric_map, out_path)


def _on_source_grid(image: sitk.Image, source: DicomSeries, what: str) -> sitk.Image:
    """The image voxel-for-voxel on the source series' grid, or a refusal.

    The same voxels stored with flipped or permuted axes (as a viewer may export a labelmap) are
    reordered exactly by nearest-neighbour resampling; any other grid is refused, because
    resampling a segmentation onto another grid would change it.
    """
    reference = source.image
    problems = _grid_problems(image, reference)
    if not problems:
        return image
    if _same_voxels(image, reference):
        return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, image.GetPixelID())
    raise LDSegError(
        f"The {what} no longer matches the geometry of source series {source.series_uid} "
        f"({'; '.join(problems)}). DICOM export needs the result on the source grid: segment the "
        "series itself, or resample the result onto it."
    )


def _grid_problems(image: sitk.Image, reference: sitk.Image) -> list[str]:
    problems = []
    if image.GetSize() != reference.GetSize():
        problems.append(f"size {image.GetSize()} vs {reference.GetSize()}")
    if not np.allclose(image.GetSpacing(), reference.GetSpacing(), rtol=0, atol=SPACING_TOLERANCE_MM):
        problems.append(f"spacing {_mm(image.GetSpacing())} vs {_mm(reference.GetSpacing())} mm")
    if not np.allclose(image.GetOrigin(), reference.GetOrigin(), rtol=0, atol=SPACING_TOLERANCE_MM):
        problems.append(f"origin {_mm(image.GetOrigin())} vs {_mm(reference.GetOrigin())} mm")
    if not np.allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=DIRECTION_TOLERANCE):
        problems.append("orientation differs")
    return problems


def _same_voxels(image: sitk.Image, reference: sitk.Image) -> bool:
    """True when both sample the same points in space, whatever the order and sign of their axes."""
    if image.GetDimension() != 3:
        return False
    cosines = np.array(reference.GetDirection()).reshape(3, 3).T @ np.array(image.GetDirection()).reshape(3, 3)
    axis_of = np.abs(cosines).argmax(axis=0)  # image axis j runs along reference axis axis_of[j]
    if sorted(axis_of) != [0, 1, 2] or not np.allclose(np.abs(cosines[axis_of, range(3)]), 1, atol=DIRECTION_TOLERANCE):
        return False
    for j, axis in enumerate(axis_of):
        if image.GetSize()[j] != reference.GetSize()[axis]:
            return False
        if abs(image.GetSpacing()[j] - reference.GetSpacing()[axis]) > SPACING_TOLERANCE_MM:
            return False
    # With parallel axes and equal extents, the first voxel landing on a corner of the reference fixes the rest.
    first = np.array(reference.TransformPhysicalPointToContinuousIndex(image.GetOrigin()))
    last = np.array(reference.GetSize()) - 1
    offset_mm = np.minimum(np.abs(first), np.abs(first - last)) * np.array(reference.GetSpacing())
    return bool(np.all(offset_mm <= SPACING_TOLERANCE_MM))


def _mm(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def _is_integer(image: sitk.Image) -> bool:
    return np.issubdtype(sitk.GetArrayViewFromImage(image).dtype, np.integer)


def _segment_descriptions(
    structures: Sequence[Label], card: ModelCard, algorithm_type: str | Mapping[int, str]
) -> list[hd.seg.SegmentDescription]:
    """Numbered 1..N in the given order, with codes, CIE Lab color and the algorithm's identity."""
    descriptions = []
    for number, structure in enumerate(structures, start=1):
        kind = algorithm_type if isinstance(algorithm_type, str) else algorithm_type.get(structure.value, "AUTOMATIC")
        if kind not in ALGORITHM_TYPES:
            raise LDSegError(f"Algorithm type {kind!r} is not one of {', '.join(ALGORITHM_TYPES)}.")
        identification = None
        if kind != "MANUAL":
            identification = hd.AlgorithmIdentificationSequence(
                name="LDSeg", family=codes.cid7162.ArtificialIntelligence, version=card.version, source=card.name
            )
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=structure.name,
                segmented_property_category=_coded(structure.category),
                segmented_property_type=_coded(structure.type),
                algorithm_type=kind,
                algorithm_identification=identification,
                tracking_uid=hd.UID(),
                tracking_id=f"{structure.name} ({card.name} {card.version})"[:64],
                display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in structure.color)),
            )
        )
    return descriptions


def _coded(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.code, scheme_designator=code.scheme, meaning=code.meaning)


# Type 2 attributes of the Patient and General Study modules: required, but may be empty, which is
# what a de-identified series often has (or lacks them altogether); the derived object copies them.
TYPE_2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "StudyID", "AccessionNumber", "ReferringPhysicianName")
MAX_SERIES_NUMBER = 2**31 - 1  # IS values are signed 32-bit


def check_source(source: DicomSeries) -> None:
    """Refuses, before any work is done, a source series no DICOM object can be derived from."""
    _source_headers(source)


def _source_headers(source: DicomSeries) -> list[pydicom.Dataset]:
    """The source headers as the derived object copies them: missing type 2 attributes are added
    empty (de-identified series), and what cannot be filled in is refused with one line."""
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
        values = {str(header.get(keyword, "") or "") for header in source.headers}
        if "" in values or len(values) != 1:
            kind = "no" if values == {""} else "an empty" if "" in values else "more than one"
            raise LDSegError(
                f"Source series {source.series_uid} has {kind} {keyword}, which a DICOM SEG must copy "
                "(one study, one frame of reference). Export from the original series, not one merged or stripped "
                "of its UIDs."
            )
    charsets = source.headers[0].get("SpecificCharacterSet") or []
    unknown = [c for c in ([charsets] if isinstance(charsets, str) else charsets) if c and c not in python_encoding]
    if unknown:
        raise LDSegError(f"Source series {source.series_uid} declares the unknown character set {unknown[0]!r}; "
                         "re-export it with a standard SpecificCharacterSet (e.g. ISO_IR 192 for UTF-8).")
    headers = []
    for header in source.headers:
        header = copy.copy(header)
        for keyword in TYPE_2_COPIED:
            if keyword not in header:
                setattr(header, keyword, "")
        headers.append(header)
    return headers


def _series_number(source: DicomSeries, offset: int) -> int:
    """The source's number plus `offset`, so the result sorts after it; our own when it has none usable."""
    try:
        number = int(source.headers[0].get("SeriesNumber"))
    except (TypeError, ValueError):
        return offset
    return number + offset if 0 <= number <= MAX_SERIES_NUMBER - offset else offset


def _new_instance(source: DicomSeries, card: ModelCard, series_offset: int) -> dict:
    """New series and instance UIDs plus the equipment that made them (the DICOM General Equipment)."""
    return dict(
        series_instance_uid=hd.UID(),
        series_number=_series_number(source, series_offset),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=card.name[:64],
        software_versions=f"ldseg {__version__}",
        device_serial_number=card.version[:64] or "unknown",  # software has no serial; the model version identifies it
    )


def _copy_laterality(source: DicomSeries, derived: pydicom.Dataset) -> None:
    """A map of a knee is of the same knee: the Parametric Map IOD requires Laterality (dciodvfy checks it).

    Not for SEG, whose IOD wants no series Laterality without a paired Body Part Examined.
    """
    laterality = source.headers[0].get("Laterality")
    if laterality:
        derived.Laterality = laterality


def _save_atomically(dataset: pydicom.Dataset, out_path: str | Path) -> Path:
    """Writes through a temporary file beside out_path, so a failure leaves no half file.

    The temporary file is created new (mkstemp), then given the usual permissions: DICOM files are
    usually read by other accounts (a PACS sender, a shared study folder).
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".partial")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            dataset.save_as(stream, enforce_file_format=True)
        os.chmod(temporary, default_file_mode())
        os.replace(temporary, out_path)
    finally:
        temporary.unlink(missing_ok=True)
    return out_path
