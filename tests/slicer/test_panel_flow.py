"""``Panel.TaskPanel``'s own control flow (issue 17 defects 2, 4, 11) with Slicer, qt and the widgets replaced by
small stand-ins that behave like the real ones where it matters: a node combo box emits ``currentNodeChanged``
when its node changes (also when set from code) and empties itself when its node leaves the scene; a parameter node
fires ``ModifiedEvent`` once per ``StartModify``/``EndModify``; closing the scene fires StartClose, removes every
node, then fires EndClose. What is checked is the panel's code, not Slicer's: parameter nodes only for the module
on screen, a cleared input staying empty (until the scene is closed), the landmark tabs following the parameter
node (a loaded scene), and save-for-training errors shown in the panel."""

from __future__ import annotations

import contextlib
import importlib
import sys
import types

import pytest
from multimodalseg.errors import UserError
from MultimodalSegLib.Settings import INPUT_REFERENCE_PREFIX, landmarkReferencePrefix

MODIFIED = 33  # vtkCommand::ModifiedEvent


class Widget:
    """Any widget: set attributes are plain values; an unknown name is a child widget (kept), and calling a widget
    returns a fresh one, so ``ui.inputsFrame.layout().addRow(...)`` and ``label.setStyleSheet(...)`` just work."""

    def __init__(self, *args, **values) -> None:
        self.slots: dict[str, list] = {}
        self.__dict__.update(values)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        child = self.__dict__[name] = Widget()
        return child

    def __call__(self, *args, **kw):
        return Widget()

    def connect(self, signal, slot) -> None:
        self.slots.setdefault(signal, []).append(slot)

    def emit(self, signal, *args) -> None:
        for slot in self.slots.get(signal, []):
            slot(*args)


class ComboBox(Widget):
    def __init__(self) -> None:
        super().__init__(items=[], currentIndex=-1, blocked=False)

    def addItem(self, text, data=None) -> None:
        self.items.append((text, data))
        if self.currentIndex < 0:
            self.currentIndex = 0

    def clear(self) -> None:
        self.items, self.currentIndex = [], -1

    def findData(self, data) -> int:
        return next((i for i, (_, d) in enumerate(self.items) if d == data), -1)

    def setCurrentIndex(self, index) -> None:
        if index != self.currentIndex:
            self.currentIndex = index
            if not self.blocked:
                self.emit("currentIndexChanged(int)", index)

    def blockSignals(self, blocked) -> None:
        self.blocked = blocked

    @property
    def currentData(self):
        return self.items[self.currentIndex][1] if 0 <= self.currentIndex < len(self.items) else None


class NodeComboBox(Widget):
    """qMRMLNodeComboBox: one current node, ``currentNodeChanged`` on every change."""

    def __init__(self) -> None:
        super().__init__(node=None)
        scene.combos.append(self)

    def currentNode(self):
        return self.node

    @property
    def currentNodeID(self):
        return self.node.GetID() if self.node is not None else None

    def setCurrentNode(self, node) -> None:
        if node is not self.node:
            self.node = node
            self.emit("currentNodeChanged(vtkMRMLNode*)", node)

    def setCurrentNodeID(self, nodeId) -> None:
        self.setCurrentNode(scene.GetNodeByID(nodeId))


class Node:
    def __init__(self, nodeId: str, name: str, kind: str = "vtkMRMLScalarVolumeNode") -> None:
        self.id, self.name, self.kind = nodeId, name, kind
        self.observers: list = []

    def GetID(self):
        return self.id

    def GetName(self):
        return self.name

    def IsA(self, kind):
        return kind == self.kind


