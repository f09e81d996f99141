"""The runner with a real backend process (``python -m multimodalseg segment``): the command the panel builds,
the environment it sets, and the backend's error protocol, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from multimodalseg.tasks import get_task
from MultimodalSegLib import Command
from MultimodalSegLib.Runner import FAILED, BackendRunner

MODULE_DIR = Path(__file__).resolve().parents[2] / "MultimodalSeg"


class ThreadedProcess:
    """A real process behind the runner's interface (outside Qt): reader threads deliver output as it comes."""

    def __init__(self) -> None:
        self.onStdout = self.onStderr = self.onFinished = self.onStartFailed = None
        self.done = threading.Event()
        self.popen = None

    def start(self, program, arguments, environment) -> None:
        try:
            self.popen = subprocess.Popen([program, *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          env=environment)
        except OSError as exc:
            self.onStartFailed(str(exc))
            self.done.set()
            return
        readers = [threading.Thread(target=self._pump, args=(s, cb)) for s, cb in
                   ((self.popen.stdout, self.onStdout), (self.popen.stderr, self.onStderr))]
        for reader in readers:
            reader.start()

        def wait() -> None:
            for reader in readers:
                reader.join()
            self.onFinished(self.popen.wait())
            self.done.set()

        threading.Thread(target=wait).start()

    @staticmethod
    def _pump(stream, callback) -> None:
        for chunk in iter(lambda: stream.read1(4096), b""):
            callback(chunk)

    def kill(self) -> None:
        self.popen.kill()


def test_backend_error_reaches_the_panel_message(tmp_path, volume):
    task = get_task("spine")
    ct = volume("ct.nrrd", np.zeros((8, 8, 8), np.float32))
    missing = tmp_path / "mr missing.nrrd"
    results, processes = [], []

    def factory():
        processes.append(ThreadedProcess())
        return processes[-1]

    runner = BackendRunner(factory, onFinished=results.append)
    command = Command.buildSegmentCommand([sys.executable], task, {"ct": ct, "mr": missing}, tmp_path / "labels.nrrd",
                                          report=tmp_path / "report.json")
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = Command.backendEnvironment({k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, MODULE_DIR)
    runner.start(command, environment=env, workDir=workdir)
    assert processes[0].done.wait(120)
    (result,) = results
    assert result.status == FAILED and result.exitCode == 2
    assert result.message == f"{missing}: file not found"
    assert not workdir.exists() and not (tmp_path / "labels.nrrd").exists()
