"""A bare slicer-core MRML scene with the logics the scene layer needs, and engine-shaped result files.

The result files follow the engine's output contract (docs/architecture.md) so the scene layer can be
tested without running the model; tests that run the real engine use the same scene.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODULE_DIRECTORY = Path(__file__).resolve().parents[2] / "LDSegSlicer"
if str(MODULE_DIRECTORY) not in sys.path:
    sys.path.insert(0, str(MODULE_DIRECTORY))

from ldseg.settings import SegmentSettings  # noqa: E402
from synthetic_cases import knee_labels  # noqa: E402
from ldseg.summary import SUMMARY_FORMAT_VERSION, ModelIdentity, RunSummary, StructureFigures  # noqa: E402

# Oblique, anisotropic voxel grid (i, j, k) -> LPS, so geometry mistakes show.
IJK_TO_LPS = np.array(
    [[0.78, 0.12, 0.0, -20.0], [-0.12, 0.78, 0.0, 12.0], [0.0, 0.0, 1.5, 4.0], [0.0, 0.0, 0.0, 1.0]]
)
SHAPE = (48, 40, 24)  # i, j, k
FEMUR_COLOR = (0.93, 0.82, 0.62)
TIBIA_COLOR = (0.45, 0.67, 0.86)


@dataclass
class SlicerScene:
    """What Slicer's application sets up, reduced to what the scene layer and the views use."""

    scene: object
    app_logic: object
    volumes_logic: object
    segmentations_logic: object
    sequences_logic: object
    terminologies_logic: object
    keep_alive: list  # the application logic holds module logics weakly

    def load_volume(self, path, name="knee"):
        node = self.volumes_logic.AddArchetypeVolume(str(path), name)
        assert node is not None, f"could not load {path}"
        return node


def make_slicer_scene() -> SlicerScene:
    import slicer
    import vtk

    scene = slicer.vtkMRMLScene()
    # Cache and data I/O managers, as the Slicer application sets them (.mrb reading needs them).
    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(tempfile.mkdtemp(prefix="ldseg-cache-"))
    data_io = slicer.vtkDataIOManager()
    data_io.SetCacheManager(cache)
    scene.SetCacheManager(cache)
    scene.SetDataIOManager(data_io)
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    app.GetColorLogic().SetMRMLScene(scene)
    app.GetColorLogic().AddDefaultColorNodes()
    app.SetSliceLogics(vtk.vtkCollection())
    app.SetViewLogics(vtk.vtkCollection())

    keep_alive = []

    def module_logic(cls, name):
        logic = cls()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        keep_alive.append(logic)
        return logic

    module_logic(slicer.vtkSlicerColorLogic, "Colors")
    module_logic(slicer.vtkSlicerSubjectHierarchyModuleLogic, "SubjectHierarchy")
    volumes = module_logic(slicer.vtkSlicerVolumesLogic, "Volumes")
    segmentations = module_logic(slicer.vtkSlicerSegmentationsModuleLogic, "Segmentations")
    sequences = module_logic(slicer.vtkSlicerSequencesLogic, "Sequences")
    # The Terminologies logic logs errors for Slicer's default terminology files, absent from slicer-core.
    terminologies = module_logic(slicer.vtkSlicerTerminologiesModuleLogic, "Terminologies")
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    # Slice and slice composite nodes, as Slicer's layout makes them.
    for view, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        slice_logic = slicer.vtkMRMLSliceLogic()
        slice_logic.SetMRMLApplicationLogic(app)
        slice_logic.SetMRMLScene(scene)
        slice_logic.AddSliceNode(view).SetOrientation(orientation)
        app.GetSliceLogics().AddItem(slice_logic)
    return SlicerScene(scene, app, volumes, segmentations, sequences, terminologies, keep_alive)


def knee_masks() -> tuple[np.ndarray, np.ndarray]:
    """Femur above, tibia below, a gap (the joint) between them; arrays in (i, j, k) order."""
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    shaft = (i - 24) ** 2 / 14**2 + (j - 20) ** 2 / 11**2 <= 1
    return shaft & (k >= 13) & (k <= 21), shaft & (k >= 2) & (k <= 10)


def write_volume(path: Path, array: np.ndarray) -> None:
    import nrrd

    header = {
        "space": "left-posterior-superior",
        "space directions": IJK_TO_LPS[:3, :3].T,
        "space origin": IJK_TO_LPS[:3, 3],
    }
    nrrd.write(str(path), array, header, index_order="F")


def write_segmentation(path: Path, femur: np.ndarray, tibia: np.ndarray) -> None:
    import slicerio

    segmentation = slicerio.create_segmentation(SHAPE, IJK_TO_LPS)
    slicerio.add_segment(segmentation, femur, {"id": "Segment_1", "name": "Femur", "color": list(FEMUR_COLOR)})
    slicerio.add_segment(segmentation, tibia, {"id": "Segment_2", "name": "Tibia", "color": list(TIBIA_COLOR)})
    slicerio.write_segmentation(str(path), segmentation)


def write_input_image(folder: Path, name: str = "knee") -> Path:
    femur, tibia = knee_masks()
    rng = np.random.default_rng(0)
    image = rng.normal(80.0, 8.0, SHAPE).astype(np.float32) + 220.0 * femur + 160.0 * tibia
    path = folder / f"{name}.nrrd"
    write_volume(path, image)
    return path


def write_engine_outputs(folder: Path, name: str = "knee", samples: int = 3, with_labels: bool = True) -> Path:
    """Files shaped like `ldseg segment` output (ldseg/outputs.py); returns the summary path.

    with_labels=False leaves the labels out of the summary, so the import takes them from the card.

    The uncertainty is high in a band around the femur's lower surface (one big region) and in a
    small blob inside the tibia, so "next uncertain region" has a known order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    femur, tibia = knee_masks()
    write_segmentation(folder / f"{name}.seg.nrrd", femur, tibia)
    uncertainty = np.zeros(SHAPE, np.float32)
    uncertainty[10:38, 10:30, 11:15] = 0.9
    uncertainty[22:25, 18:21, 5:7] = 0.7
    write_volume(folder / f"{name}-uncertainty.nrrd", uncertainty)
    sample_names = []
    for number in range(samples):
        sample_femur = femur.copy()
        sample_femur[:, :, 13] = number % 2 == 0
        sample_femur &= femur | (np.arange(SHAPE[2]) == 13)[None, None, :]
        sample_name = f"{name}-sample-{number:02d}.seg.nrrd"
        write_segmentation(folder / sample_name, sample_femur, tibia)
        sample_names.append(sample_name)
    files = {
        "segmentation": f"{name}.seg.nrrd",
        "uncertainty": f"{name}-uncertainty.nrrd",
        "summary": f"{name}.json",
        **{f"sample_{number:02d}": sample_name for number, sample_name in enumerate(sample_names)},
    }
    summary = RunSummary(
        format_version=SUMMARY_FORMAT_VERSION,
        model=ModelIdentity("ldseg-knee", "1.2.0", "0" * 64),
        settings=SegmentSettings(samples=max(samples, 1), steps=2, keep_samples=samples > 0),
        device="cpu",
        structures={"Femur": StructureFigures(12.5, 0.12, 0.6, 0.95), "Tibia": StructureFigures(10.25, 0.05, 0.3, 0.98)},
        uncertainty_range=(0.0, math.log(3)),
        files=files,
        labels=knee_labels() if with_labels else (),
        timings_seconds={"sampling": 3.0, "total": 4.2},
    )
    path = folder / f"{name}.json"
    path.write_text(summary.to_json(), encoding="utf-8")
    return path
