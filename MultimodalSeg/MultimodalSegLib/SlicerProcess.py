"""The backend process inside Slicer: a ``qt.QProcess`` behind the runner's ``BackendProcess`` interface.

Slicer side (imports ``qt``). Output and the end of the process arrive as Qt signals on Slicer's event loop, so
the GUI never blocks; ``kill`` ends the whole process tree (the backend may have started worker processes).

PythonQt specifics (checked under the real PythonQt host, tests/slicer/test_pythonqt_process.py):

- ``process.finished.connect(f)`` binds the *first* overload, ``finished(int)``, so ``finished`` is connected by
  its full signature to get the exit status too.
- PythonQt keeps every connected callable alive for as long as the QProcess lives. A bound method would keep
  this object, and with it the QProcess, alive forever (one leaked QProcess per run): the slots are plain
  functions that hold this object only weakly, and the QProcess is deleted once the run has ended.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import qt

from MultimodalSegLib.Runner import killProcessTree

FINISHED_SIGNAL = "finished(int,QProcess::ExitStatus)"


def _weakSlot(owner: object, method: str) -> Callable:
    """A slot calling ``owner.<method>(*args)`` that does not keep ``owner`` alive."""
    ref = weakref.ref(owner)

    def slot(*args):
        target = ref()
        if target is not None:
            getattr(target, method)(*args)

    return slot


class QtBackendProcess:
    """A non-blocking ``qt.QProcess`` with the callbacks ``BackendRunner`` sets.

    ``onFinished(exitCode)`` gets the exit code, or minus the signal number when the process crashed or was
    killed (-9 after :meth:`kill`), as Python's ``subprocess`` does; ``onStartFailed(message)`` replaces it when
    the program could not be started. ``write(data)`` sends bytes to the process's stdin (the warm worker reads
    its jobs there).
    """

    def __init__(self) -> None:
        self.onStdout = lambda chunk: None
        self.onStderr = lambda chunk: None
        self.onFinished = lambda exitCode: None
        self.onStartFailed = lambda message: None
        self._ended = False
        self._pid = 0
        self.process = qt.QProcess()
        self.process.connect("readyReadStandardOutput()", _weakSlot(self, "_readStdout"))
        self.process.connect("readyReadStandardError()", _weakSlot(self, "_readStderr"))
        self.process.connect(FINISHED_SIGNAL, _weakSlot(self, "_finished"))
        self.process.connect("errorOccurred(QProcess::ProcessError)", _weakSlot(self, "_error"))

    def start(self, program: str, arguments: list[str], environment: dict[str, str] | None) -> None:
        if environment is not None:
            env = qt.QProcessEnvironment()
            for key, value in environment.items():
                env.insert(key, value)
            self.process.setProcessEnvironment(env)
        self.process.setProgram(program)
        self.process.setArguments(arguments)
        self.process.start()
        self._pid = int(self.process.processId())

    @property
    def running(self) -> bool:
        return not self._ended

    def write(self, data: bytes) -> None:
        if not self._ended:
            self.process.write(qt.QByteArray(data))

    def kill(self) -> None:
        if self._ended or self.process.state() == qt.QProcess.NotRunning:
            return
        if self._pid > 0:
            killProcessTree(self._pid)
        self.process.kill()

    def _readStdout(self) -> None:
        data = bytes(self.process.readAllStandardOutput().data())
        if data:
            self.onStdout(data)

    def _readStderr(self) -> None:
        data = bytes(self.process.readAllStandardError().data())
        if data:
            self.onStderr(data)

    def _finished(self, exitCode: int, exitStatus: int) -> None:
        if self._ended:
            return
        self._readStdout()
        self._readStderr()
        self._release()
        code = int(exitCode)
        if exitStatus == qt.QProcess.CrashExit:
            # Qt gives the signal number as the exit code of a crashed (or killed) process on POSIX.
            code = -code if code > 0 else -1
        self.onFinished(code)

    def _error(self, error: int) -> None:
        # Only a failure to start ends the run here; crashes and kills also emit finished().
        if error == qt.QProcess.FailedToStart and not self._ended:
            message = self.process.errorString()
            self._release()
            self.onStartFailed(message)

    def _release(self) -> None:
        self._ended = True
        # Deleted once control is back in the event loop, never inside its own signal.
        self.process.deleteLater()
