"""One warm backend process (``multimodalseg serve``) for all of Slicer's jobs, one job at a time.

Plain Python, like ``Runner``: the process is injected (``SlicerProcess.QtBackendProcess`` in Slicer, a fake in
pytest) and needs ``write(bytes)`` besides the ``BackendProcess`` interface. The worker is started on first use
and kept while Slicer runs, so only the first job pays for starting Python, torch and MONAI. A job is one JSON
line on the worker's stdin; its events come back tagged with the job id and end in ``finished`` or ``error``
(``multimodalseg.cli.serve_cmd``). A worker that dies (or reaches its idle timeout) is replaced on the next job;
cancelling a job kills the worker's process tree and starts a fresh worker at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from multimodalseg.progress import parse_progress_line

from MultimodalSegLib.Runner import CANCELED, FAILED, SUCCEEDED, BackendProcess, BackendRunner, LineSplitter, RunResult

IDLE_TIMEOUT_S = 3600  # a worker nobody used for an hour exits (its memory back); the next job starts another


def serveCommand(python: Sequence[str], idleTimeout: float = IDLE_TIMEOUT_S) -> list[str]:
    """``python -m multimodalseg serve --idle-timeout S``."""
    return [*python, "-m", "multimodalseg", "serve", "--idle-timeout", f"{idleTimeout:g}"]


def jobArguments(command: Sequence[str]) -> tuple[str, list[str]]:
    """``(command, args)`` of a job from a full backend command line (``[python..., -m, multimodalseg, CMD, ...]``
    as ``Command.build*Command`` make them), so one-shot runs and worker jobs share the command builders."""
    parts = [os.fspath(a) for a in command]
    for i in range(len(parts) - 1):
        if parts[i] == "-m" and parts[i + 1] == "multimodalseg":
            if i + 2 >= len(parts):
                break
            return parts[i + 2], parts[i + 3:]
    raise ValueError(f"not a 'python -m multimodalseg COMMAND' command line: {parts[:6]}")


class WorkerRunner(BackendRunner):
    """Runs backend commands as jobs of one long-lived ``multimodalseg serve`` process.

    Args:
        processFactory: makes a process for each worker started.
        workerCommand: the worker's command line (:func:`serveCommand`).
        environment: the worker's environment (``Command.backendEnvironment``).

    ``start`` takes a full command line (the same as :class:`BackendRunner`'s) and per-job callbacks; results are
    the same :class:`RunResult`. ``workersStarted`` counts worker processes (1 while nothing went wrong).
    """

    def __init__(self, processFactory: Callable[[], BackendProcess], workerCommand: Sequence[str], *,
                 environment: dict[str, str] | None = None, onLog: Callable[[str], None] | None = None) -> None:
        super().__init__(processFactory, onLog=onLog)
        self.workerCommand = [str(a) for a in workerCommand]
        self.environment = environment
        self.defaultLog = self.onLog
        self.workersStarted = 0
        self._worker: BackendProcess | None = None
        self._jobId: str | None = None
        self._jobCount = 0

    @property
    def running(self) -> bool:
        """Whether a job is in progress."""
        return self._jobId is not None

    @property
    def workerAlive(self) -> bool:
        return self._worker is not None

    def warmUp(self) -> None:
        """Start the worker now (if none runs), so the first job does not wait for its start-up."""
        if self._worker is None:
            self._startWorker()

    def start(self, command: Sequence[str], *, environment: dict[str, str] | None = None,
              workDir: str | os.PathLike | None = None, keepWorkDir: bool = False,
              onProgress: Callable[[float, str], None] | None = None, onLog: Callable[[str], None] | None = None,
              onFinished: Callable[[RunResult], None] | None = None) -> None:
        """Send ``command`` (``[python, -m, multimodalseg, CMD, ARGS...]``) to the worker as a job.

        ``environment`` is ignored: jobs run in the worker's environment.

        Raises:
            RuntimeError: a job is already in progress.
        """
        if self.running:
            raise RuntimeError("a backend run is already in progress")
        name, args = jobArguments(command)
        self._reset()
        self._workDir = None if workDir is None else Path(workDir)
        self._keepWorkDir = keepWorkDir
        self.onProgress = onProgress or (lambda fraction, stage: None)
        self.onLog = onLog or self.defaultLog
        self.onFinished = onFinished or (lambda result: None)
        self._jobCount += 1
        self._jobId = f"j{self._jobCount}"
        self.warmUp()
        self.onProgress(0.0, "starting")
        line = json.dumps({"id": self._jobId, "command": name, "args": args}) + "\n"
        self._worker.write(line.encode("utf-8"))

    def cancel(self) -> None:
        """Kill the worker (and the job with it); the job reports ``canceled`` and a fresh worker starts."""
        if not self.running or self._worker is None:
            return
        self._canceled = True
        self.onLog("Cancel requested: stopping the backend process.")
        self._worker.kill()

    def shutdown(self) -> None:
        """Stop the worker without reporting anything (Slicer is closing)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()

    # -- the worker process ----------------------------------------------------------------------------------

    def _startWorker(self) -> None:
        process = self.processFactory()
        stdout, stderr = LineSplitter(), LineSplitter()
        current = lambda: process is self._worker  # noqa: E731 - callbacks of a replaced worker are ignored
        process.onStdout = lambda chunk: current() and [self._workerLine(line) for line in stdout.feed(chunk)]
        process.onStderr = lambda chunk: current() and [self._handleErrorLine(line) for line in stderr.feed(chunk)]

        def finished(exitCode: int) -> None:
            if current():
                for line in stdout.flush():
                    self._workerLine(line)
                self._workerEnded(f"the backend worker stopped with exit code {exitCode}", exitCode)

        process.onFinished = finished
        process.onStartFailed = lambda message: current() and self._workerEnded(
            f"could not start the backend: {message}", None)
        self._worker = process
        self.workersStarted += 1
        process.start(self.workerCommand[0], self.workerCommand[1:], self.environment)

    def _workerLine(self, line: str) -> None:
        event = parse_progress_line(line)
        if event is None:
            if line.strip():
                self.onLog(line)
            return
        if not self.running or event.get("id") != self._jobId:
            if event.get("event") == "error":
                self.onLog(f"Backend worker: {event.get('message', '')}")
            return  # another (earlier) job's late line
        kind = event["event"]
        if kind == "log":
            self.onLog(str(event.get("message", "")))
            return
        self._handleLine(line)
        if kind in ("finished", "error") and "case" not in event:
            code = int(event.get("code", 0 if kind == "finished" else 1))
            if self._canceled:
                return  # the kill's end reports it
            if kind == "finished" and code == 0 and self._error is None:
                self._end(RunResult(SUCCEEDED, 0, "", self._finishedEvent))
            else:
                self._end(RunResult(FAILED, code, self._failureMessage(code)))

    def _workerEnded(self, message: str, exitCode: int | None) -> None:
        self._worker = None
        canceled = self._canceled
        if self.running:
            if canceled:
                self._end(RunResult(CANCELED, exitCode, "canceled"))
            else:
                tail = self._stderrTail[-1] if self._stderrTail else ""
                self._end(RunResult(FAILED, exitCode, f"{message}: {tail}" if tail else message))
        elif exitCode not in (0, None):
            self.defaultLog(message)
        if canceled and self._worker is None:
            self._startWorker()  # warm again for the next job

    def _end(self, result: RunResult) -> None:
        self._jobId = None
        super()._end(result)
