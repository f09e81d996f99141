"""The background runner with a fake process (progress, log, success, errors, cancel, clean-up) and the real
process-tree kill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from MultimodalSegLib.Runner import CANCELED, FAILED, SUCCEEDED, BackendRunner, LineSplitter, killProcessTree


class Recorder:
    def __init__(self):
        self.progress, self.log, self.results = [], [], []
        self.workdir_existed = None

    def on_finished(self, result):
        self.results.append(result)
        self.workdir_existed = result.workDir is not None and result.workDir.exists()


@pytest.fixture
def run(fake_process, tmp_path):
    """A runner started on a fake process, with a work folder; returns (runner, recorder, process, workdir)."""
    rec = Recorder()
    runner = BackendRunner(fake_process, onProgress=lambda f, s: rec.progress.append((f, s)),
                           onLog=rec.log.append, onFinished=rec.on_finished)
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "labels.nrrd").write_bytes(b"x")
    runner.start(["PythonSlicer", "-m", "multimodalseg", "segment", "--task", "spine"],
                 environment={"A": "1"}, workDir=workdir)
    return runner, rec, fake_process.last, workdir


def event(**kw) -> str:
    return json.dumps(kw) + "\n"


def test_start_passes_program_arguments_and_environment(run):
    runner, rec, proc, _ = run
    assert proc.started == ("PythonSlicer", ["-m", "multimodalseg", "segment", "--task", "spine"], {"A": "1"})
    assert runner.running and rec.progress == [(0.0, "starting")]
    with pytest.raises(RuntimeError, match="already in progress"):
        runner.start(["x"])


def test_progress_lines_split_across_chunks_and_log_lines(run):
    runner, rec, proc, workdir = run
    line = event(event="progress", fraction=0.42, stage="sliding window")
    proc.stdout("loading model...\n" + line[:17])
    assert rec.progress[-1] == (0.0, "starting")  # half a line: nothing yet
    proc.stdout(line[17:] + event(event="progress", fraction=0.9, stage="postprocess") + '{"not": "an event"}\n')
    assert rec.progress[1:] == [(0.42, "sliding window"), (0.9, "postprocess")]
    assert "loading model..." in rec.log and '{"not": "an event"}' in rec.log
    finished = {"event": "finished", "outputs": {"labels": str(workdir / "labels.nrrd")}, "timings": {"total": 3.5}}
    proc.stdout(json.dumps(finished))  # the last line may come without a newline
    proc.exit(0)
    (result,) = rec.results
    assert result.status == SUCCEEDED and result.exitCode == 0 and result.finished == finished
    assert rec.workdir_existed and not workdir.exists()  # results readable in onFinished, removed after
    assert not runner.running and any("total 3.5 s" in line for line in rec.log)


def test_error_event_message_is_the_failure(run):
    runner, rec, proc, workdir = run
    proc.stdout(event(event="warning", message="CUDA out of memory; using the CPU"))
    proc.stdout(event(event="error", message="/tmp/t1.nrrd: image is 2D; need 3D", code=2))
    proc.stderr("multimodalseg segment: error: /tmp/t1.nrrd: image is 2D; need 3D\n")
    proc.exit(2)
    (result,) = rec.results
    assert result.status == FAILED and result.exitCode == 2
    assert result.message == "/tmp/t1.nrrd: image is 2D; need 3D"
    assert result.warnings == ["CUDA out of memory; using the CPU"] and result.finished is None
    assert not workdir.exists()


def test_without_error_event_the_last_stderr_line_is_the_message(run):
    _, rec, proc, _ = run
    proc.stderr("Traceback...\n  File x\nmultimodalseg segment: internal error: KeyError: 'x' (rerun with --debug)\n")
    proc.exit(1)
    assert rec.results[0].message == "multimodalseg segment: internal error: KeyError: 'x' (rerun with --debug)"


def test_exit_code_alone(run):
    _, rec, proc, _ = run
    proc.exit(-9)
    assert rec.results[0].status == FAILED and rec.results[0].message == "the backend stopped with exit code -9"


def test_zero_exit_after_an_error_event_is_still_a_failure(run):
    _, rec, proc, _ = run
    proc.stdout(event(event="error", message="boom"))
    proc.exit(0)
    assert rec.results[0].status == FAILED and rec.results[0].message == "boom"


def test_cancel_kills_and_reports_canceled_without_outputs(run):
    runner, rec, proc, workdir = run
    proc.stdout(event(event="progress", fraction=0.3, stage="sliding window"))
    runner.cancel()
    assert proc.killed and runner.running  # still running until the process reports its end
    proc.exit(-9)
    (result,) = rec.results
    assert result.status == CANCELED and result.finished is None
    assert not workdir.exists() and not runner.running
    runner.cancel()  # nothing running: no effect
    assert len(rec.results) == 1


def test_start_failure(fake_process, tmp_path):
    rec = Recorder()
    runner = BackendRunner(fake_process, onFinished=rec.on_finished)
    workdir = tmp_path / "w"
    workdir.mkdir()
    runner.start(["missing-program"], workDir=workdir)
    fake_process.last.onStartFailed("No such file or directory")
    assert rec.results[0].status == FAILED and rec.results[0].exitCode is None
    assert "could not start the backend: No such file" in rec.results[0].message
    assert not workdir.exists() and not runner.running


def test_keep_work_dir_and_a_second_run(fake_process, tmp_path):
    rec = Recorder()
    runner = BackendRunner(fake_process, onFinished=rec.on_finished)
    runner.start(["a"], workDir=tmp_path, keepWorkDir=True)
    fake_process.last.exit(0)
    runner.start(["b"])
    assert fake_process.last.started[0] == "b"
    fake_process.last.exit(0)
    assert [r.status for r in rec.results] == [SUCCEEDED, SUCCEEDED] and tmp_path.exists()


def test_line_splitter_handles_crlf_and_utf8_split_inside_a_character():
    s = LineSplitter()
    data = "größe: 5 mL\r\nnext".encode()
    assert s.feed(data[:3]) == [] and s.feed(data[3:]) == ["größe: 5 mL"]
    assert s.flush() == ["next"] and s.flush() == []


@pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX process tree")
def test_kill_process_tree_kills_the_grandchild():
    code = ("import subprocess, sys, time\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print(c.pid, flush=True)\n"
            "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    killed = killProcessTree(parent.pid)
    assert parent.pid in killed and child in killed
    assert parent.wait(timeout=10) != 0
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), f"grandchild {child} still alive"


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is dead)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return ") Z " not in f.read()
    except ProcessLookupError:
        return False
    except FileNotFoundError:  # gone meanwhile, or no /proc (macOS): os.kill said it existed
        return os.path.exists("/proc") is False


def test_taskkill_runs_without_a_console_window(monkeypatch):
    import MultimodalSegLib.Runner as runner_module

    calls = []
    monkeypatch.setattr(runner_module.sys, "platform", "win32")
    monkeypatch.setattr(runner_module.subprocess, "run", lambda *a, **kw: calls.append((a, kw)))
    assert killProcessTree(1234) == [1234]
    ((args, kwargs),) = calls
    assert args[0] == ["taskkill", "/F", "/T", "/PID", "1234"]
    assert kwargs["creationflags"] == 0x08000000  # CREATE_NO_WINDOW
