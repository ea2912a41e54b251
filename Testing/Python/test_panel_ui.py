"""The panel (.ui) loads as a real Qt widget tree offscreen, and a screenshot of it is taken.

Slicer's CTK/qMRML classes are not available outside Slicer: QUiLoader falls back to the base class
declared in the .ui, and for the screenshot plain Qt stand-ins (group box, combo box, spin box) take
their place so the picture shows a populated panel. Set LDSEG_UPDATE_SCREENSHOTS=1 to refresh
Resources/Screenshots/panel.png.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtWidgets = pytest.importorskip("PySide6.QtWidgets")
QtUiTools = pytest.importorskip("PySide6.QtUiTools")
from PySide6.QtCore import QFile, QPoint, QRect  # noqa: E402

import ldseg.choices as choices  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PANEL_FILE = REPO / "Resources" / "UI" / "LDSegSlicer.ui"
SCREENSHOT = REPO / "Resources" / "Screenshots" / "panel.png"

STAND_INS = {
    "ctkCollapsibleButton": QtWidgets.QGroupBox,
    "qMRMLNodeComboBox": QtWidgets.QComboBox,
    "ctkSliderWidget": QtWidgets.QDoubleSpinBox,
    "qMRMLTableView": QtWidgets.QTableView,
    "qMRMLWidget": QtWidgets.QWidget,
}


@pytest.fixture(scope="module")
def application():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def load(loader):
    ui_file = QFile(str(PANEL_FILE))
    assert ui_file.open(QFile.ReadOnly)
    widget = loader.load(ui_file)
    ui_file.close()
    assert widget is not None, loader.errorString()
    return widget


class StandInLoader(QtUiTools.QUiLoader):
    def createWidget(self, class_name, parent=None, name=""):
        if class_name in STAND_INS:
            widget = STAND_INS[class_name](parent)
            widget.setObjectName(name)
            return widget
        return super().createWidget(class_name, parent, name)


def test_the_panel_is_a_valid_qt_designer_file(application):
    panel = load(QtUiTools.QUiLoader())
    assert panel.objectName() == "LDSegSlicer"
    find = lambda kind, name: panel.findChild(kind, name)  # noqa: E731
    assert find(QtWidgets.QPushButton, "applyButton").text() == "Segment"
    assert find(QtWidgets.QPushButton, "cancelButton").text() == "Cancel"
    assert find(QtWidgets.QPushButton, "nextRegionButton").text() == "Next uncertain region"
    assert find(QtWidgets.QProgressBar, "progressBar") is not None
    assert find(QtWidgets.QComboBox, "modelComboBox") is not None
    assert find(QtWidgets.QComboBox, "deviceComboBox") is not None
    assert find(QtWidgets.QLabel, "detectedDeviceLabel") is not None
    assert find(QtWidgets.QPushButton, "show3DButton").text() == "Show 3D"
    assert find(QtWidgets.QCheckBox, "show3DAfterRunCheckBox").property("SlicerParameterName") == "show3DAfterRun"
    assert find(QtWidgets.QPlainTextEdit, "logTextEdit").isReadOnly()
    assert find(QtWidgets.QLabel, "packageInfoLabel") is not None
    samples = find(QtWidgets.QSpinBox, "samplesSpinBox")
    assert (samples.minimum(), samples.maximum(), samples.value()) == (1, choices.MAX_SAMPLES, 8)
    # Slicer widgets fall back to their declared base classes but keep their names and properties.
    selector = find(QtWidgets.QWidget, "outputSegmentationSelector")
    assert selector.property("noneDisplay") == "Create new segmentation"
    assert selector.property("SlicerParameterName") == "outputSegmentation"
    assert isinstance(find(QtWidgets.QTableView, "statisticsTableView"), QtWidgets.QTableView)


def section_of(widget):
    """The collapsible section a widget sits in."""
    while widget is not None and not widget.objectName().endswith("CollapsibleButton"):
        widget = widget.parentWidget()
    return widget


def test_a_radiologist_sees_input_model_and_segment_first_and_the_settings_are_folded_away(application):
    """As in SlicerTotalSegmentator and SlicerMONAIAuto3DSeg: the engine's knobs in a collapsed Advanced section."""
    panel = load(QtUiTools.QUiLoader())
    layout = panel.layout()
    items = [layout.itemAt(index) for index in range(layout.count())]
    names = [(item.widget() or item.layout()).objectName() for item in items if item.widget() or item.layout()]
    assert names[:3] == ["inputsCollapsibleButton", "runLayout", "progressBar"]
    advanced = panel.findChild(QtWidgets.QWidget, "advancedCollapsibleButton")
    assert advanced.property("collapsed") is True
    for name in ("samplesSpinBox", "stepsSpinBox", "fusionComboBox", "uncertaintyComboBox", "seedSpinBox",
                 "deviceComboBox", "saveSamplesCheckBox", "allComponentsCheckBox", "outputSegmentationSelector",
                 "outputUncertaintySelector"):
        assert section_of(panel.findChild(QtWidgets.QWidget, name)) is advanced, name
    for name in ("inputVolumeSelector", "modelComboBox", "importModelButton"):
        assert section_of(panel.findChild(QtWidgets.QWidget, name)).objectName() == "inputsCollapsibleButton"
    details = panel.findChild(QtWidgets.QWidget, "detailsCollapsibleButton")
    assert details.property("collapsed") is True
    assert section_of(panel.findChild(QtWidgets.QWidget, "logTextEdit")) is details


