"""Run a script under the real PythonQt host (``../shared/tools/pythonqt``), the binding Slicer embeds.

The host is ``$PYTHONQT_HOST`` or ``../shared/tools/pythonqt/bin/pythonqt-host`` beside the repository. Tests that
need it skip with the reason when it is absent or its Qt runtime libraries are missing (``runtime-deps.sh``
installs them; ``tools/test.sh`` runs it when it can).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "MultimodalSeg"
DEFAULT_HOST = REPO.parent / "shared" / "tools" / "pythonqt" / "bin" / "pythonqt-host"


def hostPath() -> Path:
    return Path(os.environ.get("PYTHONQT_HOST") or DEFAULT_HOST)


@functools.lru_cache(maxsize=1)
def hostProblem() -> str | None:
    """Why the host cannot run here (None: it can)."""
    host = hostPath()
    if not host.is_file():
        return f"PythonQt host not found at {host} (set PYTHONQT_HOST)"
    try:
        run = subprocess.run([str(host), "--version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        return f"PythonQt host {host} cannot start: {exc}"
    if run.returncode != 0:
        last = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"PythonQt host cannot start (Qt runtime missing? run runtime-deps.sh): {last[0]}"
    return None


requires_host = pytest.mark.skipif(hostProblem() is not None, reason=hostProblem() or "")


@dataclass
class HostRun:
    code: int
    out: str
    err: str

    def lines(self, prefix: str) -> list[str]:
        """The stdout lines starting with ``prefix`` (without it)."""
        return [line[len(prefix):].strip() for line in self.out.splitlines() if line.startswith(prefix)]


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The host's environment: the module folder first on PYTHONPATH (as Slicer has it), offscreen Qt."""
    env = dict(os.environ)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(MODULE_DIR), *rest])
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    if sys.prefix != sys.base_prefix:  # a virtualenv: the host uses its packages (same Python version needed)
        env.setdefault("PYTHONQT_HOST_PYTHON", sys.executable)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def runScript(tmp_path: Path, source: str, *args: str, timeout: float = 120,
              env: dict[str, str] | None = None) -> HostRun:
    """Write ``source`` (dedented) to a file under ``tmp_path`` and run it in the host."""
    script = tmp_path / "host_script.py"
    script.write_text(textwrap.dedent(source), encoding="utf-8")
    run = subprocess.run([str(hostPath()), str(script), *args], capture_output=True, text=True, timeout=timeout,
                         env=environment(env), cwd=str(tmp_path))
    return HostRun(run.returncode, run.stdout, run.stderr)
