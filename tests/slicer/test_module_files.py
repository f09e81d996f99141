"""The four module files' wiring, imported against a stand-in of Slicer's ScriptedLoadableModule base classes
(Slicer itself cannot be installed here): each file names its task, builds the shared panel with its own Logic,
forwards enter/exit/cleanup to it, and its self-test clears the scene and runs the phantom self-test through that
Logic. The panel, the Logic mixin, sample data and the self-test body are stand-ins too; they are tested in
their own files."""

from __future__ import annotations

import importlib
import sys
import types

import pytest
from multimodalseg.tasks import TASKS

from tests.slicer.conftest import MODULE_DIR

MODULES = {"PETMRBrain": "petmr-brain", "BrainTumor": "brain-tumor", "WholeHeart": "whole-heart",
           "SpineCTMR": "spine"}


class Base:
    """ScriptedLoadableModule* stand-in: records what the module file calls on it."""

    def __init__(self, parent=None):
        self.parent = parent
        self.layout = "layout"

    def setup(self):
        pass


@pytest.fixture
def stand_ins(monkeypatch):
    calls = {"panels": [], "selftests": [], "cleared": 0, "connected": []}

    class Scene:
        def Clear(self):
            calls["cleared"] += 1

    slicer = types.ModuleType("slicer")
    slicer.mrmlScene = Scene()
    slicer.app = types.SimpleNamespace(connect=lambda signal, slot: calls["connected"].append(signal))
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
                 "ScriptedLoadableModuleTest"):
        setattr(slm, name, type(name, (Base,), {}))
    slicer.ScriptedLoadableModule = slm

    class Panel:
        def __init__(self, taskId, layout, logic):
            self.events = []
            calls["panels"].append((taskId, layout, logic, self))

        def enter(self):
            self.events.append("enter")

        def exit(self):
            self.events.append("exit")

        def cleanup(self):
            self.events.append("cleanup")

    panel_module = types.ModuleType("MultimodalSegLib.Panel")
    panel_module.TaskPanel = Panel
    selftest = types.ModuleType("MultimodalSegLib.SelfTest")
    selftest.runTaskSelfTest = lambda test, logic, **kw: calls["selftests"].append((test, logic, kw))
    logic = types.ModuleType("MultimodalSegLib.Logic")  # the real mixin runs under PythonQt (test_pythonqt_logic)
    logic.TaskLogicMixin = type("TaskLogicMixin", (), {"__init__": lambda self: None})
    samples = types.ModuleType("MultimodalSegLib.Samples")
    samples.registerSampleData = lambda task_id: None
    for name, module in {"slicer": slicer, "slicer.ScriptedLoadableModule": slm, "MultimodalSegLib.Logic": logic,
                         "MultimodalSegLib.Samples": samples, "MultimodalSegLib.Panel": panel_module,
                         "MultimodalSegLib.SelfTest": selftest}.items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in (*MODULES, "MultimodalSegLib.Module"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert str(MODULE_DIR) in sys.path
    return calls


@pytest.mark.parametrize("name", MODULES)
def test_module_file_wires_its_task_panel_logic_and_self_test(name, stand_ins):
    module = importlib.import_module(name)
    assert MODULES[name] == module.TASK_ID and MODULES[name] in TASKS

    parent = types.SimpleNamespace()
    getattr(module, name)(parent)
    assert parent.title and parent.categories and parent.helpText
    assert stand_ins["connected"] == ["startupCompleted()"]

    widget = getattr(module, f"{name}Widget")()
    widget.exit()  # before setup: no panel yet, nothing to forward
    widget.setup()
    [(task_id, layout, logic, panel)] = stand_ins["panels"]
    assert task_id == MODULES[name] and layout == "layout"
    assert type(logic) is getattr(module, f"{name}Logic") and logic.taskId == MODULES[name]
    widget.enter()
    widget.exit()
    widget.cleanup()
    assert panel.events == ["enter", "exit", "cleanup"]

    test = getattr(module, f"{name}Test")()
    test.runTest()
    assert stand_ins["cleared"] == 1
    [(runner, logic, options)] = stand_ins["selftests"]
    assert runner is test and type(logic) is getattr(module, f"{name}Logic")
    assert 0.5 <= options["minimumDice"] <= 1 and options["metric"]
