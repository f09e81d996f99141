"""``multimodalseg serve``: a warm worker that runs CLI jobs read from stdin, one JSON object per line.

    {"id": "j1", "command": "segment", "args": ["--task", "brain-tumor", "-i", "t1=...", ..., "-o", "seg.nrrd"]}

Each job runs the command's own ``run`` (the same parser and code path as ``multimodalseg COMMAND ARGS``), so the
second job costs no Python, torch or MONAI start-up, and its model comes from a small in-memory cache. Every stdout
line of a job is a JSON event tagged with the job's id: the command's own events (``started``, ``progress``,
``warning``, ...), other printed text as ``{"event": "log", "message": ...}``, and exactly one last event,
``finished`` (with ``"code": 0``) or ``error`` (with the exit code and the message). A job's failure, including
an internal error or a bad request line, never ends the worker; it exits on EOF or after ``--idle-timeout``
seconds without a job. Cancelling a job means killing the worker's process tree (the caller starts a new one).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from multimodalseg.progress import parse_progress_line

TERMINAL = ("finished", "error")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run jobs from stdin (one JSON line each) in one warm process",
                       description="Read jobs {\"id\", \"command\", \"args\"} from stdin, one JSON object per line; "
                                   "answer with the command's JSON events tagged with the job id, ending in "
                                   "'finished' or 'error'. Exits on EOF or after the idle timeout.")
    p.add_argument("--idle-timeout", type=float, default=0.0, metavar="S",
                   help="exit after S seconds without a job (default 0: never)")
    p.add_argument("--cache-size", type=int, default=2, metavar="N", help="models kept loaded (default 2)")
    p.set_defaults(func=run)


class ModelCache:
    """The last ``size`` loaded bundles by (task, model, what it resolves to now): a bundle file that changed, or a
    catalog name (None: the task's newest) that now means another entry (a model imported meanwhile, by Slicer's
    "Import model file" or ``models import``), is loaded again."""

    def __init__(self, size: int = 2, loader: Callable[[str, Any], Any] | None = None) -> None:
        self.size = max(0, int(size))
        self._loader = loader
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def _key(task_id: str, model: Any) -> tuple | None:
        """None when the name resolves to nothing: the loader then raises the user's error, nothing is cached."""
        from multimodalseg import catalog
        from multimodalseg.errors import UserError

        text = None if model is None else os.fspath(model)
        if text is not None and (text.endswith(".pt") or os.sep in text or Path(text).exists()):  # as load_model
            if not Path(text).is_file():
                return None
            stat = Path(text).stat()
            return task_id, text, (str(Path(text).resolve()), stat.st_mtime_ns, stat.st_size)
        try:
            entry = catalog.default_for(task_id) if text is None else catalog.find(text, task_id)
        except UserError:
            return None
        return task_id, text, (entry.id, entry.version, entry.sha256, str(entry.local_path()))

    def load(self, task_id: str, model: Any = None) -> Any:
        key = self._key(task_id, model)
        if key is not None and key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        loader = self._loader
        if loader is None:
            from multimodalseg.inference.predictor import load_model as loader
        bundle = loader(task_id, model)
        if self.size and key is not None:
            self._items[key] = bundle
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return bundle


class _JobStream(io.TextIOBase):
    """The job's stdout: complete lines become tagged events on the worker's real stdout; the last
    ``finished``/``error`` event of the job (not of a batch case) is held back for the end of the job."""

    def __init__(self, job_id: Any, emit: Callable[[dict[str, Any]], None]) -> None:
        self.job_id, self._emit = job_id, emit
        self._pending = ""
        self.terminal: dict[str, Any] | None = None

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False  # progress "auto" means JSON lines here

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        pass

    def close_job(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = ""

    def _line(self, line: str) -> None:
        event = parse_progress_line(line)
        if event is None:
            if line.strip():
                self._emit({"event": "log", "message": line.rstrip()})
            return
        if event["event"] in TERMINAL and "case" not in event:
            self.terminal = event
            return
        self._emit(event)


class _TeeStderr(io.TextIOBase):
    """The job's stderr: passed on to the worker's stderr, its last line kept for the error event."""

    def __init__(self, target: IO[str]) -> None:
        self.target = target
        self.last = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.target.write(text)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            self.last = lines[-1]
        return len(text)

    def flush(self) -> None:
        self.target.flush()


class Worker:
    """Runs jobs one after the other in this process (``handle_line`` per request line)."""

    def __init__(self, out: IO[str] | None = None, err: IO[str] | None = None, cache_size: int = 2) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.cache = ModelCache(cache_size)
        self._lock = threading.Lock()

    def emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.out.write(json.dumps(event, default=str) + "\n")
            self.out.flush()

    def handle_line(self, line: str) -> None:
        if not line.strip():
            return
        try:
            job = json.loads(line)
            if not isinstance(job, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self.emit({"event": "error", "id": None, "message": f"bad job line ({exc}): {line.strip()[:200]}",
                       "code": 2})
            return
        self.run_job(job)

    def run_job(self, job: dict[str, Any]) -> int:
        job_id = job.get("id")
        command, args = job.get("command"), job.get("args", [])
        tagged = lambda event: self.emit({**event, "id": job_id})  # noqa: E731
        if not isinstance(command, str) or command == "serve" or not isinstance(args, list):
            tagged({"event": "error", "message": "a job needs \"command\" (a multimodalseg command other than "
                    "serve) and \"args\" (a list of strings)", "code": 2})
            return 2
        from multimodalseg.cli import COMMANDS, build_parser, run_command

        if command not in COMMANDS:
            tagged({"event": "error", "message": f"unknown command '{command}' (use one of "
                    f"{', '.join(c for c in COMMANDS if c != 'serve')})", "code": 2})
            return 2
        stdout, stderr = _JobStream(job_id, tagged), _TeeStderr(self.err)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                parsed = build_parser().parse_args([command, *map(str, args)])
                parsed.model_loader = self.cache.load  # the one hook: segment's model comes from the cache
                code = run_command(parsed, "multimodalseg")
            except SystemExit as exc:  # argparse: bad arguments (2) or --help (0)
                code = exc.code if isinstance(exc.code, int) else 2
        stdout.close_job()
        seconds = round(time.perf_counter() - t0, 4)
        if code == 0:
            final = stdout.terminal if stdout.terminal and stdout.terminal["event"] == "finished" else \
                {"event": "finished"}
        else:
            final = stdout.terminal if stdout.terminal and stdout.terminal["event"] == "error" else \
                {"event": "error", "message": stderr.last or f"{command} failed with exit code {code}"}
        tagged({**final, "code": code, "job_seconds": seconds})
        return code


def _read_lines(stream: IO[str], lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)  # EOF


def run(args: argparse.Namespace) -> int:
    stdin = sys.stdin
    worker = Worker(cache_size=args.cache_size)
    # A reader thread, so the idle timeout works on pipes on every platform (select() does not on Windows).
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(stdin, lines), daemon=True).start()
    timeout = args.idle_timeout if args.idle_timeout and args.idle_timeout > 0 else None
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            return 0  # idle timeout
        if line is None:
            return 0  # EOF: the caller is gone or done
        worker.handle_line(line)
