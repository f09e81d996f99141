"""The in-Slicer self-test's own flow (``SelfTest.runTaskSelfTest``, issue 17 defect 7) with Slicer's calls replaced:
it needs no main window (``selectModule`` raises here, as Slicer's does without one), it stops at once naming what
is missing when the backend's dependencies are not installed (``--testing`` installs nothing), and it judges the
module's result with the real ``multimodalseg.metrics`` Dice on the exported label maps (and can fail)."""

from __future__ import annotations

import importlib
import sys
import types
import unittest

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.tasks import get_task

TASK = get_task("whole-heart")


def label_map(path, values) -> None:
    """A 12^3 label map with one 4x4x12 block per value (0: background)."""
    array = np.zeros((12, 12, 12), np.uint16)
    for i, value in enumerate(values):
        array[:, (i // 3) * 4:(i // 3) * 4 + 4, (i % 3) * 4:(i % 3) * 4 + 4] = value
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


class Test(unittest.TestCase):
    """What ``ScriptedLoadableModuleTest`` gives the self-test: assertions and ``delayDisplay``."""

    __test__ = False  # a stand-in, not a test of its own

    def runTest(self) -> None:
        pass

    def delayDisplay(self, message) -> None:
        pass


@pytest.fixture
def self_test(monkeypatch, tmp_path):
    def no_main_window(name):
        raise RuntimeError("selectModule needs the main window")

    fake = types.ModuleType("slicer")
    fake.util = types.SimpleNamespace(selectModule=no_main_window, mainWindow=lambda: None,
                                      exportNode=lambda node, path, properties, world: label_map(path, node.values)
                                      or True)
    fake.app = types.SimpleNamespace(testingEnabled=lambda: True)
    monkeypatch.setitem(sys.modules, "slicer", fake)
    monkeypatch.setitem(sys.modules, "qt", types.ModuleType("qt"))
    for name in ("SelfTest", "Install", "Samples", "Scene", "Logic", "SlicerProcess"):
        monkeypatch.delitem(sys.modules, f"MultimodalSegLib.{name}", raising=False)
    module = importlib.import_module("MultimodalSegLib.SelfTest")
    calls = []
    truth = [label.value for label in TASK.labels]
    nodes = {"image": types.SimpleNamespace(), "label": types.SimpleNamespace(values=truth)}
    monkeypatch.setattr(module.Samples, "generateCaseBlocking", lambda taskId: calls.append("sample") or nodes)

    class Logic:
        task = TASK
        predicted = truth

        def segment(self, inputs, **kw):
            calls.append(("segment", sorted(inputs), kw.get("modality")))
            names = [label.name for label in TASK.labels]
            segments = types.SimpleNamespace(GetNumberOfSegments=lambda: len(names),
                                             GetNthSegment=lambda i: types.SimpleNamespace(GetName=lambda: names[i]))
            return types.SimpleNamespace(segmentation=types.SimpleNamespace(GetSegmentation=lambda: segments),
                                         message="")

        def registerLandmarks(self, *args, **kw):
            calls.append("register")

    monkeypatch.setattr(module.Scene, "exportLabelsForTraining",
                        lambda task, seg, ref, path: label_map(path, Logic.predicted) or [])
    return module, Logic, calls


def test_missing_dependencies_stop_the_self_test_at_once_naming_them(self_test, monkeypatch):
    module, Logic, calls = self_test
    monkeypatch.setattr(module.Install, "dependencyProblem", lambda path: "missing Python packages: monai==1.6.1")
    with pytest.raises(AssertionError, match="cannot run: missing Python packages: monai==1.6.1.*without --testing"):
        module.runTaskSelfTest(Test(), Logic(), minimumDice=0.5)
    assert calls == []  # nothing generated, nothing started


def test_the_self_test_drives_the_logic_without_a_main_window_and_checks_dice(self_test, monkeypatch):
    module, Logic, calls = self_test
    monkeypatch.setattr(module.Install, "dependencyProblem", lambda path: None)
    metrics = module.runTaskSelfTest(Test(), Logic(), minimumDice=0.99)
    assert metrics["mean"]["dice"] == pytest.approx(1.0)
    assert calls == ["sample", ("segment", ["image"], "ct")]
    Logic.predicted = [TASK.labels[0].value] * len(TASK.labels)  # everything labelled as the first structure
    with pytest.raises(AssertionError):
        module.runTaskSelfTest(Test(), Logic(), minimumDice=0.5)


def test_moving_inputs_are_fitted_to_the_reference_from_the_sample_landmarks(self_test):
    """The sample case's ``<role>.mrk.json`` lists (loaded as ``landmarks:<role>``): each moving role is fitted onto
    the reference (rigid), the reference itself never, and a role without a list is left alone."""
    module = self_test[0]
    fitted = []

    class Logic:
        task = get_task("brain-tumor")

        def registerLandmarks(self, role, fixed, moving, volume, mode):
            fitted.append((role, fixed, moving, volume, mode))

    nodes = {role: f"volume {role}" for role in Logic.task.roles}
    nodes.update({f"landmarks:{role}": f"points {role}" for role in ("t1ce", "flair", "t2")})  # no t1 list
    module.registerWithSampleLandmarks(Logic(), nodes)
    assert fitted == [(role, "points t1ce", f"points {role}", f"volume {role}", "rigid") for role in ("flair", "t2")]
    fitted.clear()
    del nodes["landmarks:t1ce"]  # no reference list: nothing to fit to
    module.registerWithSampleLandmarks(Logic(), nodes)
    assert fitted == []
