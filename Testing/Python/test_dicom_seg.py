"""DICOM SEG export, checked by tools nobody here wrote: dciodvfy, dcmqi, highdicom and pydicom.

The shared ground-truth label map stands in for a segmentation, so these tests need no model.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import dicom_factory
from synthetic_cases import knee_labels
from ldseg.card import ModelCard
from ldseg.dicom_input import DicomSeries, read_dicom_series
from ldseg.dicom_seg import (
    MEASURE_LABELS,
    write_dicom_seg,
    write_probability_seg,
    write_uncertainty_parametric_map,
)
from ldseg.errors import LDSegError
from ldseg.uncertainty import UNCERTAINTY_MEASURES

CARD = ModelCard(
    name="ldseg-knee-test", version="0.3.1", description="test card", labels=knee_labels(), model_grid=(64, 64, 64)
)


@pytest.fixture(scope="module", params=["axial", "oblique"])
def case(request, tmp_path_factory) -> tuple[DicomSeries, sitk.Image]:
    """A DICOM series written from a shared knee case and its label map on the same grid."""
    image, labels = dicom_factory.knee_case()
    if request.param == "oblique":
        grid = dicom_factory.oblique_grid(image, labels)
        image = dicom_factory.resample_to(image, grid, nearest=False)
        labels = dicom_factory.resample_to(labels, grid, nearest=True)
    folder = tmp_path_factory.mktemp(request.param)
    dicom_factory.write_mr_series(image, folder / "series")
    return read_dicom_series(folder / "series"), labels


@pytest.fixture(scope="module")
def seg_file(case, tmp_path_factory) -> Path:
    series, labels = case
    return write_dicom_seg(labels, series, CARD, tmp_path_factory.mktemp("seg") / "knee-seg.dcm")


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """Errors and warnings that dicom3tools' validator reports for one file."""
    executable = shutil.which("dciodvfy")
    assert executable, "dciodvfy is missing: install the Debian package dicom3tools"
    report = subprocess.run([executable, str(path)], capture_output=True, text=True)
    lines = (report.stdout + report.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")], [line for line in lines if line.startswith("Warning")]


def segimage2itkimage() -> str:
    executable = shutil.which("segimage2itkimage")
    if executable is None:
        import dcmqi  # the PyPI package keeps its executables beside the module

        executable = str(Path(dcmqi.__file__).parent / "bin" / "segimage2itkimage")
    return executable


def test_seg_passes_dciodvfy_without_errors_or_warnings(seg_file):
    errors, warnings = dciodvfy(seg_file)
    assert errors == []
    assert warnings == []


def test_dcmqi_reads_back_masks_identical_to_ours_on_the_source_grid(case, seg_file, tmp_path):
    series, labels = case
    subprocess.run(
        [segimage2itkimage(), "--inputDICOM", seg_file, "--outputDirectory", tmp_path, "-p", "seg", "-t", "nrrd"],
        check=True, capture_output=True,
    )
    meta = json.loads((tmp_path / "seg-meta.json").read_text())
    names = {group[0]["labelID"]: group[0]["SegmentLabel"] for group in meta["segmentAttributes"]}
    assert names == {1: "Femur", 2: "Tibia"}
    expected = sitk.GetArrayFromImage(labels)
    for number, name in names.items():
        mask = sitk.ReadImage(str(tmp_path / f"seg-{number}.nrrd"))
        # dcmqi writes the extent of the frames present (empty frames are omitted); place it on the source grid.
        on_source = sitk.Resample(mask, series.image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(on_source) > 0, expected == CARD.labels[number - 1].value)


def test_highdicom_reads_back_segments_codes_colors_and_algorithm(seg_file):
    seg = hd.seg.segread(seg_file)
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.BINARY
    assert seg.segment_numbers == [1, 2]
    for number, label in zip(seg.segment_numbers, CARD.labels):
        description = seg.get_segment_description(number)
        assert description.segment_label == label.name
        assert description.segmented_property_category.value == label.category.code
        assert description.segmented_property_category.scheme_designator == "SCT"
        assert description.segmented_property_type.value == label.type.code
        assert description.segmented_property_type.meaning == label.type.meaning
        assert description.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algorithm = description.algorithm_identification[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("LDSeg", CARD.version)
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
        rgb = hd.color.CIELabColor.from_dicom_value(tuple(description.RecommendedDisplayCIELabValue)).to_rgb()
        np.testing.assert_allclose(rgb, [255 * c for c in label.color], atol=1.0)


def test_seg_references_the_source_series_with_new_uids(case, seg_file):
    series, _ = case
    seg = pydicom.dcmread(seg_file)
    source = series.headers[0]
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.PatientID == source.PatientID
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    assert seg.SOPInstanceUID not in {header.SOPInstanceUID for header in series.headers}
    referenced_series = seg.ReferencedSeriesSequence[0]
    assert referenced_series.SeriesInstanceUID == series.series_uid
    referenced = {item.ReferencedSOPInstanceUID for item in referenced_series.ReferencedInstanceSequence}
    assert referenced <= {header.SOPInstanceUID for header in series.headers}
    assert seg.ContentLabel == "LDSEG" and seg.Manufacturer == "LDSegSlicer"


def test_empty_frames_are_omitted_and_each_frame_matches_its_source_slice(case, seg_file):
    series, labels = case
    expected = sitk.GetArrayFromImage(labels)
    seg = hd.seg.segread(seg_file)
    non_empty_frames = sum(int(np.any(plane == label.value)) for label in CARD.labels for plane in expected)
    assert seg.number_of_frames == non_empty_frames
    uids = [header.SOPInstanceUID for header in series.headers]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2], assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(pixels[..., 0], expected == 1)
    np.testing.assert_array_equal(pixels[..., 1], expected == 2)


def test_edited_segmentation_is_written_as_semiautomatic(case, tmp_path):
    series, labels = case
    path = write_dicom_seg(labels, series, CARD, tmp_path / "edited.dcm", algorithm_type={1: "SEMIAUTOMATIC"})
    seg = hd.seg.segread(path)
    assert seg.get_segment_description(1).algorithm_type == hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
    assert seg.get_segment_description(2).algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC


def test_slicer_export_from_source_files_with_its_own_segments(case, tmp_path):
    """The Slicer Export button: source files from the DICOM database, the segments as edited there."""
    series, labels = case
    tibia = dataclasses.replace(CARD.labels[1], name="Tibia (edited)", color=(1.0, 0.0, 0.0))
    tibia_only = sitk.Cast(labels == 2, sitk.sitkUInt8) * 2
    path = write_dicom_seg(
        tibia_only, DicomSeries.from_files(series.files), CARD, tmp_path / "edited.dcm",
        algorithm_type="SEMIAUTOMATIC", structures=[tibia],
    )
    seg = hd.seg.segread(path)
    assert seg.segment_numbers == [1]
    description = seg.get_segment_description(1)
    assert description.segment_label == "Tibia (edited)"
    assert description.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
    rgb = hd.color.CIELabColor.from_dicom_value(tuple(description.RecommendedDisplayCIELabValue)).to_rgb()
    np.testing.assert_allclose(rgb, (255, 0, 0), atol=1.0)


def test_segmentation_stored_with_flipped_axes_is_written_on_the_source_grid(case, seg_file, tmp_path):
    series, labels = case
    flipped = sitk.PermuteAxes(sitk.Flip(labels, [True, False, True]), [1, 0, 2])
    assert flipped.GetDirection() != labels.GetDirection()
    path = write_dicom_seg(flipped, series, CARD, tmp_path / "flipped.dcm")
    uids = [header.SOPInstanceUID for header in series.headers]
    expected = hd.seg.segread(seg_file).get_pixels_by_source_instance(uids, assert_missing_frames_are_empty=True)
    actual = hd.seg.segread(path).get_pixels_by_source_instance(uids, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(actual, expected)


def assert_refused_and_nothing_written(folder: Path, match: str, write) -> None:
    with pytest.raises(LDSegError, match=match):
        write(folder / "refused.dcm")
    assert list(folder.iterdir()) == []


def test_export_refuses_a_segmentation_off_the_source_grid(case, tmp_path):
    series, labels = case
    shifted = sitk.Image(labels)
    shifted.SetOrigin(tuple(np.array(labels.GetOrigin()) + 0.5))
    assert_refused_and_nothing_written(
        tmp_path, "no longer matches the geometry.*origin", lambda out: write_dicom_seg(shifted, series, CARD, out)
    )
    cropped = labels[:, :, 1:]
    assert_refused_and_nothing_written(tmp_path, "size", lambda out: write_dicom_seg(cropped, series, CARD, out))


def test_export_refuses_an_empty_segment(case, tmp_path):
    series, labels = case
    femur_only = sitk.Cast(labels == 1, sitk.sitkUInt8)
    assert_refused_and_nothing_written(
        tmp_path, "Tibia are empty", lambda out: write_dicom_seg(femur_only, series, CARD, out)
    )


def test_export_refuses_label_values_no_segment_describes(case, tmp_path):
    series, labels = case
    extra = sitk.Image(labels)
    extra[0, 0, 0] = 7
    assert_refused_and_nothing_written(
        tmp_path, "label value\\(s\\) \\[7\\]", lambda out: write_dicom_seg(extra, series, CARD, out)
    )


def test_export_refuses_a_non_integer_label_map(case, tmp_path):
    series, labels = case
    floating = sitk.Cast(labels, sitk.sitkFloat32)
    assert_refused_and_nothing_written(
        tmp_path, "needs an integer label map", lambda out: write_dicom_seg(floating, series, CARD, out)
    )


def test_refused_export_keeps_an_existing_file(case, tmp_path):
    series, labels = case
    out = tmp_path / "knee-seg.dcm"
    out.write_bytes(b"previous export")
    with pytest.raises(LDSegError):
        write_dicom_seg(sitk.Cast(labels == 1, sitk.sitkUInt8), series, CARD, out)
    assert out.read_bytes() == b"previous export"
    assert list(tmp_path.iterdir()) == [out]


def mean_probability_from(labels: sitk.Image) -> np.ndarray:
    """A soft version of the label map, (C, z, y, x): 0.8 on the true class, 0.1 on each other."""
    values = sitk.GetArrayFromImage(labels)
    return np.stack([np.where(values == k, 0.8, 0.1) for k in range(CARD.num_classes)]).astype(np.float32)


def test_probability_seg_is_fractional_valid_and_reads_back(case, tmp_path):
    series, labels = case
    mean_probability = mean_probability_from(labels)
    path = write_probability_seg(mean_probability, series, CARD, tmp_path / "knee-probability.dcm")
    assert dciodvfy(path) == ([], [])
    seg = hd.seg.segread(path)
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    assert seg.segmentation_fractional_type == hd.seg.SegmentationFractionalTypeValues.PROBABILITY
    assert [seg.get_segment_description(n).segment_label for n in seg.segment_numbers] == ["Femur", "Tibia"]
    uids = [header.SOPInstanceUID for header in series.headers]
    pixels = seg.get_pixels_by_source_instance(
        uids, segment_numbers=[1, 2], assert_missing_frames_are_empty=True, rescale_fractional=True
    )
    np.testing.assert_allclose(pixels, np.moveaxis(mean_probability[1:], 0, -1), atol=0.5 / 255)


def test_probability_seg_refuses_a_map_of_another_shape(case, tmp_path):
    series, labels = case
    mean_probability = mean_probability_from(labels)[:, 1:]
    assert_refused_and_nothing_written(
        tmp_path, "probability map has shape", lambda out: write_probability_seg(mean_probability, series, CARD, out)
    )


def test_every_uncertainty_measure_has_a_dicom_label():
    assert set(MEASURE_LABELS) == set(UNCERTAINTY_MEASURES)
    assert all(len(label) <= 16 and len(explanation) <= 64 for label, explanation in MEASURE_LABELS.values())


def test_uncertainty_parametric_map_is_valid_and_reads_back(case, tmp_path):
    series, labels = case
    values = np.random.default_rng(0).random(sitk.GetArrayViewFromImage(labels).shape, dtype=np.float32) * 0.7
    uncertainty = sitk.GetImageFromArray(values)
    uncertainty.CopyInformation(labels)
    path = write_uncertainty_parametric_map(uncertainty, series, CARD, "entropy", tmp_path / "knee-uncertainty.dcm")
    errors, warnings = dciodvfy(path)
    assert errors == []
    # dicom3tools 20220618 predates the defined term QUANTITY (Image Type value 4) that highdicom writes.
    assert all("QUANTITY" in warning for warning in warnings)
    parametric_map = pydicom.dcmread(path)
    assert parametric_map.SOPClassUID == pydicom.uid.ParametricMapStorage
    assert parametric_map.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_uid
    mapping = parametric_map.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.LUTLabel == "Entropy"
    assert float(mapping.DoubleFloatRealWorldValueLastValueMapped) == pytest.approx(np.log(CARD.num_classes))
    # highdicom orders frames along its own 3D dimension; each frame names the slice it derives from.
    slice_of = {header.SOPInstanceUID: index for index, header in enumerate(series.headers)}
    frames = parametric_map.pixel_array.reshape(-1, *values.shape[1:])
    assert len(frames) == values.shape[0]
    for frame, groups in zip(frames, parametric_map.PerFrameFunctionalGroupsSequence):
        source_uid = groups.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_array_equal(frame, values[slice_of[source_uid]])


def test_parametric_map_refuses_a_map_off_the_source_grid(case, tmp_path):
    series, labels = case
    uncertainty = sitk.Cast(labels, sitk.sitkFloat32)[:, :, 1:]
    assert_refused_and_nothing_written(
        tmp_path, "uncertainty map no longer matches",
        lambda out: write_uncertainty_parametric_map(uncertainty, series, CARD, "entropy", out),
    )


def test_cli_segments_a_dicom_folder_into_valid_dicom_objects(tmp_path):
    """The bundled model on a real knee fills both structures, so every DICOM object must be written."""
    image, _ = dicom_factory.knee_case()
    dicom_factory.write_mr_series(image, tmp_path / "knee")
    output = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "ldseg.cli", "segment", tmp_path / "knee", "-o", output,
         "--samples", "2", "--progress", "none", "--dicom-seg", "--dicom-probability", "--dicom-uncertainty"],
        capture_output=True, text=True, timeout=600, cwd=dicom_factory.REPO,
    )
    assert run.returncode == 0, run.stderr
    series = read_dicom_series(tmp_path / "knee")
    for name in ("knee-seg.dcm", "knee-probability-seg.dcm", "knee-uncertainty-pm.dcm"):
        errors, _ = dciodvfy(output / name)
        assert errors == [], name
        assert pydicom.dcmread(output / name).ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_uid
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(output / "knee.seg.nrrd")))
    seg = hd.seg.segread(output / "knee-seg.dcm")
    uids = [header.SOPInstanceUID for header in series.headers]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(pixels, labels)
    assert {1, 2} <= set(np.unique(labels))
