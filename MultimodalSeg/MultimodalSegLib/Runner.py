"""One background backend run: start a process, turn its stdout into progress and log, cancel, clean up.

Plain Python: the process is injected (``processFactory``), so Slicer passes a ``qt.QProcess`` wrapper
(``SlicerProcess.QtBackendProcess``) and pytest a fake. Nothing here blocks: every state change arrives through
the process's callbacks, which Qt's event loop delivers in Slicer.
"""

from __future__ import annotations

import codecs
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from multimodalseg.progress import parse_progress_line

SUCCEEDED, FAILED, CANCELED = "succeeded", "failed", "canceled"


class BackendProcess(Protocol):
    """What the runner needs from a process. The runner sets the four callbacks before ``start``.

    ``onStdout(bytes)`` / ``onStderr(bytes)``: output as it arrives (any chunking); ``onFinished(exitCode)``:
    once, after the process ended (crashed or killed: a negative or non-zero code); ``onStartFailed(message)``:
    instead of ``onFinished`` when the program could not be started.
    """

    onStdout: Callable[[bytes], None]
    onStderr: Callable[[bytes], None]
    onFinished: Callable[[int], None]
    onStartFailed: Callable[[str], None]

    def start(self, program: str, arguments: list[str], environment: dict[str, str] | None) -> None: ...

    def kill(self) -> None:
        """Kill the process and every process it started."""


@dataclass
class RunResult:
    """How a run ended.

    Attributes:
        status: ``succeeded``, ``failed`` or ``canceled``.
        exitCode: the process's exit code (None when it did not start).
        message: for a failure, the line to show the user (the backend's error event or its last stderr line).
        finished: the backend's ``finished`` event (outputs, timings, volumes), or None.
        workDir: the run's temporary folder; it still exists while ``onFinished`` runs and is removed afterwards.
        warnings: messages of ``warning`` events (e.g. the CUDA out-of-memory fallback to CPU).
    """

    status: str
    exitCode: int | None = None
    message: str = ""
    finished: dict[str, Any] | None = None
    workDir: Path | None = None
    warnings: list[str] = field(default_factory=list)


class LineSplitter:
    """Joins output chunks into complete lines. A chunk may end mid-line, or even inside a UTF-8 character:
    the remainder waits for the next chunk."""

    def __init__(self) -> None:
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes | str) -> list[str]:
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        lines = (self._pending + text).replace("\r\n", "\n").split("\n")
        self._pending = lines.pop()
        return lines

    def flush(self) -> list[str]:
        rest, self._pending = self._pending + self._decoder.decode(b"", final=True), ""
        return [rest] if rest else []


