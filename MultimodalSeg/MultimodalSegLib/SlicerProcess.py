"""The backend process inside Slicer: a ``qt.QProcess`` behind the runner's ``BackendProcess`` interface.

Slicer side (imports ``qt``). Output and the end of the process arrive as Qt signals on Slicer's event loop, so
the GUI never blocks; ``kill`` ends the whole process tree (the backend may have started worker processes).
"""

from __future__ import annotations

import qt

from MultimodalSegLib.Runner import killProcessTree


class QtBackendProcess:
    """A non-blocking ``qt.QProcess`` with the callbacks ``BackendRunner`` sets."""

    def __init__(self) -> None:
        self.onStdout = lambda chunk: None
        self.onStderr = lambda chunk: None
        self.onFinished = lambda exitCode: None
        self.onStartFailed = lambda message: None
        self._started = False
        self._ended = False
        self.process = qt.QProcess()
        self.process.readyReadStandardOutput.connect(self._readStdout)
        self.process.readyReadStandardError.connect(self._readStderr)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)

    def start(self, program: str, arguments: list[str], environment: dict[str, str] | None) -> None:
        if environment is not None:
            env = qt.QProcessEnvironment()
            for key, value in environment.items():
                env.insert(key, value)
            self.process.setProcessEnvironment(env)
        self.process.setProgram(program)
        self.process.setArguments(arguments)
        self.process.start()

    def kill(self) -> None:
        if self.process.state() == qt.QProcess.NotRunning:
            return
        pid = int(self.process.processId())
        if pid > 0:
            killProcessTree(pid)
        self.process.kill()

    def _readStdout(self) -> None:
        self.onStdout(bytes(self.process.readAllStandardOutput().data()))

    def _readStderr(self) -> None:
        self.onStderr(bytes(self.process.readAllStandardError().data()))

    def _finished(self, exitCode: int, exitStatus: int) -> None:
        if self._ended:
            return
        self._ended = True
        self._readStdout()
        self._readStderr()
        crashed = exitStatus == qt.QProcess.CrashExit
        self.onFinished(-1 if crashed and exitCode == 0 else int(exitCode))

    def _error(self, error: int) -> None:
        # Only a failure to start ends the run here; crashes and kills also emit finished().
        if error == qt.QProcess.FailedToStart and not self._ended:
            self._ended = True
            self.onStartFailed(self.process.errorString())
