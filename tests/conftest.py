"""Shared fixtures: run the CLI in-process or as a real process, and make small test volumes."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    """Every test runs torch on one thread (restored afterwards): on a 2-core machine the small networks of the
    tests run several times faster, because the OpenMP threads stop waiting for each other."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; keep torch-free tests independent of it
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run ``multimodalseg ARGS`` in this process; returns exit code, stdout and stderr."""

    def run(*args: object) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def cli_process():
    """Run ``python -m multimodalseg ARGS`` as a separate process, as Slicer does."""

    def run(*args: object, timeout: float = 600) -> CliResult:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "multimodalseg", *map(str, args)],
            capture_output=True, text=True, timeout=timeout, env=env,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def write_volume(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                 direction=None) -> Path:
    """Write a (z, y, x) array as a volume file with the given geometry."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture
def volume_file(tmp_path):
    """Factory: ``volume_file(name, array, **geometry)`` writes into the test's temporary folder."""

    def make(name: str, array: np.ndarray, **geometry) -> Path:
        return write_volume(tmp_path / name, array, **geometry)

    return make


@pytest.fixture(scope="session")
def untrained_bundle(tmp_path_factory):
    """Factory: an UNTRAINED small BasicUNet bundle for a task (real bundle file, real predictor path,
    meaningless labels), for tests of plumbing such as report tables, never of accuracy."""

    def make(task_id: str, spacing=(3.5, 3.5, 3.5), patch=(32, 32, 32)) -> Path:
        import torch
        from multimodalseg.bundles import save_bundle
        from multimodalseg.nets import build_network
        from multimodalseg.tasks import get_task

        task = get_task(task_id)
        config = {"spatial_dims": 3, "in_channels": len(task.inputs), "out_channels": task.num_classes,
                  "features": [4, 4, 8, 8, 16, 4]}
        torch.manual_seed(0)
        net = build_network("basic_unet", **config)
        path = tmp_path_factory.mktemp("untrained") / f"{task_id}-untrained.pt"
        save_bundle(path, net.state_dict(), {
            "id": f"{task_id}-untrained-test", "version": "0", "task": task_id, "demo": True,
            "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in task.labels],
            "network": {"name": "basic_unet", "config": config},
            "preprocessing": {"spacing": list(spacing), "patch_size": list(patch),
                              "normalization": {i.role: i.normalization for i in task.inputs},
                              "roles": list(task.roles)},
        })
        return path

    return make
