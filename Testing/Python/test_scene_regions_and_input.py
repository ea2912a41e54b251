"""Input checks before a run, and the "next uncertain region" navigation, on a slicer-core scene."""

import numpy as np
import pytest
from scene_fixtures import make_slicer_scene, write_engine_outputs, write_input_image

slicer = pytest.importorskip("slicer")

from LDSegLib import scene as scene_layer  # noqa: E402
from LDSegLib.display import center_slice_views  # noqa: E402
from LDSegLib.input_check import input_problem  # noqa: E402
from LDSegLib.summary import read_summary  # noqa: E402
from LDSegLib.uncertain_regions import RegionCursor, uncertain_regions  # noqa: E402


def volume_from_array(app, array, node_class="vtkMRMLScalarVolumeNode"):
    node = app.scene.AddNewNodeByClass(node_class, "test volume")
    slicer.util.updateVolumeFromArray(node, array)
    return node


def multi_frame_volume(app, frames=3):
    """A scalar volume node with several values per voxel, as Slicer stores a 4D MultiVolume."""
    import vtk

    image = vtk.vtkImageData()
    image.SetDimensions(8, 8, 8)
    image.AllocateScalars(vtk.VTK_FLOAT, frames)
    node = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "4D")
    node.SetAndObserveImageData(image)
    return node


@pytest.fixture
def app():
    return make_slicer_scene()


def test_a_knee_volume_is_accepted(app, tmp_path):
    assert input_problem(app.load_volume(write_input_image(tmp_path))) is None


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda app: None, "Select an input volume"),
        (lambda app: volume_from_array(app, np.ones((8, 8, 8), np.uint8), "vtkMRMLLabelMapVolumeNode"), "label map"),
        (lambda app: volume_from_array(app, np.random.rand(1, 16, 16)), "2D image"),
        (multi_frame_volume, "4D or color"),
        (lambda app: volume_from_array(app, np.zeros((8, 8, 8))), "empty"),
        (lambda app: app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no image"), "no voxels"),
        (lambda app: app.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "vectors"), "vector, tensor"),
    ],
    ids=["none", "labelmap", "2d", "4d", "empty", "no-image", "vector"],
)
def test_unusable_inputs_get_a_clear_message(app, make, expected):
    message = input_problem(make(app))
    assert message is not None and expected in message


@pytest.fixture
def imported(app, tmp_path):
    volume = app.load_volume(write_input_image(tmp_path))
    result = read_summary(write_engine_outputs(tmp_path / "out"))
    return app, scene_layer.import_result(app.scene, volume, result)


def test_uncertain_regions_are_found_largest_first_at_their_centres(imported):
    app, result = imported
    regions = uncertain_regions(result.uncertainty, threshold=0.5)
    assert [region.voxels for region in regions] == [28 * 20 * 4, 3 * 3 * 2]
    ijk_to_ras = __import__("vtk").vtkMatrix4x4()
    result.uncertainty.GetIJKToRASMatrix(ijk_to_ras)
    # Region 1 spans i 10..37, j 10..29, k 11..14 (see write_engine_outputs).
    expected = ijk_to_ras.MultiplyPoint((23.5, 19.5, 12.5, 1.0))[:3]
    assert regions[0].center_ras == pytest.approx(expected)
    assert regions[0].mean_uncertainty == pytest.approx(0.9)
    assert regions[1].mean_uncertainty == pytest.approx(0.7)
    assert regions[0].volume_ml == pytest.approx(2240 * abs(ijk_to_ras.Determinant()) / 1000)
    assert uncertain_regions(result.uncertainty, threshold=0.8)[0].voxels == 2240
    assert len(uncertain_regions(result.uncertainty, threshold=0.8)) == 1
    assert uncertain_regions(result.uncertainty, threshold=0.95) == []


def test_next_region_centres_every_slice_view_and_wraps_around(imported):
    app, result = imported
    cursor = RegionCursor(uncertain_regions(result.uncertainty, threshold=0.5))
    visited = []
    for _ in range(3):
        region = cursor.next()
        center_slice_views(app.scene, region.center_ras)
        visited.append(region)
        for index in range(app.scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
            slice_node = app.scene.GetNthNodeByClass(index, "vtkMRMLSliceNode")
            slice_to_ras = slice_node.GetSliceToRAS()
            centre = [slice_to_ras.GetElement(row, 3) for row in range(3)]
            assert centre == pytest.approx(region.center_ras, abs=1e-6)
    assert visited[2] is visited[0] and visited[1] is not visited[0]
    assert RegionCursor([]).next() is None
