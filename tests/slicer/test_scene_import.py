"""``Scene``'s result import against a stand-in of the MRML calls it makes (behaving as Slicer's do): the label map
goes into the segmentation in ONE import with a colour table of the task's labels (not one full-volume pass per
label), segments come out in the task's order with empty ones for absent labels, values outside the task's table
are dropped, and extra volumes read from the run's temporary folder live in memory (saved with the scene)."""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.tasks import get_task
from MultimodalSegLib.Results import ExtraVolume, segmentSpecs


class Segment:
    def __init__(self, name, color):
        self.name, self.color, self.terminology = name, tuple(color), ""

    def GetName(self):
        return self.name

    def SetColor(self, r, g, b):
        self.color = (r, g, b)

    def SetTerminology(self, text):
        self.terminology = text


class Segmentation:
    def __init__(self):
        self.ids: list[str] = []
        self.segments: dict[str, Segment] = {}
        self.voxels: dict[str, int] = {}

    def AddEmptySegment(self, sid, name, color):
        sid = sid or name
        self.ids.append(sid)
        self.segments[sid] = Segment(name, color)
        return sid

    def GetSegmentIdBySegmentName(self, name):
        return next((sid for sid in self.ids if self.segments[sid].name == name), "")

    def GetSegment(self, sid):
        return self.segments[sid]

    def SetSegmentIndex(self, sid, index):
        self.ids.remove(sid)
        self.ids.insert(index, sid)

    def GetNumberOfSegments(self):
        return len(self.ids)

    def GetNthSegment(self, i):
        return self.segments[self.ids[i]]

    def GetNthSegmentID(self, i):
        return self.ids[i]


class Node:
    counter = 0

    def __init__(self, kind, name="", array=None):
        Node.counter += 1
        self.kind, self.name, self.array, self.id = kind, name, array, f"{kind}{Node.counter}"
        self.colorNodeId = None
        self.storage = None
        self.modified = 0
        self.segmentation = Segmentation()
        self.names: dict[int, str] = {}

    def GetID(self):
        return self.id

    # colour table
    def SetTypeToUser(self):
        pass

    def SetNumberOfColors(self, n):
        self.size = n

    def SetColor(self, index, name, r, g, b, a):
        self.names[index] = name

    # volume
    def GetDisplayNode(self):
        return types.SimpleNamespace(SetAndObserveColorNodeID=lambda i: setattr(self, "colorNodeId", i))

    def GetStorageNode(self):
        return self.storage

    def SetAndObserveStorageNodeID(self, i):
        self.storage = None

    def Modified(self):
        self.modified += 1

    def GetParentTransformNode(self):
        return None

    # segmentation
    def CreateDefaultDisplayNodes(self):
        pass

    def SetReferenceImageGeometryParameterFromVolumeNode(self, node):
        self.reference = node

    def GetSegmentation(self):
        return self.segmentation


class FakeScene:
    def __init__(self):
        self.nodes: dict[str, Node] = {}
        self.imports = 0
        self.binaryUpdates = 0
        self.exports: list[tuple[list[str], dict[int, str]]] = []

    def add(self, node):
        self.nodes[node.id] = node
        return node

    def AddNewNodeByClass(self, kind, name=""):
        return self.add(Node(kind, name))

    def RemoveNode(self, node):
        self.nodes.pop(node.id, None)

    def GetNodeByID(self, i):
        return self.nodes.get(i)

    def importLabelmap(self, labelNode, segmentationNode):
        """Slicer's ImportLabelmapToSegmentationNode: one segment per value present, named by the colour table."""
        self.imports += 1
        colors = self.nodes[labelNode.colorNodeId]
        for value in np.unique(labelNode.array):
            if value:
                sid = segmentationNode.segmentation.AddEmptySegment("", colors.names.get(int(value),
                                                                                      f"Label_{value}"), (1, 1, 1))
                segmentationNode.segmentation.voxels[sid] = int((labelNode.array == value).sum())

    def exportLabelmap(self, segmentationNode, segmentIds, labelNode, reference, extent, colorNode):
        """Slicer's ExportSegmentsToLabelmapNode: one pass, each segment's value from the colour table by name."""
        ids = [segmentIds.GetValue(i) for i in range(segmentIds.GetNumberOfValues())]
        self.exports.append((ids, dict(colorNode.names)))
        return True


