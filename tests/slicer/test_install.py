"""The first-Apply install flow (``Install.py``) against a stand-in of Slicer's ``slicer.util``/``slicer.packaging``
whose behaviour follows Slicer's packaging.py: ``pip_ensure`` asks itself (and raises RuntimeError "User declined
package installation" on no), and installs nothing under --testing. Checks: one question per install, a decline is
reported as declined, torch is never imported, an old torch counts as missing."""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from pathlib import Path

import pytest

REQUIREMENTS = "monai==1.6.1\nnumpy>=1.24\n"


class FakeSlicer:
    def __init__(self, *, answer: bool = True, testing: bool = False, declinePip: bool = False) -> None:
        self.questions: list[str] = []
        self.errors: list[str] = []
        self.calls: list[tuple] = []
        self.answer, self.testing, self.declinePip = answer, testing, declinePip
        util = types.SimpleNamespace(
            confirmOkCancelDisplay=self.ask, confirmYesNoDisplay=self.ask,
            errorDisplay=self.errors.append, WaitCursor=contextlib.nullcontext,
            pip_install=lambda *a, **kw: self.calls.append(("pip_install", a)),
            executePythonModule=lambda *a, **kw: self.calls.append(("executePythonModule", a)),
            restart=lambda: self.calls.append(("restart",)))
        self.module = types.ModuleType("slicer")
        self.module.util = util
        self.module.app = types.SimpleNamespace(testingEnabled=lambda: self.testing)
        self.packaging = types.ModuleType("slicer.packaging")
        self.packaging.load_requirements = lambda path: Path(path).read_text().split()
        self.packaging.pip_ensure = self.pip_ensure
        self.module.packaging = self.packaging

    def ask(self, text, *args, **kw) -> bool:
        self.questions.append(text)
        return self.answer

    def pip_ensure(self, requirements, **kw) -> None:
        if self.testing:
            return  # Slicer: "Testing mode is enabled: skipping pip_ensure"
        self.questions.append("pip_ensure: install?")
        if self.declinePip:
            raise RuntimeError("User declined package installation")
        self.calls.append(("pip_ensure", tuple(requirements), kw.get("requester")))


@pytest.fixture
def install(monkeypatch, tmp_path):
    def make(**options):
        fake = FakeSlicer(**options)
        monkeypatch.setitem(sys.modules, "slicer", fake.module)
        monkeypatch.setitem(sys.modules, "slicer.packaging", fake.packaging)
        monkeypatch.setitem(sys.modules, "qt", types.SimpleNamespace(
            QApplication=types.SimpleNamespace(processEvents=lambda: None)))
        monkeypatch.delitem(sys.modules, "MultimodalSegLib.Install", raising=False)
        module = importlib.import_module("MultimodalSegLib.Install")
        path = tmp_path / "requirements.txt"
        path.write_text(REQUIREMENTS)
        return module, fake, str(path)

    return make


def missing_packages(installed: dict[str, bool]):
    """A ``missingRequirements`` that reports the requirements whose package is not in ``installed`` (or False)."""
    return lambda reqs, *a, **kw: [r for r in reqs if not installed.get(r.split("=")[0].split(">")[0], False)]


def test_packages_missing_ask_once_inside_pip_ensure(install, monkeypatch):
    module, fake, path = install()
    state = {"torch": True, "monai": False, "numpy": True}
    monkeypatch.setattr(module, "missingRequirements", missing_packages(state))
    fake.packaging.pip_ensure = lambda reqs, **kw: (fake.questions.append("pip_ensure"), state.update(monai=True))
    status = []
    assert module.ensureDependencies(path, status.append) is True
    assert fake.questions == ["pip_ensure"] and not fake.errors and not status


def test_declining_in_pip_ensure_is_declined_not_failed(install, monkeypatch):
    module, fake, path = install(declinePip=True)
    monkeypatch.setattr(module, "missingRequirements", missing_packages({"torch": True, "numpy": True}))
    status = []
    assert module.ensureDependencies(path, status.append) is False
    assert fake.questions == ["pip_ensure: install?"]
    assert fake.errors == [] and status == ["The Python packages were not installed (declined)."]


def test_torch_is_installed_without_importing_it(install, monkeypatch):
    module, fake, path = install()
    state = {"torch": False, "monai": True, "numpy": True}
    monkeypatch.setattr(module, "missingRequirements", missing_packages(state))
    monkeypatch.setattr(module, "torchAvailable", lambda: state["torch"])

    def ltt(*args, **kw):
        fake.calls.append(("executePythonModule", args))
        state["torch"] = True

    fake.module.util.executePythonModule = ltt
    torch_before = sys.modules.pop("torch", None)
    try:
        assert module.ensureDependencies(path) is True
        assert "torch" not in sys.modules
    finally:
        if torch_before is not None:
            sys.modules["torch"] = torch_before
    assert len(fake.questions) == 1 and "PyTorch" in fake.questions[0]
    assert ("executePythonModule", ("light_the_torch", ["install", "torch>=2.3"])) in fake.calls


def test_an_old_torch_counts_as_missing(install, monkeypatch):
    module, fake, path = install(answer=False)
    monkeypatch.setattr(module, "missingRequirements", lambda reqs, *a, **kw: [r for r in reqs if "torch" in r])
    assert module.torchProblem() == "the installed PyTorch is older than required (torch>=2.3)"
    assert module.ensureDependencies(path) is False and len(fake.questions) == 1


def test_under_testing_nothing_is_asked_and_the_problem_is_named(install, monkeypatch):
    module, fake, path = install(testing=True)
    monkeypatch.setattr(module, "missingRequirements", missing_packages({"torch": True, "numpy": True}))
    status = []
    assert module.ensureDependencies(path, status.append) is False
    assert fake.questions == [] and "--testing" in status[0] and "monai" in status[0]
    assert module.dependencyProblem(path) == "missing Python packages: monai==1.6.1"
