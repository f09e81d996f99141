"""``multimodalseg serve``: the warm worker's protocol (tagged events, one terminal event per job, failures that
never end the worker), its model cache, and its exits (EOF, idle timeout) as a real process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest
from multimodalseg.cli.serve_cmd import ModelCache, Worker


def run_jobs(*lines: str) -> tuple[list[dict], Worker]:
    out, err = io.StringIO(), io.StringIO()
    worker = Worker(out=out, err=err)
    for line in lines:
        worker.handle_line(line)
    return [json.loads(line) for line in out.getvalue().splitlines()], worker


def job(job_id: str, command: str, *args: object) -> str:
    return json.dumps({"id": job_id, "command": command, "args": [str(a) for a in args]})


def by_job(events: list[dict]) -> dict:
    out: dict = {}
    for event in events:
        out.setdefault(event["id"], []).append(event)
    return out


def test_every_job_ends_in_exactly_one_terminal_event_and_failures_do_not_end_the_worker(tmp_path):
    events, _ = run_jobs(
        job("ok", "tasks", "brain-tumor"),
        "not json",
        job("usage", "phantom", "--bogus"),
        job("unknown", "train"),
        json.dumps({"id": "nested", "command": "serve", "args": []}),
        job("user", "segment", "--task", "spine", "-i", f"ct={tmp_path / 'missing.nii.gz'}",
            "-i", f"mr={tmp_path / 'missing.nii.gz'}", "-o",
            tmp_path / "l.nii.gz", "--progress", "json"),
        job("after", "tasks", "--json"),
    )
    jobs = by_job(events)
    for got in jobs.values():
        assert [e["event"] for e in got].count("finished") + [e["event"] for e in got].count("error") == 1, got
        assert got[-1]["event"] in ("finished", "error")
    assert jobs["ok"][-1] == {**jobs["ok"][-1], "event": "finished", "code": 0}
    assert any(e["event"] == "log" and "NCR/NET" in e["message"] for e in jobs["ok"])
    assert jobs[None][-1]["event"] == "error" and "bad job line" in jobs[None][-1]["message"]
    assert jobs["usage"][-1]["code"] == 2 and "--task" in jobs["usage"][-1]["message"]
    assert "unknown command 'train'" in jobs["unknown"][-1]["message"]
    assert jobs["nested"][-1]["event"] == "error"
    assert jobs["user"][-1] == {**jobs["user"][-1], "event": "error", "code": 2,
                                "message": f"{tmp_path / 'missing.nii.gz'}: file not found"}
    assert jobs["after"][-1]["event"] == "finished"  # the worker went on after all those failures
    assert json.loads("\n".join(e["message"] for e in jobs["after"][:-1]))["tasks"]


def test_an_internal_error_is_an_error_event_with_code_1(monkeypatch):
    from multimodalseg.cli import tasks_cmd

    monkeypatch.setattr(tasks_cmd, "run", lambda args: 1 / 0)
    events, _ = run_jobs(job("boom", "tasks"), job("next", "models", "path"))
    jobs = by_job(events)
    assert jobs["boom"][-1]["event"] == "error" and jobs["boom"][-1]["code"] == 1
    assert "ZeroDivisionError" in jobs["boom"][-1]["message"]
    assert jobs["next"][-1]["event"] == "finished"


def test_model_cache_reuses_a_bundle_and_reloads_a_changed_file(tmp_path):
    loads = []
    cache = ModelCache(2, loader=lambda task, model: loads.append((task, model)) or object())
    first = cache.load("brain-tumor", None)
    assert cache.load("brain-tumor", None) is first and loads == [("brain-tumor", None)]
    bundle = tmp_path / "m.pt"
    bundle.write_bytes(b"1")
    a = cache.load("spine", str(bundle))
    assert cache.load("spine", str(bundle)) is a
    bundle.write_bytes(b"22")  # another size: a new file
    assert cache.load("spine", str(bundle)) is not a
    cache.load("whole-heart", None)  # three entries for a cache of two: the oldest goes
    assert len(cache._items) == 2 and (cache.hits, cache.misses) == (2, 4)


def test_model_cache_follows_the_catalog_when_a_newer_model_is_imported(monkeypatch):
    from multimodalseg import catalog

    def entry(version, sha):
        return catalog.Entry(id="tumor", version=version, task="brain-tumor", sha256=sha, inputs=[], modality=[],
                             demo=True, file=f"tumor-{version}.pt")

    newest = {"entry": entry("1.0", "a" * 64)}
    monkeypatch.setattr(catalog, "default_for", lambda task, kind="segmentation": newest["entry"])
    monkeypatch.setattr(catalog, "find", lambda model_id, task=None: newest["entry"])
    loads = []
    cache = ModelCache(2, loader=lambda task, model: loads.append(newest["entry"].version) or object())
    first = cache.load("brain-tumor", None)
    assert cache.load("brain-tumor", None) is first and cache.load("brain-tumor", "tumor") is not first
    newest["entry"] = entry("1.1", "b" * 64)  # "Import model file" added a newer version to the user catalog
    assert cache.load("brain-tumor", None) is not first and loads == ["1.0", "1.0", "1.1"]


def test_model_cache_keeps_nothing_for_a_name_that_resolves_to_no_model(monkeypatch):
    from multimodalseg import catalog
    from multimodalseg.errors import UserError

    def unknown(model_id, task=None):
        raise UserError(f"unknown model '{model_id}'")

    monkeypatch.setattr(catalog, "find", unknown)
    cache = ModelCache(2, loader=lambda task, model: object())
    cache.load("brain-tumor", "nope")
    assert cache._items == {}


@pytest.mark.slow
def test_a_second_segment_job_uses_the_cached_model(tmp_path, cli):
    assert cli("phantom", "--task", "whole-heart", "--out", tmp_path / "case", "--n", "1", "--modality", "ct").code == 0
    image = next((tmp_path / "case").glob("*_image.nii.gz"))
    lines = [job(f"j{i}", "segment", "--task", "whole-heart", "-i", f"image={image}", "-o", tmp_path / f"l{i}.nii.gz",
                 "--modality", "ct", "--device", "cpu", "--threads", "1", "--progress", "json") for i in (1, 2)]
    events, worker = run_jobs(*lines)
    jobs = by_job(events)
    for i in (1, 2):
        final = jobs[f"j{i}"][-1]
        assert final["event"] == "finished" and final["code"] == 0, jobs[f"j{i}"]
        assert os.path.exists(final["outputs"]["labels"]) and final["timings"]["total"] > 0
        assert {"started", "progress"} <= {e["event"] for e in jobs[f"j{i}"]}
    assert (worker.cache.misses, worker.cache.hits) == (1, 1)


def serve_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "multimodalseg", "serve", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_the_worker_answers_and_exits_on_eof():
    proc = serve_process()
    out, _ = proc.communicate(job("a", "tasks", "spine") + "\n", timeout=120)
    assert proc.returncode == 0
    assert json.loads(out.splitlines()[-1])["event"] == "finished"


def test_the_worker_exits_after_the_idle_timeout():
    proc = serve_process("--idle-timeout", "1")
    t0 = time.monotonic()
    try:
        proc.stdin.write(job("a", "tasks") + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == "a"
        assert proc.wait(timeout=60) == 0  # stdin still open: only the timeout ends it
    finally:
        proc.kill()
    assert time.monotonic() - t0 < 30
