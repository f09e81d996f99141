"""Scene operations: export inputs for the backend, import its results, export an edited result for training.

Slicer side (imports ``slicer`` and ``vtk``). Everything decided here comes from plain-Python helpers
(``Results``, ``TrainingWriter``); these functions only apply it with Slicer calls.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import slicer
import vtk
from multimodalseg.errors import UserError
from multimodalseg.tasks import TaskSpec

from MultimodalSegLib.Results import ExtraVolume, SegmentSpec, TableData, segmentValues


def freshProperties() -> dict:
    """A new properties dict for ``slicer.util.exportNode``, whose default (``properties={}``) is one dict shared by
    every call: whatever a call puts in it would leak into the next export."""
    return {}


def exportInputs(inputs: Mapping[str, object], folder: str | os.PathLike) -> dict[str, str]:
    """Write each input volume to ``<folder>/<role>.nrrd`` in world coordinates (parent transforms hardened into
    the written geometry, the scene left unchanged): the backend sees the registration the user set up.

    Raises:
        UserError: a volume cannot be written.
    """
    files = {}
    for role, volumeNode in inputs.items():
        if volumeNode is None:
            continue
        path = os.path.join(os.fspath(folder), f"{role}.nrrd")
        if not slicer.util.exportNode(volumeNode, path, freshProperties(), world=True):
            raise UserError(f"cannot export volume '{volumeNode.GetName()}'", path)
        files[role] = path
    return files


def geometryNode(referenceVolumeNode):
    """The reference input, unless a parent transform moves it: the backend then wrote the world geometry."""
    return referenceVolumeNode if referenceVolumeNode.GetParentTransformNode() is None else None


def colorTableNode(entries: Mapping[int, tuple[str, tuple[float, float, float]]], name: str):
    """A user colour table: value -> (name, RGB 0..1); the other entries stay unnamed."""
    colorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    colorNode.SetTypeToUser()
    colorNode.SetNumberOfColors(max(entries, default=0) + 1)
    colorNode.SetColor(0, "Background", 0.0, 0.0, 0.0, 0.0)
    for value, (label, (r, g, b)) in entries.items():
        colorNode.SetColor(int(value), label, r, g, b, 1.0)
    return colorNode


def importSegmentation(labelsPath: str, specs: list[SegmentSpec], referenceVolumeNode, name: str):
    """A segmentation node with one segment per spec (name, colour, terminology, in the specs' order) from a label
    map file on the reference grid; absent labels get empty segments. Returns the node.

    The label map is imported once, with a colour table of the task's labels (as TotalSegmentator does): one pass
    over the volume for all labels, instead of one full-volume pass per segment.
    """
    labelNode = slicer.util.loadLabelVolume(labelsPath, {"show": False, "name": f"{name} labels"})
    colorNode = colorTableNode({spec.value: (spec.name, spec.color) for spec in specs}, f"{name} colors")
    try:
        labels = slicer.util.arrayFromVolume(labelNode)
        known = np.array(sorted(spec.value for spec in specs))
        unknownMask = ~np.isin(labels, np.append(known, 0))
        if unknownMask.any():
            logging.warning(f"{labelsPath}: label values {sorted(np.unique(labels[unknownMask]).tolist())} are not in "
                            "the task's table; not imported")
            labels[unknownMask] = 0
            slicer.util.arrayFromVolumeModified(labelNode)
        labelNode.GetDisplayNode().SetAndObserveColorNodeID(colorNode.GetID())
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(
            geometryNode(referenceVolumeNode) or labelNode)
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelNode, segmentationNode)
        segmentation = segmentationNode.GetSegmentation()
        for index, spec in enumerate(specs):
            sid = segmentation.GetSegmentIdBySegmentName(spec.name)
            if not sid:
                sid = segmentation.AddEmptySegment(spec.segmentId, spec.name, list(spec.color))
            segment = segmentation.GetSegment(sid)
            segment.SetColor(*spec.color)
            segment.SetTerminology(spec.terminology)
            segmentation.SetSegmentIndex(sid, index)
        return segmentationNode
    finally:
        slicer.mrmlScene.RemoveNode(labelNode)
        slicer.mrmlScene.RemoveNode(colorNode)


def placeWithInput(node, referenceVolumeNode) -> None:
    """Put ``node`` in the Subject Hierarchy folder (study) of the reference input."""
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    studyItem = shNode.GetItemParent(shNode.GetItemByDataNode(referenceVolumeNode))
    if studyItem:
        shNode.SetItemParent(shNode.GetItemByDataNode(node), studyItem)


def showResult(segmentationNode, referenceVolumeNode) -> None:
    """Show the reference input with the segmentation in the slice views and as surfaces in 3D."""
    segmentationNode.CreateClosedSurfaceRepresentation()
    slicer.util.setSliceViewerLayers(background=referenceVolumeNode, fit=True)


def addTable(table: TableData, name: str):
    """A table node with the rows of ``table`` (numeric columns as doubles, the others as text)."""
    tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    for index, column in enumerate(table.columns):
        numeric = table.columnIsNumeric(index)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(column)
        for row in table.rows:
            value = row[index]
            if numeric:
                array.InsertNextValue(float("nan") if value is None else float(value))
            else:
                array.InsertNextValue("" if value is None else str(value))
        tableNode.AddColumn(array)
    tableNode.Modified()
    return tableNode


def loadExtraVolume(extra: ExtraVolume, name: str):
    """Load a further backend output (fused image, disagreement map) as a volume or label map volume.

    It is read from the run's temporary folder, which is deleted afterwards: its storage node (pointing there, and
    "unmodified since read") is removed, so the volume lives in memory and the next scene save writes it.
    """
    properties = {"name": name, "show": False}
    if extra.isLabel:
        node = slicer.util.loadLabelVolume(str(extra.path), properties)
    else:
        node = slicer.util.loadVolume(str(extra.path), properties)
    storageNode = node.GetStorageNode()
    if storageNode is not None:
        node.SetAndObserveStorageNodeID(None)
        slicer.mrmlScene.RemoveNode(storageNode)
    node.Modified()
    return node


def exportLabelsForTraining(task: TaskSpec, segmentationNode, referenceVolumeNode, path: str) -> list[str]:
    """Write the segmentation as a label map in the task's values on the reference grid (world coordinates).

    Segments are matched to labels by name; a segment drawn over another overwrites it in segment order.
    Returns the names of segments that match no label (left out).

    Raises:
        UserError: no segment matches a label of the task, or the file cannot be written.
    """
    segmentation = segmentationNode.GetSegmentation()
    names = {segmentation.GetNthSegmentID(i): segmentation.GetNthSegment(i).GetName()
             for i in range(segmentation.GetNumberOfSegments())}
    values, unknown = segmentValues(task, list(names.values()))
    if not values:
        raise UserError(f"no segment is named like a {task.title} label "
                        f"({', '.join(lab.name for lab in task.labels[:5])}...)")
    # One export of all matching segments on the reference grid; the colour table gives each segment its value
    # by name (segments named like a label but in another case are renamed in the table to match).
    segmentIds = vtk.vtkStringArray()
    entries = {}
    for sid, name in names.items():
        if name in values:
            segmentIds.InsertNextValue(sid)
            entries[values[name]] = (name, (0.5, 0.5, 0.5))
    colorNode = colorTableNode(entries, "MultimodalSeg training colors")
    labelNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "MultimodalSeg training labels")
    try:
        if not slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
                segmentationNode, segmentIds, labelNode, referenceVolumeNode,
                slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, colorNode):
            raise UserError("cannot export the segments as a label map", path)
        transform = referenceVolumeNode.GetParentTransformNode()
        if transform is not None:
            labelNode.SetAndObserveTransformNodeID(transform.GetID())
        if not slicer.util.exportNode(labelNode, path, freshProperties(), world=True):
            raise UserError("cannot export the label map", path)
    finally:
        slicer.mrmlScene.RemoveNode(labelNode)
        slicer.mrmlScene.RemoveNode(colorNode)
    return unknown


def sourceDescription(inputs: Mapping[str, object]) -> dict[str, object]:
    """What the manifest records about the source case: the scene file and each input's node name and file."""
    out: dict[str, object] = {"scene": slicer.mrmlScene.GetURL() or None, "inputs": {}}
    for role, node in inputs.items():
        if node is None:
            continue
        storage = node.GetStorageNode()
        fileName = storage.GetFileName() if storage is not None else None
        out["inputs"][role] = {"node": node.GetName(), "file": fileName and str(Path(fileName))}
    return out
