"""The warm-worker runner with a fake process: jobs on stdin, tagged events, one worker for many jobs, a dead
worker replaced, cancel = kill + a fresh worker, late lines of an old job ignored."""

from __future__ import annotations

import json

import pytest
from MultimodalSegLib.Runner import CANCELED, FAILED, SUCCEEDED
from MultimodalSegLib.Worker import WorkerRunner, jobArguments, serveCommand

PY = ["PythonSlicer"]


def tagged(job_id: str, **event) -> str:
    return json.dumps({**event, "id": job_id}) + "\n"


@pytest.fixture
def worker(fake_process):
    logs = []
    runner = WorkerRunner(fake_process, serveCommand(PY, 60), environment={"E": "1"}, onLog=logs.append)
    return runner, fake_process, logs


def submit(runner, results, *args, **kw):
    runner.start([*PY, "-m", "multimodalseg", "segment", *args], onFinished=results.append, **kw)


def test_job_arguments_from_a_command_line():
    assert jobArguments(["/x/PythonSlicer", "-m", "multimodalseg", "tasks", "--json"]) == ("tasks", ["--json"])
    with pytest.raises(ValueError):
        jobArguments(["python", "-c", "pass"])


def test_two_jobs_share_one_worker(worker, tmp_path):
    runner, factory, _ = worker
    results, progress = [], []
    work = tmp_path / "w"
    work.mkdir()
    submit(runner, results, "--task", "spine", workDir=work, onProgress=lambda f, s: progress.append((f, s)))
    proc = factory.last
    assert proc.started == ("PythonSlicer", ["-m", "multimodalseg", "serve", "--idle-timeout", "60"], {"E": "1"})
    assert proc.jobs() == [{"id": "j1", "command": "segment", "args": ["--task", "spine"]}]
    line = tagged("j1", event="progress", fraction=0.5, stage="sliding window")
    proc.stdout(line[:10])
    proc.stdout(line[10:] + tagged("j1", event="finished", outputs={"labels": "l.nrrd"}, code=0))
    assert progress == [(0.0, "starting"), (0.5, "sliding window")]
    assert results[0].status == SUCCEEDED and results[0].finished["outputs"] == {"labels": "l.nrrd"}
    assert not work.exists() and not runner.running and runner.workerAlive
    submit(runner, results, "--task", "brain-tumor")
    proc.stdout(tagged("j2", event="error", message="t1.nrrd: file not found", code=2))
    assert results[1].status == FAILED and results[1].exitCode == 2 and results[1].message == "t1.nrrd: file not found"
    assert runner.workersStarted == 1


def test_a_worker_that_died_is_replaced_and_its_job_fails(worker):
    runner, factory, _ = worker
    results = []
    submit(runner, results, "--task", "spine")
    first = factory.last
    first.stderr("Fatal Python error: Segmentation fault\n")
    first.exit(-11)
    assert results[0].status == FAILED and "exit code -11" in results[0].message
    assert "Segmentation fault" in results[0].message and not runner.workerAlive
    submit(runner, results, "--task", "spine")
    assert factory.last is not first and factory.last.jobs()[0]["id"] == "j2"
    factory.last.stdout(tagged("j2", event="finished", code=0))
    assert results[1].status == SUCCEEDED


def test_cancel_kills_the_worker_and_starts_a_fresh_one(worker):
    runner, factory, _ = worker
    results = []
    submit(runner, results, "--task", "spine")
    first = factory.last
    runner.cancel()
    assert first.killed and runner.running
    first.stdout(tagged("j1", event="progress", fraction=0.9, stage="write"))
    first.exit(-9)
    assert [r.status for r in results] == [CANCELED]
    assert factory.last is not first and runner.workersStarted == 2  # warm again at once
    first.stdout(tagged("j1", event="finished", code=0))  # a late line of the killed worker: ignored
    assert len(results) == 1


def test_log_events_and_a_busy_worker(worker):
    runner, factory, logs = worker
    results, jobLogs = [], []
    submit(runner, results, "--task", "spine", onLog=jobLogs.append)
    with pytest.raises(RuntimeError, match="in progress"):
        submit(runner, results, "--task", "spine")
    factory.last.stdout(tagged("j1", event="log", message="loading model") + tagged("j0", event="progress",
                                                                                     fraction=0.1, stage="x"))
    assert jobLogs == ["loading model"]
    factory.last.stdout(tagged("j1", event="finished", code=0))
    factory.last.exit(0)  # idle timeout between jobs: nothing to report
    assert not runner.workerAlive and len(results) == 1


def test_a_worker_that_cannot_start(worker):
    runner, factory, _ = worker
    results = []
    submit(runner, results, "--task", "spine")
    factory.last.onStartFailed("No such file or directory")
    assert results[0].status == FAILED and results[0].message.startswith("could not start the backend")