def test_panel_screenshot_shows_the_controls(application, tmp_path):
    """The panel as Slicer shows it during a run: Advanced and Details folded (stand-in: title only); the choices
    filled from the engine's registry, and every control in view drawn inside the picture with its text."""
    panel = load(StandInLoader())
    for box in panel.findChildren(QtWidgets.QGroupBox):
        collapsed = box.property("collapsed")
        box.setTitle(("\u25b8 " if collapsed else "\u25be ") + box.property("text"))
        if collapsed:
            for child in box.findChildren(QtWidgets.QWidget):
                child.hide()
            box.setFixedHeight(28)
    for combo in panel.findChildren(QtWidgets.QComboBox):
        if combo.property("noneDisplay"):
            combo.addItem(combo.property("noneDisplay"))
    panel.findChild(QtWidgets.QComboBox, "inputVolumeSelector").addItem("LDSegKnee")
    card = json.loads((REPO / "Resources" / "Models" / "knee-bones" / "model-card.json").read_text())
    panel.findChild(QtWidgets.QComboBox, "modelComboBox").addItem(f"{card['name']} {card['version']} (bundled)")
    offered = {"fusionComboBox": choices.FUSION_METHODS, "uncertaintyComboBox": choices.UNCERTAINTY_MEASURES,
               "deviceComboBox": choices.DEVICES}
    for name, items in offered.items():
        panel.findChild(QtWidgets.QComboBox, name).addItems(list(items))
    progress = panel.findChild(QtWidgets.QProgressBar, "progressBar")
    progress.setFormat("Sampling: %p%")  # a run in progress; no result figures are shown (none were measured)
    progress.setValue(40)
    panel.findChild(QtWidgets.QPushButton, "applyButton").setEnabled(False)
    panel.findChild(QtWidgets.QLabel, "statusLabel").setText("Sampling 8 segmentations...")
    table = panel.findChild(QtWidgets.QTableView, "statisticsTableView")
    from PySide6.QtGui import QStandardItemModel

    model = QStandardItemModel(0, 5, table)
    model.setHorizontalHeaderLabels(["Structure", "Volume (mL)", "Mean uncertainty", "Boundary uncertainty",
                                     "Sample agreement (Dice)"])
    table.setModel(model)
    table.resizeColumnsToContents()
    table.setMaximumHeight(110)
    panel.resize(440, 560)
    panel.show()
    application.processEvents()

    for name, items in offered.items():
        combo = panel.findChild(QtWidgets.QComboBox, name)
        assert [combo.itemText(i) for i in range(combo.count())] == list(items)
        assert combo.currentText() == items[0]
    for kind, name in ((QtWidgets.QComboBox, "inputVolumeSelector"), (QtWidgets.QComboBox, "modelComboBox"),
                       (QtWidgets.QPushButton, "applyButton"), (QtWidgets.QProgressBar, "progressBar"),
                       (QtWidgets.QLabel, "statusLabel")):
        widget = panel.findChild(kind, name)
        assert widget.isVisible(), name
        area = QRect(widget.mapTo(panel, QPoint(0, 0)), widget.size())
        assert panel.rect().contains(area), f"{name} lies outside the picture"
        drawn = widget.grab().toImage()
        shades = {drawn.pixel(x, y) for x in range(drawn.width()) for y in range(0, drawn.height(), 2)}
        assert len(shades) > 3, f"{name} is drawn blank"
    image = panel.grab().toImage()
    path = tmp_path / "panel.png"
    assert image.save(str(path))
    if os.environ.get("LDSEG_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOT)
