"""LDSeg for 3D Slicer: latent-diffusion segmentation of femur and tibia in knee MRI, with uncertainty.

The module file only wires the panel to the logic. The work happens in the engine's own command
line, run in a background process (LDSegLib/process.py), and in the scene layer (LDSegLib/scene.py),
which imports the engine's result files into the scene; both work without this file.

This file keeps to Python 3.9's grammar and imports LDSegLib (Python 3.11+) only after checking the
version, so that an older Slicer (5.8 ships Python 3.9) shows which Slicer LDSeg needs instead of a
traceback.
"""

import sys
from typing import Annotated

import qt
import slicer
import vtk
import ldseg.choices as choices
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MINIMUM_PYTHON = (3, 11)
SUPPORTED_SLICER = "3D Slicer 5.10 or later"
PYTHON_PROBLEM = (
    None
    if sys.version_info >= MINIMUM_PYTHON
    else f"LDSeg needs {SUPPORTED_SLICER} (Python 3.12); this Slicer runs Python "
    f"{sys.version_info[0]}.{sys.version_info[1]}. Install a current Slicer from https://download.slicer.org."
)

if PYTHON_PROBLEM is None:
    from ldseg.card import CARD_FILE, ModelCard
    from ldseg.settings import SegmentSettings
    from LDSegLib import dependencies, display, paths
    from LDSegLib.devices import DeviceProbe
    from LDSegLib.edits import EditTrackers
    from LDSegLib.input_check import input_problem
    from LDSegLib.models import ModelImport, chosen_index, label, new_arrival
    from LDSegLib.report import run_report
    from LDSegLib.run import RunError, RunSettings, RunSlot, SegmentationRun
    from LDSegLib.sample import sample_data_source
    from LDSegLib.scene import RESULT_ATTRIBUTE, DisplaySettings, ImportTargets
    from LDSegLib.terminology import load_terminology
    from LDSegLib.uncertain_regions import RegionCursor, uncertain_regions

DOCUMENTATION_URL = "https://github.com/ldseg/LDSegSlicer/blob/main/docs/slicer-module.md"
HIGH_UNCERTAINTY_FRACTION = 0.5  # regions for "Next uncertain region": above half the measure's range
UNCERTAINTY_ATTRIBUTE = "LDSeg.UncertaintyMeasure"  # set by LDSegLib/scene.py on uncertainty maps
DICOM_SEG_PLUGIN = "DICOMSegmentationPlugin"  # Slicer core from 5.12, QuantitativeReporting before


class LDSeg(ScriptedLoadableModule):
    """Module metadata; loads the shipped terminology and registers the sample once Slicer has started."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LDSeg Knee"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["LDSegSlicer developers"]
        self.parent.helpText = (
            "Segments the femur and the tibia in a knee MRI with LDSeg, a latent-diffusion model that draws "
            "several plausible segmentations and fuses them, and shows where they disagree as an uncertainty "
            f'heatmap. Needs {SUPPORTED_SLICER}. See the <a href="{DOCUMENTATION_URL}">module documentation</a>.'
        )
        if PYTHON_PROBLEM:
            self.parent.helpText = f"<b>{PYTHON_PROBLEM}</b><br>" + self.parent.helpText
        self.parent.acknowledgementText = (
            "Based on LDSeg: F. Zaman et al., latent diffusion for medical image segmentation "
            "(github.com/FahimZaman/LDSeg)."
        )
        if PYTHON_PROBLEM is None:
            # ScriptedLoadableModule looks for Resources/Icons inside the module folder; ours is beside it.
            self.parent.icon = qt.QIcon(str(paths.icon_file()))
            slicer.app.connect("startupCompleted()", _onStartupCompleted)


def _onStartupCompleted():
    """Slicer's terminologies lack the tibia: make the shipped .term.json known to the selector; offer
    the sample knee in the Sample Data module; track corrections of LDSeg results from now on."""
    load_terminology(slicer.modules.terminologies.logic())
    editTrackers()
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(**sample_data_source())


_editTrackers = []


def editTrackers():
    """The application's one edit-tracking registry, started with Slicer: corrections of LDSeg results
    in a loaded scene count even if the LDSeg panel is never opened."""
    if not _editTrackers:
        _editTrackers.append(EditTrackers(slicer.mrmlScene))
    return _editTrackers[0]


@parameterNodeWrapper
class LDSegParameterNode:
    """Panel state, saved with the scene. `model` is the chosen package's folder."""

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    samples: Annotated[int, WithinRange(1, choices.MAX_SAMPLES)] = 8
    ddimSteps: Annotated[int, WithinRange(1, choices.MAX_STEPS)] = 2
    fusion: Annotated[str, Choice(choices.FUSION_METHODS)] = "mean"
    uncertaintyMeasure: Annotated[str, Choice(choices.UNCERTAINTY_MEASURES)] = "entropy"
    device: Annotated[str, Choice(choices.DEVICES)] = "auto"
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    saveSamples: bool = False
    allComponents: bool = False
    outputSegmentation: vtkMRMLSegmentationNode
    outputUncertainty: vtkMRMLScalarVolumeNode
    uncertaintyOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    uncertaintyThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.2
    show3DAfterRun: bool = False


class LDSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: input, model and Segment up front; Advanced settings collapsed; results; details."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._deviceProbe = None
        self._modelImport = None
        self._models = []
        self._appliedDisplay = None
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.timeout.connect(self.onTimer)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        if PYTHON_PROBLEM:
            message = qt.QLabel(PYTHON_PROBLEM)
            message.wordWrap = True
            self.layout.addWidget(message)
            self.layout.addStretch(1)
            return
        uiWidget = slicer.util.loadUI(str(paths.panel_file()))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LDSegLogic()
        # Outputs to overwrite: earlier LDSeg results only, so the input can never be chosen.
        self.ui.outputUncertaintySelector.addAttribute("vtkMRMLScalarVolumeNode", UNCERTAINTY_ATTRIBUTE)
        self.ui.outputSegmentationSelector.addAttribute("vtkMRMLSegmentationNode", RESULT_ATTRIBUTE)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.logic.cancel)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.openModelFolderButton.connect("clicked(bool)", self.onOpenModelFolder)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelSelected)
        self.ui.nextRegionButton.connect("clicked(bool)", self.onNextRegion)
        self.ui.show3DButton.connect("clicked(bool)", self.onShow3D)
        self.ui.cancelButton.enabled = False

        self.refreshModels()
        self._deviceProbe = DeviceProbe()
        qt.QTimer.singleShot(500, self.showDetectedDevice)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Closing the module or Slicer: the engine is stopped (waited for) and its work folder removed."""
        self._timer.stop()
        if self.logic is not None:
            self.logic.cleanup()
        self.removeObservers()

    def enter(self) -> None:
        if not PYTHON_PROBLEM:
            self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)

    def onSceneStartClose(self, caller, event) -> None:
        # A running segmentation cancels itself when its scene closes (LDSegLib/run.py).
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        index = chosen_index(self._models, self._parameterNode.model)
        self.ui.modelComboBox.setCurrentIndex(index)
        self.onModelSelected(index)
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume and input_problem(firstVolume) is None:
                self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
        self._parameterNode = parameterNode
        self._appliedDisplay = self._displayWanted()  # what the views show now is not to be undone
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
            self.onParameterChanged()

    def onParameterChanged(self, caller=None, event=None) -> None:
        """Keeps Segment enabled only for a valid input and a model; applies the display controls."""
        parameters = self._parameterNode
        if parameters is None:  # between closing and reopening the scene
            return
        running = self.logic.running
        problem = input_problem(parameters.inputVolume) or (None if parameters.model else self._noModelMessage())
        self.ui.applyButton.enabled = problem is None and not running
        self.ui.applyButton.toolTip = problem or "Run LDSeg on the input volume."
        if not running and problem:
            self.ui.statusLabel.text = problem
        uncertainty = parameters.outputUncertainty
        wanted = self._displayWanted()
        if wanted is not None and wanted != self._appliedDisplay:
            # Only when the sliders (or the map) changed: any other parameter change, or opening the
            # module again, must not undo display settings made by hand in the slice views.
            display.set_overlay_opacity(slicer.mrmlScene, parameters.uncertaintyOpacity)
            display.set_threshold_fraction(uncertainty, parameters.uncertaintyThreshold)
        self._appliedDisplay = wanted
        self.ui.nextRegionButton.enabled = bool(uncertainty)
        self.ui.show3DButton.enabled = bool(parameters.outputSegmentation)

    def _displayWanted(self):
        """The heatmap settings the sliders ask for, or None without an LDSeg uncertainty map."""
        parameters = self._parameterNode
        uncertainty = parameters.outputUncertainty if parameters else None
        if not (uncertainty and uncertainty.GetDisplayNode() and uncertainty.GetAttribute(RESULT_ATTRIBUTE)):
            return None
        return (uncertainty.GetID(), parameters.uncertaintyOpacity, parameters.uncertaintyThreshold)

    def refreshModels(self) -> None:
        self._models = self.logic.installedModels()
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        for model in self._models:
            combo.addItem(label(model))
            combo.setItemData(combo.count - 1, str(model.directory), qt.Qt.ToolTipRole)
        combo.blockSignals(False)
        if self._parameterNode:
            index = chosen_index(self._models, self._parameterNode.model)
            combo.setCurrentIndex(index)
            self.onModelSelected(index)

    def onModelSelected(self, index: int) -> None:
        model = self._models[index] if 0 <= index < len(self._models) else None
        if self._parameterNode:
            if model and str(model.directory) != self._parameterNode.model:  # a newly chosen model: its card's defaults
                diffusion = ModelCard.load(model.directory / CARD_FILE).diffusion
                self._parameterNode.samples = diffusion.default_samples
                self._parameterNode.ddimSteps = diffusion.default_steps
            self._parameterNode.model = str(model.directory) if model else ""

    def _noModelMessage(self) -> str:
        return "No LDSeg model is installed. Press Import... and choose a model package (.zip or folder)."

    def showDetectedDevice(self) -> None:
        if self._deviceProbe.result is None:
            qt.QTimer.singleShot(500, self.showDetectedDevice)
            return
        self.ui.detectedDeviceLabel.text = self._deviceProbe.result
        self.ui.packageInfoLabel.text = self._deviceProbe.packages

    def onImportModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(), "Import LDSeg model package", "",
            "LDSeg model package (*.zip model-card.json)",
        )
        if not path:
            return
        with slicer.util.tryWithErrorDisplay("The model could not be imported.", waitCursor=True):
            if not self.ensureDependencies():  # the import loads the package (torch, safetensors)
                return
            self._modelImport = ModelImport(path)
            self.ui.importModelButton.enabled = False
            self.ui.statusLabel.text = f"Importing the model package {self._modelImport.source}..."
            qt.QTimer.singleShot(300, self.onImportTimer)

    def onImportTimer(self) -> None:
        modelImport = self._modelImport
        if not modelImport.finished:
            qt.QTimer.singleShot(300, self.onImportTimer)
            return
        self._modelImport = None
        self.ui.importModelButton.enabled = True
        before = self._models
        self.refreshModels()
        imported = new_arrival(before, self._models)
        if imported >= 0:  # a radiologist importing a model means to use it
            self.ui.modelComboBox.setCurrentIndex(imported)
        if modelImport.error:
            self.ui.statusLabel.text = "The model could not be imported."
            self.log(f"Model import of {modelImport.source} failed:\n{modelImport.error}")
            slicer.util.errorDisplay(modelImport.error, windowTitle="LDSeg model import")
        else:
            self.ui.statusLabel.text = modelImport.message
            self.log(modelImport.message)

    def onOpenModelFolder(self) -> None:
        folder = self.logic.modelFolder()
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(folder)))

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("LDSeg could not start.", waitCursor=True):
            if not self.ensureDependencies():
                return
            self.logic.startSegmentation(self._parameterNode)
            self.ui.applyButton.enabled = False
            self.ui.cancelButton.enabled = True
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Starting the LDSeg engine..."
            self._timer.start()

    def ensureDependencies(self) -> bool:
        """Asks before installing anything; explains what to do when the user declines."""
        missing = self.logic.missingDependencies()
        if not missing:
            return True
        question = dependencies.explain(missing) + "\n\nInstall them now?"
        if not slicer.util.confirmOkCancelDisplay(question, "LDSeg needs Python packages"):
            self.ui.statusLabel.text = dependencies.explain(missing)
            return False
        dependencies.install(missing)
        still = self.logic.missingDependencies()
        if still:
            raise RunError(dependencies.explain(still) + "\nRestart Slicer if they were just installed.")
        return True

    def onTimer(self) -> None:
        state = self.logic.poll()
        if state is None:
            return
        self.ui.progressBar.value = int(round(100 * state.fraction))
        self.ui.progressBar.format = f"{state.stage}: %p%"
        if not state.finished:
            return
        self._timer.stop()
        self.ui.cancelButton.enabled = False
        self.onParameterChanged()
        run = self.logic.slot.current
        self.log(run_report(state, self.ui.modelComboBox.currentText, run.input_volume.GetName()))
        if state.cancelled:
            self.ui.statusLabel.text = "Cancelled; the scene was left as it was."
        elif state.error:
            self.ui.statusLabel.text = "Failed; the full message is under Details."
            slicer.util.errorDisplay(state.error.splitlines()[0], windowTitle="LDSeg", detailedText=state.error)
        else:
            seconds = f" in {state.seconds:.1f} s" if state.seconds is not None else ""
            self.ui.statusLabel.text = f"Done{seconds}. Correct the segments in the Segment Editor where needed."
            self.ui.statisticsTableView.setMRMLTableNode(state.result.statistics_table)
            self.ui.progressBar.value = 100
            if self._parameterNode.show3DAfterRun:
                display.show_in_3d(state.result.segmentation)
            self.ui.dicomExportLabel.text = self.logic.dicomExportNote()

    def log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text + "\n")

    def onShow3D(self) -> None:
        if self._parameterNode.outputSegmentation:
            display.show_in_3d(self._parameterNode.outputSegmentation)

    def onNextRegion(self) -> None:
        region, position, count = self.logic.nextUncertainRegion(self._parameterNode.outputUncertainty)
        if region is None:
            self.ui.regionLabel.text = "No region of high uncertainty."
            return
        self.ui.regionLabel.text = f"{position} of {count}: {region.volume_ml:.2f} mL"


class LDSegLogic(ScriptedLoadableModuleLogic):
    """Headless: usable from the Python console and scripts, without the panel."""

    def __init__(self) -> None:
        if PYTHON_PROBLEM:
            raise RuntimeError(PYTHON_PROBLEM)
        ScriptedLoadableModuleLogic.__init__(self)
        self.slot = RunSlot()
        self.edits = editTrackers()  # edited results become SEMIAUTOMATIC
        self._parameters = None
        self._regions = None

    def cleanup(self) -> None:
        """Stops a running segmentation, waiting for it and removing its work folder."""
        self.slot.close()

    def getParameterNode(self):
        return LDSegParameterNode(super().getParameterNode())

    @property
    def running(self) -> bool:
        return self.slot.current is not None and self.slot.current.running

    def missingDependencies(self):
        return dependencies.missing_requirements()

    def installedModels(self):
        from ldseg.store import list_models

        return list_models()

    def modelFolder(self):
        from ldseg.store import cache_directory

        folder = cache_directory() / "models"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def importModel(self, chosen: str, timeout: float = 600.0) -> str:
        """Imports a package (a .zip, its folder, or the model-card.json in it) and waits; for scripts."""
        modelImport = ModelImport(chosen)
        modelImport.wait(timeout)
        if modelImport.error or not modelImport.finished:
            raise RunError(modelImport.error or "The model import did not finish in time.")
        return modelImport.message

    def startSegmentation(self, parameters) -> "SegmentationRun":
        """Starts a background run; refuses while another one is in progress."""
        settings = RunSettings(model=parameters.model, device=parameters.device, segment=SegmentSettings(
            samples=parameters.samples, steps=parameters.ddimSteps, fusion=parameters.fusion,
            uncertainty=parameters.uncertaintyMeasure, seed=parameters.seed, keep_samples=parameters.saveSamples,
            largest_component=not parameters.allComponents,
        ))
        run = SegmentationRun(
            slicer.mrmlScene,
            parameters.inputVolume,
            settings,
            ImportTargets(parameters.outputSegmentation, parameters.outputUncertainty, parameters.saveSamples),
            DisplaySettings(parameters.uncertaintyOpacity, parameters.uncertaintyThreshold),
            sequences_logic=slicer.modules.sequences.logic(),
        )
        self.slot.start(run)
        self._parameters = parameters
        return run

    def poll(self):
        """Advances the current run; on success stores the outputs in the parameter node."""
        run = self.slot.current
        if run is None:
            return None
        wasFinished = run.state.finished
        with self.edits.paused():  # a run overwriting its earlier result is not a correction
            state = run.poll()
        if state.finished and not wasFinished and state.result is not None:
            self._parameters.outputSegmentation = state.result.segmentation
            self._parameters.outputUncertainty = state.result.uncertainty
            self.edits.track(state.result.segmentation)
            self._regions = None
        return state

    def cancel(self) -> None:
        self.slot.cancel()

    def process(self, parameters, timeout: float = 3600.0):
        """Runs to the end (for scripts and the self test); returns the final RunState."""
        run = self.startSegmentation(parameters)
        with self.edits.paused():  # wait() imports the result
            run.wait(timeout)
        return self.poll()

    def dicomExportNote(self) -> str:
        """Empty when Slicer can export the result as DICOM SEG, else what to install."""
        plugins = getattr(slicer.modules, "dicomPlugins", {})
        if DICOM_SEG_PLUGIN in plugins:
            return ""
        return (
            "DICOM SEG export (Data module, right-click > Export to DICOM) needs the DICOM segmentation "
            "plugin: it is part of Slicer from 5.12; on Slicer 5.10 install the QuantitativeReporting extension."
        )

    def nextUncertainRegion(self, uncertaintyNode):
        """Centres the slice views on the next largest high-uncertainty region."""
        if uncertaintyNode is None:
            return None, 0, 0
        if self._regions is None or self._regions[0] is not uncertaintyNode:
            displayNode = uncertaintyNode.GetDisplayNode()
            low, high = displayNode.GetWindowLevelMin(), displayNode.GetWindowLevelMax()
            threshold = low + HIGH_UNCERTAINTY_FRACTION * (high - low)
            self._regions = (uncertaintyNode, RegionCursor(uncertain_regions(uncertaintyNode, threshold)))
        cursor = self._regions[1]
        region = cursor.next()
        if region is not None:
            display.center_slice_views(slicer.mrmlScene, region.center_ras)
        return region, cursor.position, len(cursor.regions)


class LDSegTest(ScriptedLoadableModuleTest):
    """The whole workflow inside Slicer ("Reload and Test"): needs the engine's packages and a model.

    Where they are missing (a build machine without torch, an older Slicer) the test is skipped with
    the reason, rather than failing.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_display_edit_and_cancel()

    def skipReason(self):
        if PYTHON_PROBLEM:
            return PYTHON_PROBLEM
        missing = dependencies.missing_requirements()
        return dependencies.explain(missing) if missing else None

    def test_segment_display_edit_and_cancel(self):
        reason = self.skipReason()
        if reason:
            self.delayDisplay(f"LDSeg self test skipped: {reason}")
            self.skipTest(reason)
        import numpy as np

        logic = LDSegLogic()
        models = logic.installedModels()
        self.assertTrue(models, "no LDSeg model installed")

        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "synthetic knee")
        grid = np.indices((48, 64, 64)).astype(np.float32)
        knee = 80 + 200 * (np.hypot(grid[1] - 32, grid[2] - 32) < 14)
        slicer.util.updateVolumeFromArray(volume, knee.astype(np.float32))
        volume.SetSpacing(1.5, 0.7, 0.7)
        slicer.util.setSliceViewerLayers(background=volume, fit=True)

        parameters = logic.getParameterNode()
        parameters.inputVolume = volume
        parameters.model = str(models[0].directory)
        parameters.samples = 2
        parameters.device = "cpu"
        state = logic.process(parameters)
        self.assertIsNone(state.error, state.error)
        self.delayDisplay(f"Segmented in {state.seconds} s")

        segmentation = parameters.outputSegmentation
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 2)
        femurId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Femur")
        femur = segmentation.GetSegmentation().GetSegment(femurId)
        value = vtk.mutable("")
        self.assertTrue(femur.GetTag("DICOM.SegmentAlgorithmType", value))
        self.assertEqual(str(value), "AUTOMATIC")
        composite = slicer.app.layoutManager().sliceWidget("Red").sliceLogic().GetSliceCompositeNode()
        self.assertEqual(composite.GetForegroundVolumeID(), parameters.outputUncertainty.GetID())
        self.assertEqual(state.result.statistics_table.GetNumberOfRows(), 2)

        # A correction (here through a labelmap import, as a script would) makes the segment SEMIAUTOMATIC.
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, femurId, volume)
        mask[0, 0, 0] = 1
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, femurId, volume)
        femur.GetTag("DICOM.SegmentAlgorithmType", value)
        self.assertEqual(str(value), "SEMIAUTOMATIC")

        # A cancelled run leaves the scene as it was.
        before = slicer.mrmlScene.GetNumberOfNodes()
        run = logic.startSegmentation(parameters)
        with self.assertRaises(RunError):
            logic.startSegmentation(parameters)  # refused while one is running
        run.cancel()
        run.wait(60)
        self.assertTrue(logic.poll().cancelled)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        logic.cleanup()
        self.delayDisplay("LDSeg self test passed")
