"""DICOM series input: geometry from the DICOM itself, and a clear refusal for every broken series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

import dicom_factory
from ldseg.dicom_input import DicomSeries, read_dicom_series
from ldseg.errors import LDSegError


@pytest.fixture(scope="module")
def axial(tmp_path_factory) -> tuple[Path, sitk.Image]:
    image, _ = dicom_factory.knee_case()
    folder = tmp_path_factory.mktemp("axial")
    dicom_factory.write_mr_series(image, folder)
    return folder, image


@pytest.fixture(scope="module")
def oblique(tmp_path_factory) -> tuple[Path, sitk.Image]:
    image, labels = dicom_factory.knee_case()
    oblique_image = dicom_factory.resample_to(image, dicom_factory.oblique_grid(image, labels), nearest=False)
    folder = tmp_path_factory.mktemp("oblique")
    dicom_factory.write_mr_series(oblique_image, folder, description="Knee oblique")
    return folder, oblique_image


def broken_copy(source: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "series"
    shutil.copytree(source, folder)
    return folder


def edit(path: Path, **attributes) -> None:
    dataset = pydicom.dcmread(path)
    for name, value in attributes.items():
        if value is None:
            delattr(dataset, name)
        else:
            setattr(dataset, name, value)
    dataset.save_as(path)


def assert_same_grid(actual: sitk.Image, expected: sitk.Image) -> None:
    assert actual.GetSize() == expected.GetSize()
    np.testing.assert_allclose(actual.GetSpacing(), expected.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(actual.GetOrigin(), expected.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(actual.GetDirection(), expected.GetDirection(), atol=1e-9)


def test_factory_series_is_a_valid_mr_image_for_dciodvfy(oblique):
    folder, _ = oblique
    dciodvfy = shutil.which("dciodvfy")
    assert dciodvfy, "dciodvfy is missing: install the Debian package dicom3tools"
    report = subprocess.run([dciodvfy, str(next(folder.iterdir()))], capture_output=True, text=True)
    assert "Error" not in report.stdout + report.stderr


def test_axial_series_round_trips_geometry_and_pixels(axial):
    folder, image = axial
    series = read_dicom_series(folder)
    assert_same_grid(series.image, image)
    assert series.image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(series.image), sitk.GetArrayFromImage(image))


def test_oblique_anisotropic_series_round_trips_geometry_and_pixels(oblique):
    folder, image = oblique
    series = read_dicom_series(folder)
    assert_same_grid(series.image, image)
    np.testing.assert_allclose(series.image.GetSpacing(), (0.6, 0.6, 1.5), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(series.image), sitk.GetArrayFromImage(image))


def test_files_and_headers_follow_slice_order_not_file_names(oblique):
    folder, image = oblique
    series = read_dicom_series(folder)
    assert [path.name for path in series.files] != sorted(path.name for path in series.files)
    for index, (path, header) in enumerate(zip(series.files, series.headers)):
        assert pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID == header.SOPInstanceUID
        np.testing.assert_allclose(
            [float(v) for v in header.ImagePositionPatient],
            image.TransformIndexToPhysicalPoint((0, 0, index)),
            atol=1e-6,
        )
    assert series.series_uid == series.headers[0].SeriesInstanceUID


def test_from_files_reads_the_same_series_as_the_folder(oblique):
    folder, _ = oblique
    from_folder = read_dicom_series(folder)
    from_files = DicomSeries.from_files(list(reversed(from_folder.files)))
    assert from_files.files == from_folder.files
    assert_same_grid(from_files.image, from_folder.image)


def test_from_files_of_two_series_is_refused(axial, oblique):
    files = [next(axial[0].iterdir()), next(oblique[0].iterdir())]
    with pytest.raises(LDSegError, match="belong to 2 series"):
        DicomSeries.from_files(files)


def test_from_files_without_files_says_the_image_has_no_dicom_source():
    with pytest.raises(LDSegError, match="not loaded from DICOM"):
        DicomSeries.from_files([])


def test_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(LDSegError, match="No DICOM files found"):
        read_dicom_series(tmp_path)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(LDSegError, match="does not exist"):
        read_dicom_series(tmp_path / "nowhere")


def test_several_series_are_listed_and_chosen_by_uid(axial, oblique, tmp_path):
    shutil.copytree(axial[0], tmp_path / "a")
    shutil.copytree(oblique[0], tmp_path / "b")
    axial_uid = read_dicom_series(axial[0]).series_uid
    oblique_uid = read_dicom_series(oblique[0]).series_uid
    with pytest.raises(LDSegError, match="holds 2 image series") as refusal:
        read_dicom_series(tmp_path)
    message = str(refusal.value)
    assert axial_uid in message and oblique_uid in message
    assert "Knee oblique" in message and f"{oblique[1].GetSize()[2]} images" in message
    chosen = read_dicom_series(tmp_path, series_uid=oblique_uid)
    assert_same_grid(chosen.image, oblique[1])


def test_unknown_series_uid_is_refused_with_the_series_listed(axial):
    folder, _ = axial
    with pytest.raises(LDSegError, match="is not in") as refusal:
        read_dicom_series(folder, series_uid="1.2.3.4")
    assert read_dicom_series(folder).series_uid in str(refusal.value)


def write_non_image(path: Path, series_uid: str) -> None:
    dataset = pydicom.Dataset()
    dataset.SOPClassUID = pydicom.uid.SegmentationStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = series_uid
    dataset.Modality = "SEG"
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.save_as(path, enforce_file_format=True)


def test_folder_with_only_non_image_objects_is_refused(tmp_path):
    write_non_image(tmp_path / "seg.dcm", generate_uid())
    with pytest.raises(LDSegError, match="no image series, only non-image DICOM objects \\(Segmentation Storage\\)"):
        read_dicom_series(tmp_path)


def test_non_image_series_beside_the_images_is_ignored_unless_chosen(axial, tmp_path):
    folder = broken_copy(axial[0], tmp_path)
    seg_uid = generate_uid()
    write_non_image(folder / "seg.dcm", seg_uid)
    assert_same_grid(read_dicom_series(folder).image, axial[1])
    with pytest.raises(LDSegError, match="holds no images, only Segmentation Storage"):
        read_dicom_series(folder, series_uid=seg_uid)


@pytest.mark.parametrize("tag", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry_tag_is_refused(axial, tmp_path, tag):
    folder = broken_copy(axial[0], tmp_path)
    edit(sorted(folder.iterdir())[5], **{tag: None})
    with pytest.raises(LDSegError, match=f"1 of {axial[1].GetSize()[2]} images lack {tag}"):
        read_dicom_series(folder)


def test_mixed_orientation_is_refused(axial, tmp_path):
    folder = broken_copy(axial[0], tmp_path)
    edit(sorted(folder.iterdir())[3], ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    with pytest.raises(LDSegError, match="mixes image orientations"):
        read_dicom_series(folder)


def test_mixed_pixel_spacing_is_refused(axial, tmp_path):
    folder = broken_copy(axial[0], tmp_path)
    edit(sorted(folder.iterdir())[3], PixelSpacing=[1.0, 1.0])
    with pytest.raises(LDSegError, match="mixes image sizes or pixel spacings"):
        read_dicom_series(folder)


def test_missing_slice_is_refused_as_incomplete(axial, tmp_path):
    folder = broken_copy(axial[0], tmp_path)
    series = read_dicom_series(folder)
    (folder / series.files[10].name).unlink()
    with pytest.raises(LDSegError, match="incomplete: about 1 slice\\(s\\) missing after slice 10"):
        read_dicom_series(folder)


def test_inconsistent_spacing_is_refused(axial, tmp_path):
    folder = broken_copy(axial[0], tmp_path)
    series = read_dicom_series(folder)
    x, y, z = (float(v) for v in series.headers[10].ImagePositionPatient)
    edit(folder / series.files[10].name, ImagePositionPatient=[x, y, z + 0.8])
    with pytest.raises(LDSegError, match="inconsistent slice spacing"):
        read_dicom_series(folder)


def test_two_images_at_one_position_are_refused(axial, tmp_path):
    folder = broken_copy(axial[0], tmp_path)
    duplicate = folder / "duplicate.dcm"
    shutil.copy(next(folder.iterdir()), duplicate)
    edit(duplicate, SOPInstanceUID=generate_uid())
    with pytest.raises(LDSegError, match="several images at the same position"):
        read_dicom_series(folder)


def test_single_image_is_refused(axial, tmp_path):
    shutil.copy(next(axial[0].iterdir()), tmp_path / "one.dcm")
    with pytest.raises(LDSegError, match="single image"):
        read_dicom_series(tmp_path)