@pytest.fixture
def scene_module(monkeypatch):
    scene = FakeScene()

    def loadLabelVolume(path, properties):
        return scene.add(Node("vtkMRMLLabelMapVolumeNode", properties["name"],
                              sitk.GetArrayFromImage(sitk.ReadImage(str(path)))))

    def loadVolume(path, properties):
        node = scene.add(Node("vtkMRMLScalarVolumeNode", properties["name"]))
        node.storage = scene.add(Node("vtkMRMLVolumeArchetypeStorageNode", str(path)))
        return node

    def no_per_segment_pass(*args):
        scene.binaryUpdates += 1

    fake = types.ModuleType("slicer")
    fake.mrmlScene = scene
    fake.util = types.SimpleNamespace(loadLabelVolume=loadLabelVolume, loadVolume=loadVolume,
                                      arrayFromVolume=lambda node: node.array, arrayFromVolumeModified=lambda n: None,
                                      updateSegmentBinaryLabelmapFromArray=no_per_segment_pass,
                                      arrayFromSegmentBinaryLabelmap=no_per_segment_pass,
                                      exportNode=lambda node, path, properties=None, world=False: True)
    fake.modules = types.SimpleNamespace(segmentations=types.SimpleNamespace(
        logic=lambda: types.SimpleNamespace(ImportLabelmapToSegmentationNode=scene.importLabelmap,
                                            ExportSegmentsToLabelmapNode=scene.exportLabelmap)))
    fake.vtkSegmentation = types.SimpleNamespace(EXTENT_REFERENCE_GEOMETRY=1)
    monkeypatch.setitem(sys.modules, "slicer", fake)
    monkeypatch.delitem(sys.modules, "MultimodalSegLib.Scene", raising=False)
    return importlib.import_module("MultimodalSegLib.Scene"), scene


def test_the_label_map_is_imported_once_in_the_tasks_order(scene_module, tmp_path, caplog):
    Scene, scene = scene_module
    task = get_task("petmr-brain")
    specs = segmentSpecs(task)
    present = [specs[5].value, specs[0].value, specs[-1].value]
    array = np.zeros((6, 8, 8), np.uint16)
    for i, value in enumerate(present):
        array[i, :, :] = value
    array[4, 0, 0] = 999  # not a label of the task
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "labels.nrrd"))
    reference = scene.add(Node("vtkMRMLScalarVolumeNode", "t1"))
    node = Scene.importSegmentation(str(tmp_path / "labels.nrrd"), specs, reference, "result")
    segmentation = node.GetSegmentation()
    assert scene.imports == 1 and scene.binaryUpdates == 0
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == \
        [s.name for s in specs]
    filled = {segmentation.segments[sid].name: n for sid, n in segmentation.voxels.items()}
    assert filled == {specs[5].name: 64, specs[0].name: 64, specs[-1].name: 64}  # 999 dropped, not imported
    assert all(segmentation.GetNthSegment(i).terminology == s.terminology for i, s in enumerate(specs))
    assert "999" in caplog.text
    assert {n.kind for n in scene.nodes.values()} == {"vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode"}


def test_extra_volumes_live_in_memory_after_the_run_folder_goes(scene_module, tmp_path):
    Scene, scene = scene_module
    node = Scene.loadExtraVolume(ExtraVolume("fused", tmp_path / "labels_fused.nii.gz", False, "Fused"), "r Fused")
    assert node.GetStorageNode() is None and node.modified >= 1
    assert [n.kind for n in scene.nodes.values()] == ["vtkMRMLScalarVolumeNode"]  # its storage node is gone


def test_every_export_gets_its_own_properties(scene_module, tmp_path):
    Scene, scene = scene_module
    given = []

    def exportNode(node, filename, properties=None, world=False):
        assert properties is not None, "the shared default of slicer.util.exportNode would be used"
        assert not properties, f"properties left over from an earlier export: {properties}"
        properties["fileType"] = "x"  # what a Slicer-side call may leave in it
        given.append(id(properties))
        return True

    sys.modules["slicer"].util.exportNode = exportNode
    files = Scene.exportInputs({"t1": Node("v", "t1"), "pet": Node("v", "pet")}, tmp_path)
    assert sorted(files) == ["pet", "t1"] and len(given) == 2


def test_save_for_training_exports_all_segments_in_one_pass(scene_module, tmp_path):
    Scene, scene = scene_module
    task = get_task("brain-tumor")
    segmentationNode = scene.add(Node("vtkMRMLSegmentationNode", "edited"))
    segmentation = segmentationNode.GetSegmentation()
    for label in task.labels:
        segmentation.AddEmptySegment("", label.name, (1, 1, 1))
    segmentation.AddEmptySegment("", "my notes", (1, 1, 1))
    reference = scene.add(Node("vtkMRMLScalarVolumeNode", "t1ce"))
    unknown = Scene.exportLabelsForTraining(task, segmentationNode, reference, str(tmp_path / "labels.nrrd"))
    assert unknown == ["my notes"] and scene.binaryUpdates == 0  # no full-volume pass per segment
    ((ids, colors),) = scene.exports  # one export of every matching segment
    assert [segmentation.GetSegment(sid).GetName() for sid in ids] == [label.name for label in task.labels]
    assert {value: name for value, name in colors.items() if value} == {lab.value: lab.name for lab in task.labels}
    assert {n.kind for n in scene.nodes.values()} == {"vtkMRMLSegmentationNode", "vtkMRMLScalarVolumeNode"}
