"""Defects of the Slicer layer that a static API check cannot see, tested through the plain-Python code that now
decides them: parameter-node roles that survive a scene save and reload, the unchosen training folder, the
transform node switched from a thin-plate spline back to a linear fit, and auto-assignment of cleared inputs."""

from __future__ import annotations

import numpy as np
import pytest
import vtk
from multimodalseg.tasks import all_tasks, get_task
from MultimodalSegLib.Landmarks import summarizeFit
from MultimodalSegLib.Settings import (
    INPUT_REFERENCE_PREFIX,
    PanelSettings,
    autoAssign,
    chosenFolder,
    landmarkReferencePrefix,
)
from MultimodalSegLib.Transforms import setFitOnTransformNode


def mrml_reference_round_trip(references: dict[str, str]) -> dict[str, str]:
    """What vtkMRMLNode::WriteXML writes (``references="role:id;role:id;"``, unescaped) and ReadXMLAttributes
    reads back: each entry split at its first ':' (vtkMRMLNode.cxx)."""
    text = "".join(f"{role}:{node_id};" for role, node_id in references.items())
    out = {}
    for entry in filter(None, text.split(";")):
        role, _, node_id = entry.partition(":")
        out[role] = node_id
    return out


@pytest.mark.parametrize("task", all_tasks(), ids=lambda t: t.id)
def test_every_parameter_node_reference_survives_a_scene_reload(task):
    references = {INPUT_REFERENCE_PREFIX + role: f"vtkMRMLScalarVolumeNode{i}" for i, role in enumerate(task.roles)}
    for role in task.roles:
        if role != task.reference_role:
            for kind in ("fixed", "moving", "transform"):
                references[landmarkReferencePrefix(role) + kind] = f"vtkMRMLNode_{role}_{kind}"
    assert mrml_reference_round_trip(references) == references


@pytest.mark.parametrize("directory", [".", "", None, "  "])
def test_the_directory_buttons_default_is_no_training_folder(directory):
    assert chosenFolder(directory) == ""
    assert PanelSettings.fromParameters({"trainingFolder": directory or ""}).trainingFolder == ""


def test_a_chosen_training_folder_is_kept():
    assert chosenFolder("/data/train") == "/data/train"
    assert chosenFolder("./train") == "./train"


def test_a_cleared_input_is_not_refilled():
    task = get_task("brain-tumor")
    volumes = [("v1", "case_t1ce"), ("v2", "case_t1"), ("v3", "case_flair"), ("v4", "case_t2")]
    assert autoAssign(task, volumes)["t1"] == "v2"
    assigned = autoAssign(task, volumes, {"t1ce": "v1"}, cleared={"t1"})
    assert assigned["t1"] is None and assigned["flair"] == "v3" and assigned["t1ce"] == "v1"


class SlicerLikeTransformNode:
    """vtkMRMLTransformNode's rules that matter here: ``SetMatrixTransformToParent`` refuses (returns 0) a node
    holding a non-linear transform; ``SetAndObserveTransformToParent``/``FromParent`` replace the transform."""

    def __init__(self) -> None:
        self.toParent: vtk.vtkAbstractTransform | None = None
        self.fromParent: vtk.vtkAbstractTransform | None = None

    def IsLinear(self) -> bool:
        current = self.toParent or self.fromParent
        return current is None or current.IsA("vtkLinearTransform")

    def SetMatrixTransformToParent(self, matrix) -> int:
        if not self.IsLinear():
            return 0
        transform = vtk.vtkTransform()
        transform.SetMatrix(matrix)
        self.toParent, self.fromParent = transform, None
        return 1

    def SetAndObserveTransformToParent(self, transform) -> None:
        self.toParent, self.fromParent = transform, None

    def SetAndObserveTransformFromParent(self, transform) -> None:
        self.toParent, self.fromParent = None, transform

    def mapToParent(self, point) -> np.ndarray:
        if self.toParent is not None:
            return np.array(self.toParent.TransformPoint(*point))
        return np.array(self.fromParent.GetInverse().TransformPoint(*point))


def test_switching_from_thin_plate_spline_back_to_rigid_replaces_the_spline():
    rng = np.random.default_rng(0)
    moving = rng.uniform(-50, 50, (8, 3))
    fixed = moving + np.array([4.0, -2.0, 7.0]) + rng.normal(0, 1.5, (8, 3))
    node = SlicerLikeTransformNode()
    setFitOnTransformNode(node, summarizeFit(fixed, moving, "tps").fit)
    assert not node.IsLinear()
    rigid = summarizeFit(fixed, moving, "rigid").fit
    setFitOnTransformNode(node, rigid)
    assert node.IsLinear()
    point = np.array([10.0, 20.0, -5.0])
    expected = (rigid.matrix @ np.append(point, 1.0))[:3]
    np.testing.assert_allclose(node.mapToParent(point), expected, atol=1e-6)