class BackendRunner:
    """Runs one backend command at a time in the background.

    Args:
        processFactory: makes a fresh :class:`BackendProcess` for each run.
        onProgress: ``(fraction 0..1, stage)`` for every progress event.
        onLog: each output line that is not an event, and a text line for events worth logging.
        onFinished: the :class:`RunResult`, once per run; the work folder is removed right after it returns.

    Example:
        >>> runner = BackendRunner(QtBackendProcess, onProgress=bar.update, onLog=log.append, onFinished=done)
        >>> runner.start(["PythonSlicer", "-m", "multimodalseg", "segment", ...], workDir=tmp)
        >>> runner.cancel()   # kills the process tree; onFinished gets status "canceled"
    """

    def __init__(
        self,
        processFactory: Callable[[], BackendProcess],
        *,
        onProgress: Callable[[float, str], None] | None = None,
        onLog: Callable[[str], None] | None = None,
        onFinished: Callable[[RunResult], None] | None = None,
    ) -> None:
        self.processFactory = processFactory
        self.onProgress = onProgress or (lambda fraction, stage: None)
        self.onLog = onLog or (lambda line: None)
        self.onFinished = onFinished or (lambda result: None)
        self._process: BackendProcess | None = None
        self._reset()

    def _reset(self) -> None:
        self._stdout = LineSplitter()
        self._stderr = LineSplitter()
        self._stderrTail: list[str] = []
        self._error: str | None = None
        self._finishedEvent: dict[str, Any] | None = None
        self._warnings: list[str] = []
        self._canceled = False
        self._workDir: Path | None = None
        self._keepWorkDir = False

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self, command: Sequence[str], *, environment: dict[str, str] | None = None,
              workDir: str | os.PathLike | None = None, keepWorkDir: bool = False) -> None:
        """Start ``command`` (an argument list). ``workDir`` is removed when the run ends unless ``keepWorkDir``.

        Raises:
            RuntimeError: a run is already in progress.
        """
        if self.running:
            raise RuntimeError("a backend run is already in progress")
        if not command:
            raise ValueError("empty command")
        self._reset()
        self._workDir = Path(workDir) if workDir is not None else None
        self._keepWorkDir = keepWorkDir
        process = self.processFactory()
        process.onStdout = self._readStdout
        process.onStderr = self._readStderr
        process.onFinished = self._processFinished
        process.onStartFailed = self._startFailed
        self._process = process
        self.onProgress(0.0, "starting")
        process.start(str(command[0]), [str(a) for a in command[1:]], environment)

    def cancel(self) -> None:
        """Kill the running process tree; ``onFinished`` then reports ``canceled`` and no outputs."""
        if self._process is None:
            return
        self._canceled = True
        self.onLog("Cancel requested: stopping the backend process.")
        self._process.kill()

    # -- process callbacks -----------------------------------------------------------------------------------

    def _readStdout(self, chunk: bytes) -> None:
        for line in self._stdout.feed(chunk):
            self._handleLine(line)

    def _readStderr(self, chunk: bytes) -> None:
        for line in self._stderr.feed(chunk):
            self._handleErrorLine(line)

    def _handleLine(self, line: str) -> None:
        event = parse_progress_line(line)
        if event is None:
            if line.strip():
                self.onLog(line)
            return
        kind = event["event"]
        if kind == "progress":
            self.onProgress(float(event["fraction"]), str(event.get("stage", "")))
        elif kind == "started":
            model = event.get("model")
            self.onLog(f"Started {event.get('task', '')}" + (f" with model {model} {event.get('version', '')}"
                                                           if model else "") + f" on {event.get('device', '?')}.")
        elif kind == "warning":
            self._warnings.append(str(event.get("message", "")))
            self.onLog(f"Warning: {event.get('message', '')}")
        elif kind == "error":
            self._error = str(event.get("message", "backend error"))
            self.onLog(f"Error: {self._error}")
        elif kind == "finished":
            self._finishedEvent = event
            timings = event.get("timings") or {}
            if timings:
                self.onLog("Timings: " + ", ".join(f"{k} {float(v):.1f} s" for k, v in timings.items()))

    def _handleErrorLine(self, line: str) -> None:
        if not line.strip():
            return
        self._stderrTail = (self._stderrTail + [line.strip()])[-20:]
        self.onLog(line)

    def _startFailed(self, message: str) -> None:
        self._end(RunResult(FAILED, None, f"could not start the backend: {message}"))

    def _processFinished(self, exitCode: int) -> None:
        for line in self._stdout.flush():
            self._handleLine(line)
        for line in self._stderr.flush():
            self._handleErrorLine(line)
        if self._canceled:
            result = RunResult(CANCELED, exitCode, "canceled")
        elif exitCode == 0 and self._error is None:
            result = RunResult(SUCCEEDED, 0, "", self._finishedEvent)
        else:
            result = RunResult(FAILED, exitCode, self._failureMessage(exitCode))
        self._end(result)

    def _failureMessage(self, exitCode: int) -> str:
        if self._error:
            return self._error
        if self._stderrTail:
            # The CLI prints "multimodalseg segment: error: PATH: problem" as its last stderr line.
            return self._stderrTail[-1]
        return f"the backend stopped with exit code {exitCode}"

    def _end(self, result: RunResult) -> None:
        result.workDir = self._workDir
        result.warnings = list(self._warnings)
        self._process = None
        try:
            self.onFinished(result)
        finally:
            if self._workDir is not None and not self._keepWorkDir:
                shutil.rmtree(self._workDir, ignore_errors=True)


def descendantPids(pid: int) -> list[int]:
    """Every process started (directly or not) by ``pid``, found from ``ps`` (POSIX); deepest last."""
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    children: dict[int, list[int]] = {}
    for row in out.splitlines():
        parts = row.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            if child not in found:
                found.append(child)
                queue.append(child)
    return found


def killProcessTree(pid: int) -> list[int]:
    """Kill ``pid`` and all its descendants (DataLoader workers, nested interpreters); returns the pids signalled.

    The tree is collected before anything is killed: once the parent is gone, its children are re-parented
    and can no longer be found from it.
    """
    if sys.platform.startswith("win"):
        # CREATE_NO_WINDOW: taskkill is a console program and would flash a console window over Slicer.
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, check=False,
                       creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000))
        return [pid]
    tree = [pid, *descendantPids(pid)]
    signalled = []
    for target in tree:
        try:
            os.kill(target, signal.SIGKILL)
            signalled.append(target)
        except (ProcessLookupError, PermissionError):
            pass
    return signalled
