"""Render a picture of each module's panel offscreen with PySide6, from the real .ui files and the task specs.

Run from the repository root: ``QT_QPA_PLATFORM=offscreen python tests/slicer/render_panels.py`` (writes
``docs/images/panel-<task>.png``). Slicer's own widget classes (CTK, qMRML) do not exist outside Slicer; simple
PySide6 preview widgets of the same names stand in for them so the layout reads as it does in Slicer. The
dynamic parts are filled by the same plain-Python helpers the panel uses (selector labels, auto-assigned phantom
node names, model list, device and modality items), and the registration tab shows the fit of the phantom's own
landmark pairs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "MultimodalSeg"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from multimodalseg.tasks import TaskSpec, all_tasks, get_task  # noqa: E402
from MultimodalSegLib import Models, SampleFiles  # noqa: E402
from MultimodalSegLib.Landmarks import MODES, summarizeFit  # noqa: E402
from MultimodalSegLib.Settings import (  # noqa: E402
    DEVICE_ITEMS,
    modalityItems,
    pointListLabels,
    registrationTabTitle,
    roleLabel,
    skullStripItems,
)
from PySide6.QtCore import Property, QFile, Qt  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QWidget,
)

UI_DIR = REPO / "MultimodalSeg" / "Resources" / "UI"
OUT_DIR = REPO / "docs" / "images"


# -- preview widgets named like Slicer's classes -------------------------------------------------------------------

class ctkCollapsibleButton(QGroupBox):  # noqa: N801 (named like the class in the .ui)
    def _text(self) -> str:
        return self.title()

    def _setText(self, text: str) -> None:
        self.setTitle("\u25bc " + text)

    def _collapsed(self) -> bool:
        return bool(self.property("_collapsed"))

    def _setCollapsed(self, collapsed: bool) -> None:
        self.setProperty("_collapsed", collapsed)

    text = Property(str, _text, _setText)
    collapsed = Property(bool, _collapsed, _setCollapsed)


class qMRMLNodeComboBox(QComboBox):  # noqa: N801
    pass


class qMRMLWidget(QWidget):  # noqa: N801
    pass


class qSlicerMarkupsPlaceWidget(QToolButton):  # noqa: N801
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setText("\u271a Place")


class ctkDirectoryButton(QPushButton):  # noqa: N801
    def __init__(self, parent=None) -> None:
        super().__init__("~/MultimodalSeg/training", parent)


PREVIEW_CLASSES = (ctkCollapsibleButton, qMRMLNodeComboBox, qMRMLWidget, qSlicerMarkupsPlaceWidget, ctkDirectoryButton)


def load(name: str) -> QWidget:
    loader = QUiLoader()
    for cls in PREVIEW_CLASSES:
        loader.registerCustomWidget(cls)
    f = QFile(str(UI_DIR / name))
    f.open(QFile.ReadOnly)
    widget = loader.load(f)
    f.close()
    if widget is None:
        raise RuntimeError(f"{name}: {loader.errorString()}")
    return widget


def child(widget: QWidget, name: str):
    found = widget.findChild(QWidget, name)
    if found is None:
        raise KeyError(name)
    return found


def expand(box: QWidget, expanded: bool) -> None:
    """A collapsed preview box shows only its title, as ctkCollapsibleButton does."""
    for w in box.findChildren(QWidget, options=Qt.FindDirectChildrenOnly):
        w.setVisible(expanded)
    box.setTitle(("\u25bc " if expanded else "\u25b6 ") + box.title()[2:])
    if not expanded:
        box.setFlat(True)
        box.setMaximumHeight(24)


# -- filling a panel like Panel.py does ---------------------------------------------------------------------------

def landmark_tab(task: TaskSpec, role: str, fit_points: bool) -> QWidget:
    tab = load("LandmarkPanel.ui")
    fixed_text, moving_text = pointListLabels(task, role)
    child(tab, "fixedPointsLabel").setText(fixed_text)
    child(tab, "movingPointsLabel").setText(moving_text)
    child(tab, "fixedPointsSelector").addItem(f"{task.input(task.reference_role).title} phantom landmarks")
    child(tab, "movingPointsSelector").addItem(f"{task.input(role).title} phantom landmarks")
    child(tab, "transformSelector").addItem(f"{task.input(role).title} to {task.input(task.reference_role).title}")
    for _mode, text in MODES:
        child(tab, "modeComboBox").addItem(text)
    table = child(tab, "pairsTableWidget")
    table.horizontalHeader().setStretchLastSection(True)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(22)
    if fit_points:
        from multimodalseg.phantoms import make_case
        from multimodalseg.registration import lps_to_ras

        case = make_case(task.id, 0)
        summary = summarizeFit(lps_to_ras(case.landmarks[task.reference_role]), lps_to_ras(case.landmarks[role]),
                               "rigid")
        table.setRowCount(len(summary.rows))
        for r, row in enumerate(summary.rows):
            for c, text in enumerate(row.cells()):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                table.setItem(r, c, item)
        child(tab, "rmsLabel").setText(summary.rmsText)
        child(tab, "messageLabel").setText(summary.message)
    table.setMinimumHeight(150)
    return tab


def task_panel(task: TaskSpec, fit_points: bool = True) -> QWidget:
    panel = load("MultimodalSeg.ui")
    child(panel, "taskDescriptionLabel").setText(task.description)
    child(panel, "referenceHintLabel").setVisible(len(task.inputs) > 1)
    form: QFormLayout = child(panel, "inputsFrame").layout()
    modality = task.modalities[0] if task.modalities else None
    for spec in task.inputs:
        label = QLabel(roleLabel(task, spec.role))
        if spec.reference:
            label.setStyleSheet("font-weight: bold")
        selector = qMRMLNodeComboBox()
        selector.addItem(SampleFiles.nodeName(task, spec.role, modality))
        form.addRow(label, selector)
    moving = [spec.role for spec in task.inputs if not spec.reference]
    registration = child(panel, "registrationCollapsibleButton")
    tabs: QTabWidget = child(panel, "registrationTabWidget")
    for k, role in enumerate(moving):
        tabs.addTab(landmark_tab(task, role, fit_points and k == 0), registrationTabTitle(task, role))
    registration.setVisible(bool(moving))
    for choice in Models.modelChoices(task.id):
        child(panel, "modelComboBox").addItem(choice.text)
    for _value, text in DEVICE_ITEMS:
        child(panel, "deviceComboBox").addItem(text)
    child(panel, "gpuIndexSpinBox").setEnabled(False)
    modalities = modalityItems(task)
    child(panel, "modalityLabel").setVisible(bool(modalities))
    child(panel, "modalityComboBox").setVisible(bool(modalities))
    for _value, text in modalities:
        child(panel, "modalityComboBox").addItem(text)
    child(panel, "suvCollapsibleButton").setVisible("pet" in task.roles)  # as the panel does
    stripping = skullStripItems(task)
    child(panel, "skullStripLabel").setVisible(bool(stripping))
    child(panel, "skullStripComboBox").setVisible(bool(stripping))
    for _value, text in stripping:
        child(panel, "skullStripComboBox").addItem(text)
    child(panel, "outputSegmentationSelector").addItem("None")
    for name in ("logCollapsibleButton",):
        expand(child(panel, name), False)
    return panel


def render(task_id: str, path: Path, width: int = 440, fit_points: bool = True) -> Path:
    app = QApplication.instance() or QApplication([])
    panel = task_panel(get_task(task_id), fit_points)
    panel.resize(width, 200)
    panel.adjustSize()
    panel.resize(width, panel.sizeHint().height())
    app.processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not panel.grab().save(str(path)):
        raise RuntimeError(f"could not write {path}")
    # A GUI picture needs few colours: a 64-colour palette keeps the README pictures small.
    from PIL import Image

    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)
    return path


def main(out_dir: Path = OUT_DIR) -> list[Path]:
    return [render(task.id, out_dir / f"panel-{task.id}.png") for task in all_tasks()]


if __name__ == "__main__":
    for written in main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR):
        print(written)
