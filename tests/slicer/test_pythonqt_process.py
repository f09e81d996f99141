"""``SlicerProcess.QtBackendProcess`` with a real ``qt.QProcess`` under PythonQt (the binding Slicer embeds):
exit codes, a crash, a program that cannot start, output in chunks, kill of the process tree, no leak; and the
runner end to end on a real backend command. Skipped when the PythonQt host or its Qt runtime is absent."""

from __future__ import annotations

import sys

import pytest
from pythonqt import requires_host, runScript

pytestmark = [requires_host, pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX children")]

PRELUDE = """
import json, os, sys, time
import qt
import pythonqt_host as host
from MultimodalSegLib.SlicerProcess import QtBackendProcess

def play(program, arguments, environment=None, timeout_ms=20000, onStarted=None):
    got = {"stdout": [], "stderr": [], "finished": [], "failed": []}
    p = QtBackendProcess()
    p.onStdout = got["stdout"].append
    p.onStderr = got["stderr"].append
    p.onFinished = got["finished"].append
    p.onStartFailed = got["failed"].append
    p.start(program, arguments, environment)
    if onStarted:
        onStarted(p)
    assert host.wait_until(lambda: got["finished"] or got["failed"], timeout_ms), "never ended: " + repr(got)
    host.process_events(100)  # anything queued after the end (a second finished would show here)
    return p, got
"""


def check(run) -> None:
    assert run.code == 0, f"host exit {run.code}\nstdout:\n{run.out}\nstderr:\n{run.err}"


def test_exit_codes_reach_the_runner_once(tmp_path):
    run = runScript(tmp_path, PRELUDE + """
for code in (0, 3):
    _, got = play(sys.executable, ["-c", f"raise SystemExit({code})"])
    print("RESULT", code, got["finished"], got["failed"])
""")
    check(run)
    assert run.lines("RESULT") == ["0 [0] []", "3 [3] []"]


def test_a_crash_is_a_negative_code(tmp_path):
    run = runScript(tmp_path, PRELUDE + """
_, got = play(sys.executable, ["-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
print("RESULT", got["finished"])
""")
    check(run)
    assert run.lines("RESULT") == ["[-11]"]


def test_a_program_that_cannot_start(tmp_path):
    run = runScript(tmp_path, PRELUDE + """
_, got = play("/nonexistent/PythonSlicer", ["-m", "multimodalseg"])
print("RESULT", len(got["failed"]), got["finished"])
print("MESSAGE", got["failed"][0])
""")
    check(run)
    assert run.lines("RESULT") == ["1 []"]
    assert run.lines("MESSAGE")[0]  # Qt's errorString, e.g. "execvp: No such file or directory"


def test_output_arrives_as_it_is_printed_as_bytes_with_the_environment(tmp_path):
    # A handshake instead of sleeps: the child prints line i+1 only after the parent has received line i and
    # answered on stdin, so "output arrives while the process runs" holds however the machine's load chunks it.
    child = ("import os, sys\n"
             "for i in range(5):\n"
             "    print(f'line {i} ' + os.environ['MMSEG_TEST'], flush=True)\n"
             "    assert sys.stdin.readline() == f'go {i}\\n'\n"
             "print('problem', file=sys.stderr, flush=True)\n")
    run = runScript(tmp_path, PRELUDE + f"""
from MultimodalSegLib.Runner import LineSplitter
env = dict(os.environ, MMSEG_TEST="größe")
chunks, lines, splitter = [], [], LineSplitter()
def onStarted(p):
    def onStdout(chunk):  # chunks split anywhere: whole lines come from the runner's own splitter
        chunks.append(chunk)
        for line in splitter.feed(chunk):
            lines.append(line)
            p.write(f"go {{len(lines) - 1}}\\n".encode())
    p.onStdout = onStdout
_, got = play(sys.executable, ["-c", {child!r}], env, onStarted=onStarted)
print("CHUNKS", len(chunks) >= 5, all(isinstance(c, bytes) for c in chunks))
print("TEXT", json.dumps(lines))
print("ERR", json.dumps(b"".join(got["stderr"]).decode("utf-8")), got["finished"])
""")
    check(run)
    assert run.lines("CHUNKS") == ["True True"]
    assert run.lines("TEXT") == ["[" + ", ".join(f'"line {i} gr\\u00f6\\u00dfe"' for i in range(5)) + "]"]
    assert run.lines("ERR") == ['"problem\\n" [0]']


def test_kill_ends_the_process_tree(tmp_path):
    child = ("import subprocess, sys, time\n"
             "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
             "print(c.pid, flush=True)\n"
             "time.sleep(60)\n")
    run = runScript(tmp_path, PRELUDE + f"""
pids, out = [], bytearray()
def onStdout(chunk):  # chunks split anywhere (under load the newline can come alone): parse the whole line
    out.extend(chunk)
    if out.endswith(b"\\n") and not pids:
        pids.append(int(out))
def onStarted(p):
    p.onStdout = onStdout
    assert host.wait_until(lambda: pids, 20000), "no grandchild pid"
    p.kill()
t0 = time.monotonic()
_, got = play(sys.executable, ["-c", {child!r}], onStarted=onStarted)
def alive(pid):
    try:
        with open(f"/proc/{{pid}}/stat") as f:
            return ") Z " not in f.read()
    except FileNotFoundError:
        return False
host.wait_until(lambda: not alive(pids[0]), 10000)
print("RESULT", got["finished"], alive(pids[0]), time.monotonic() - t0 < 30)
""")
    check(run)
    assert run.lines("RESULT") == ["[-9] False True"]


def test_finished_processes_are_released(tmp_path):
    run = runScript(tmp_path, PRELUDE + """
import gc, weakref
refs, destroyed = [], []
for i in range(5):
    # destroyed(): the C++ QProcess itself goes, not only its Python wrapper
    p, got = play(sys.executable, ["-c", "print('x')"],
                  onStarted=lambda p: p.process.connect("destroyed()", lambda: destroyed.append(1)))
    assert got["finished"] == [0], got
    refs.append(weakref.ref(p))
    del p
host.wait_until(lambda: len(destroyed) == 5 and (gc.collect() or True), 5000)
gc.collect()
print("ALIVE", sum(r() is not None for r in refs), "DESTROYED", len(destroyed))
""")
    check(run)
    assert run.lines("ALIVE") == ["0 DESTROYED 5"]


RUNNER = """
import json, os, sys, tempfile
import pythonqt_host as host
from MultimodalSegLib.Runner import BackendRunner
from MultimodalSegLib.SlicerProcess import QtBackendProcess
from MultimodalSegLib import Command

results, logs = [], []
runner = BackendRunner(QtBackendProcess, onLog=logs.append, onFinished=results.append)
env = Command.backendEnvironment(dict(os.environ), os.environ["MODULE_DIR"])
"""


def test_runner_end_to_end_on_a_real_backend_command(tmp_path):
    from pythonqt import MODULE_DIR

    run = runScript(tmp_path, RUNNER + """
work = tempfile.mkdtemp()
runner.start([sys.executable, "-m", "multimodalseg", "tasks", "--json"], environment=env, workDir=work)
assert host.wait_until(lambda: results, 60000), "the run never finished"
r = results[0]
tasks = json.loads("\\n".join(logs))["tasks"]
print("RESULT", r.status, r.exitCode, os.path.exists(work), runner.running, sorted(t["id"] for t in tasks)[0])

missing = os.path.join(work, "missing t1.nii.gz")
runner.start([sys.executable, "-m", "multimodalseg", "segment", "--task", "brain-tumor", "-i", "flair=" + missing,
              "-i", "t1=" + missing, "-i", "t1ce=" + missing, "-i", "t2=" + missing, "-o", work + "/l.nrrd",
              "--progress", "json"], environment=env)
assert host.wait_until(lambda: len(results) == 2, 60000), "the failing run never finished"
print("FAILED", results[1].status, results[1].exitCode, results[1].message)
""", env={"MODULE_DIR": str(MODULE_DIR)})
    check(run)
    assert run.lines("RESULT") == ["succeeded 0 False False brain-tumor"]
    status, code, message = run.lines("FAILED")[0].split(" ", 2)
    assert (status, code) == ("failed", "2") and message.endswith("missing t1.nii.gz: file not found")


def test_the_warm_worker_protocol_under_pythonqt(tmp_path):
    from pythonqt import MODULE_DIR

    run = runScript(tmp_path, RUNNER + """
import signal, time
from MultimodalSegLib.Worker import WorkerRunner, serveCommand
worker = WorkerRunner(QtBackendProcess, serveCommand([sys.executable], 120), environment=env)
py = [sys.executable, "-m", "multimodalseg"]

def job(command, timeout_ms=60000, **kw):
    results.clear()
    worker.start(py + command, onFinished=results.append, **kw)
    assert host.wait_until(lambda: results, timeout_ms), "job never finished: " + " ".join(command)
    return results[0]

logs.clear()
r = job(["tasks", "--json"], onLog=logs.append)
print("TASKS", r.status, json.loads("\\n".join(logs))["tasks"][0]["id"] != "", worker.workersStarted)
pid = worker._worker._pid
r = job(["segment", "--task", "spine"])
print("FAILED", r.status, r.exitCode, worker._worker._pid == pid)

started = []
# A job far too long to end by itself (200 clinical-size cases), cancelled once its first case is written: the
# cancel always meets a running job, however fast or loaded the machine.
phantom = ["phantom", "--task", "brain-tumor", "--clinical", "--n", "200", "--out", os.path.join(os.getcwd(), "p")]
results.clear()
worker.start(py + phantom, onFinished=results.append, onLog=started.append)
assert host.wait_until(lambda: started or results, 60000), "the long job printed nothing"
assert not results, "the long job ended by itself: " + repr(results)
t0 = time.monotonic()
worker.cancel()
assert host.wait_until(lambda: results, 20000), "cancel never ended the job"
print("CANCELED", results[0].status, round(time.monotonic() - t0) < 10, worker.workersStarted,
      worker._worker._pid != pid)

os.kill(worker._worker._pid, signal.SIGKILL)  # the worker dies between jobs
host.wait_until(lambda: not worker.workerAlive, 10000)
r = job(["models", "path"])
print("RESTARTED", r.status, worker.workersStarted)
worker.shutdown()
""", env={"MODULE_DIR": str(MODULE_DIR)}, timeout=240)
    check(run)
    assert run.lines("TASKS") == ["succeeded True 1"]
    assert run.lines("FAILED") == ["failed 2 True"]
    assert run.lines("CANCELED") == ["canceled True 2 True"]
    assert run.lines("RESTARTED") == ["succeeded 3"]
