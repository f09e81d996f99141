"""Fixtures for the Slicer layer's tests outside Slicer: MultimodalSegLib on the path, a Qt application
(offscreen), the fake backend process (the only fake besides dialogs), and small volume files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "MultimodalSeg"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # Slicer puts the module folder on the path; so do we
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class FakeProcess:
    """Stands in for ``SlicerProcess.QtBackendProcess``: records ``start``/``kill`` and lets a test play the
    backend's output and exit, in any chunking."""

    instances: list[FakeProcess] = []

    def __init__(self) -> None:
        self.onStdout = self.onStderr = self.onFinished = self.onStartFailed = None
        self.started: tuple[str, list[str], dict | None] | None = None
        self.killed = False
        self.written: list[bytes] = []
        FakeProcess.instances.append(self)

    def start(self, program, arguments, environment) -> None:
        self.started = (program, list(arguments), environment)

    def kill(self) -> None:
        self.killed = True

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def jobs(self) -> list[dict]:
        """The JSON job lines written to the worker's stdin."""
        import json

        return [json.loads(line) for line in b"".join(self.written).decode().splitlines()]

    # what the test plays
    def stdout(self, text: str) -> None:
        self.onStdout(text.encode())

    def stderr(self, text: str) -> None:
        self.onStderr(text.encode())

    def exit(self, code: int) -> None:
        self.onFinished(code)


@pytest.fixture
def fake_process():
    """A factory for the runner that makes :class:`FakeProcess` objects; ``.last`` is the newest one."""
    FakeProcess.instances.clear()

    class Factory:
        def __call__(self) -> FakeProcess:
            return FakeProcess()

        @property
        def last(self) -> FakeProcess:
            return FakeProcess.instances[-1]

    return Factory()


@pytest.fixture(scope="session")
def qapp():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


@pytest.fixture
def volume(volume_file):
    """``volume(name, array, **geometry)`` writes a volume under tmp_path (the root conftest's ``volume_file``)."""
    return volume_file