class ParameterNode(Node):
    def __init__(self, nodeId: str) -> None:
        super().__init__(nodeId, "parameters", "vtkMRMLScriptedModuleNode")
        self.references: dict[str, str] = {}
        self.parameters: dict[str, str] = {}
        self.modifying, self.pending = 0, False

    def GetNodeReferenceID(self, role):
        return self.references.get(role)

    def GetNodeReference(self, role):
        return scene.GetNodeByID(self.references.get(role))

    def SetNodeReferenceID(self, role, nodeId) -> None:
        if self.references.get(role) != nodeId:
            self.references[role] = nodeId
            self.Modified()

    def GetParameter(self, name):
        return self.parameters.get(name, "")

    def SetParameter(self, name, value) -> None:
        if self.parameters.get(name) != value:
            self.parameters[name] = value
            self.Modified()

    def StartModify(self):
        was, self.modifying = self.modifying, 1
        return was

    def EndModify(self, was) -> None:
        self.modifying = was
        if not was and self.pending:
            self.pending = False
            self.Modified()

    def Modified(self) -> None:
        if self.modifying:
            self.pending = True
            return
        for event, callback in list(self.observers):
            if event == MODIFIED:
                callback(self, event)


class Scene:
    StartCloseEvent, EndCloseEvent, NodeAddedEvent = 1, 2, 3

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.observers: list = []
        self.combos: list[NodeComboBox] = []

    def GetNodeByID(self, nodeId):
        return self.nodes.get(nodeId) if nodeId else None

    def fire(self, event) -> None:
        for observed, callback in list(self.observers):
            if observed == event:
                callback(self, event)

    def add(self, node: Node) -> Node:
        self.nodes[node.id] = node
        self.fire(self.NodeAddedEvent)
        return node

    def close(self) -> None:
        self.fire(self.StartCloseEvent)
        for node in list(self.nodes.values()):
            del self.nodes[node.id]
            for combo in self.combos:
                if combo.node is node:
                    combo.setCurrentNode(None)
        self.fire(self.EndCloseEvent)


class ObservationMixin:
    """slicer.util.VTKObservationMixin: observers on the stand-in nodes and scene."""

    def __init__(self) -> None:
        self._observed: list = []

    def addObserver(self, obj, event, method) -> None:
        target = obj.observers
        target.append((event, method))
        self._observed.append((obj, event, method))

    def removeObserver(self, obj, event, method) -> None:
        if (event, method) in obj.observers:
            obj.observers.remove((event, method))

    def removeObservers(self) -> None:
        for obj, event, method in self._observed:
            self.removeObserver(obj, event, method)


scene = Scene()


def panelUi(path: str) -> Widget:
    """The widgets of MultimodalSeg.ui or LandmarkPanel.ui that the code reads back."""
    if path.endswith("LandmarkPanel.ui"):
        return Widget(fixedPointsSelector=NodeComboBox(), movingPointsSelector=NodeComboBox(),
                      transformSelector=NodeComboBox(), modeComboBox=ComboBox(),
                      liveUpdateCheckBox=Widget(checked=True))
    return Widget(modelComboBox=ComboBox(), deviceComboBox=ComboBox(), modalityComboBox=ComboBox(),
                  skullStripComboBox=ComboBox(),
                  gpuIndexSpinBox=Widget(value=0), ttaCheckBox=Widget(checked=False),
                  quickCheckBox=Widget(checked=False), trainingFolderButton=Widget(directory="."),
                  outputSegmentationSelector=NodeComboBox(), statusLabel=Widget(text=""))


@pytest.fixture
def panel_module(monkeypatch):
    global scene
    scene = Scene()
    markups = types.SimpleNamespace(**{name: i for i, name in enumerate(
        ("PointAddedEvent", "PointRemovedEvent", "PointModifiedEvent", "PointPositionDefinedEvent",
         "PointPositionUndefinedEvent", "PointStartInteractionEvent", "PointEndInteractionEvent",
         "PositionDefined"), start=100)})
    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = ObservationMixin
    util.WaitCursor = contextlib.nullcontext
    util.loadUI = lambda path: Widget(path=path)
    util.childWidgetVariables = lambda widget: panelUi(widget.path)
    util.getNodesByClass = lambda kind: [n for n in scene.nodes.values() if n.IsA(kind)]
    fake = types.ModuleType("slicer")
    fake.util, fake.mrmlScene, fake.vtkMRMLMarkupsNode = util, scene, markups
    fake.qMRMLNodeComboBox = NodeComboBox
    fake.qSlicerMarkupsPlaceWidget = types.SimpleNamespace(ForcePlaceMultipleMarkups=1)
    fake.app = types.SimpleNamespace(temporaryPath="/tmp", slicerHome="/tmp", connect=lambda *a: None)
    qt = types.ModuleType("qt")
    qt.QLabel, qt.QTimer = Widget, type("QTimer", (Widget,), {"singleShot": staticmethod(lambda ms, f: f())})
    qt.Qt = types.SimpleNamespace(ToolTipRole=3)
    vtk = types.ModuleType("vtk")
    vtk.vtkCommand = types.SimpleNamespace(ModifiedEvent=MODIFIED)
    for name, module in (("slicer", fake), ("slicer.util", util), ("qt", qt), ("vtk", vtk)):
        monkeypatch.setitem(sys.modules, name, module)
    for name in [n for n in sys.modules if n.startswith("MultimodalSegLib.")]:
        if name.rsplit(".", 1)[1] in ("Panel", "LandmarkPanel", "Logic", "Scene", "Install", "SlicerProcess",
                                      "Transforms"):
            monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("MultimodalSegLib.Panel")


class Logic:
    """The module logic as the panel uses it; ``getParameterNode`` makes the scene's node on first call."""

    def __init__(self) -> None:
        self.created, self.running, self.saveError = 0, False, None
        self.calls: list = []
        self.segmentError = None

    def getParameterNode(self):
        node = scene.GetNodeByID("vtkMRMLScriptedModuleNode1")
        if node is None:
            self.created += 1
            node = scene.add(ParameterNode("vtkMRMLScriptedModuleNode1"))
        return node

    def cancel(self) -> None:
        self.calls.append("cancel")

    def segment(self, inputs, **options):
        if self.segmentError is not None:
            raise self.segmentError
        self.calls.append(("segment", inputs, options))

    def saveForTraining(self, segmentation, inputs, folder, modality=None):
        if not folder:
            raise UserError("choose the training folder")
        raise self.saveError


def brainCase(prefix: str = "case") -> list[Node]:
    return [scene.add(Node(f"vtkMRMLScalarVolumeNode_{prefix}_{r}", f"{prefix}_{r}")) for r in
            ("flair", "t1", "t1ce", "t2")]


def makePanel(panel_module, logic: Logic):
    return panel_module.TaskPanel("brain-tumor", Widget(), logic)


def test_only_the_module_on_screen_makes_a_parameter_node_for_a_new_scene(panel_module):
    logic = Logic()
    panel = makePanel(panel_module, logic)
    panel.enter()
    assert logic.created == 1
    scene.close()
    assert logic.created == 2 and panel.parameterNode is not None  # on screen: ready for the new scene
    panel.exit()  # another module shown
    scene.close()
    assert logic.created == 2 and panel.parameterNode is None  # no node for a module nobody looks at
    panel.enter()
    assert logic.created == 3 and panel.parameterNode is not None


def test_a_cleared_input_stays_empty_until_the_scene_is_closed(panel_module):
    logic = Logic()
    flair, t1, t1ce, t2 = brainCase()
    panel = makePanel(panel_module, logic)
    panel.enter()
    assert panel.volumeForRole("t1") is t1 and panel.volumeForRole("t1ce") is t1ce
    assert panel.parameterNode.GetNodeReferenceID(INPUT_REFERENCE_PREFIX + "t1") == t1.id
    panel.inputSelectors["t1"].setCurrentNode(None)  # the user empties T1
    assert panel.parameterNode.GetNodeReferenceID(INPUT_REFERENCE_PREFIX + "t1") is None
    scene.add(Node("vtkMRMLScalarVolumeNode_other_t1", "other_t1"))  # a new volume arrives: auto-assignment runs
    assert panel.volumeForRole("t1") is None and panel.volumeForRole("flair") is flair
    scene.close()
    _, t1b, _, _ = brainCase("next")  # a new scene: the choice made for the old one does not carry over
    assert panel.volumeForRole("t1") is t1b


def test_the_landmark_tabs_follow_the_parameter_node(panel_module):
    logic = Logic()
    brainCase()
    panel = makePanel(panel_module, logic)
    panel.enter()
    moving = next(iter(panel.landmarkPanels))
    tab = panel.landmarkPanels[moving]
    fixedPoints = scene.add(Node("vtkMRMLMarkupsFiducialNode1", "fixed points", "vtkMRMLMarkupsFiducialNode"))
    movingPoints = scene.add(Node("vtkMRMLMarkupsFiducialNode2", "moving points", "vtkMRMLMarkupsFiducialNode"))
    # What a scene load does to the module's (singleton) parameter node: its references change, one Modified.
    p = panel.parameterNode
    was = p.StartModify()
    p.SetNodeReferenceID(landmarkReferencePrefix(moving) + "fixed", fixedPoints.id)
    p.SetNodeReferenceID(landmarkReferencePrefix(moving) + "moving", movingPoints.id)
    p.SetParameter(landmarkReferencePrefix(moving) + "mode", "affine")
    p.EndModify(was)
    assert tab.ui.fixedPointsSelector.currentNode() is fixedPoints
    assert tab.ui.movingPointsSelector.currentNode() is movingPoints
    assert tab.mode == "affine"
    assert any(e == 100 for e, _ in fixedPoints.observers)  # its point events are observed for the live fit


def test_save_for_training_never_takes_the_working_folder_and_shows_write_errors(panel_module):
    logic = Logic()
    brainCase()
    panel = makePanel(panel_module, logic)
    panel.enter()
    panel.ui.outputSegmentationSelector.setCurrentNode(scene.add(Node("seg", "seg", "vtkMRMLSegmentationNode")))
    assert panel.ui.trainingFolderButton.directory == "."  # ctkDirectoryButton's default: nothing chosen
    panel.onSaveForTraining()
    assert panel.ui.statusLabel.text == "choose the training folder"
    panel.ui.trainingFolderButton.directory = "/"
    logic.saveError = PermissionError(13, "Permission denied", "/BraTS20_Training_001")
    panel.onSaveForTraining()  # a slot: PythonQt would print an escaping error to the console only
    assert panel.ui.statusLabel.text.startswith("Saving the training case failed: [Errno 13] Permission denied")


def test_the_logic_refuses_the_working_folder_too(panel_module):
    logic_module = importlib.import_module("MultimodalSegLib.Logic")

    class BrainTumorLogic(logic_module.TaskLogicMixin):
        taskId = "brain-tumor"

    for folder in (".", "", None):  # from a script as from the panel: never Slicer's working folder
        with pytest.raises(UserError, match="choose the training folder"):
            BrainTumorLogic().saveForTraining(None, {}, folder)


def test_apply_runs_the_logic_in_the_background_and_the_same_button_cancels(panel_module):
    from MultimodalSegLib.Logic import SegmentResult

    logic = Logic()
    nodes = dict(zip(("flair", "t1", "t1ce", "t2"), brainCase()))
    panel = makePanel(panel_module, logic)
    panel.enter()
    panel.ui.deviceComboBox.setCurrentIndex(panel.ui.deviceComboBox.findData("gpu"))
    panel.ui.gpuIndexSpinBox.value = 1
    assert [d for _t, d in panel.ui.skullStripComboBox.items] == ["auto", "always", "never"]
    panel.ui.skullStripComboBox.setCurrentIndex(panel.ui.skullStripComboBox.findData("never"))
    panel.onApply()
    (name, inputs, options), = logic.calls
    assert inputs == nodes and options["device"] == "cuda:1" and options["wait"] is False
    assert options["skullStrip"] == "never"
    assert options["onFinished"] == panel.onSegmentFinished and options["suv"] is None
    assert panel.ui.applyButton.text == "Cancel"
    logic.running = True
    panel.onApply()  # the same button, while the job runs
    assert logic.calls[-1] == "cancel"
    logic.running = False
    panel.onSegmentFinished(SegmentResult("canceled", "canceled; no result was created"))
    assert panel.ui.applyButton.text == "Apply" and panel.ui.statusLabel.text == "Canceled; no result was created."
    logic.segmentError = UserError("select the T1ce volume for Brain Tumor (BraTS)")
    panel.onApply()
    assert panel.ui.statusLabel.text == "select the T1ce volume for Brain Tumor (BraTS)"
    assert panel.ui.applyButton.text == "Apply"
