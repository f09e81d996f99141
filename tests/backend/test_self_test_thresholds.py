"""The Slicer self-tests' Dice thresholds are met by the shipped models (issue 15 item 5).

Each module file's self-test (``MultimodalSegLib.SelfTest.runTaskSelfTest``) makes the Sample Data case with the
command ``Command.buildSampleCommand`` builds (``synth --held-out``, an anatomy the demo models were not trained
on), fits each moving input to the reference from the case's landmark lists (rigid), segments with the task's
default model and scores Dice with ``multimodalseg.metrics``. Here the same backend commands run through
``multimodalseg.cli.main``: the sample command, ``register`` for the landmark fit (Slicer fits it in its own
process), ``segment`` as ``Command.buildSegmentCommand`` writes it and ``evaluate``. The threshold and metric are
read from the module file's ``runPhantomSelfTest(...)`` line with ``ast``, so the file and this test cannot drift.
The shipped default model is read from the catalog: after a new bundle ships, re-run this file.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg import catalog
from multimodalseg.cli import main
from multimodalseg.tasks import get_task

MODULE_DIR = Path(__file__).resolve().parents[2] / "MultimodalSeg"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # the Slicer layer's plain-Python command builders, as tests/slicer does

from MultimodalSegLib import Command  # noqa: E402
from MultimodalSegLib.SampleFiles import findCaseFiles  # noqa: E402

MODULES = {"petmr-brain": "PETMRBrain", "brain-tumor": "BrainTumor", "whole-heart": "WholeHeart",
           "spine": "SpineCTMR"}
PY = [sys.executable]


def self_test_threshold(module: str) -> tuple[float, str]:
    """``(minimumDice, metric)`` of the module file's ``self.runPhantomSelfTest(...)`` call."""
    tree = ast.parse((MODULE_DIR / f"{module}.py").read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "runPhantomSelfTest"]
    assert len(calls) == 1, f"{module}.py: expected one runPhantomSelfTest call"
    options = {kw.arg: ast.literal_eval(kw.value) for kw in calls[0].keywords}
    return float(options["minimumDice"]), str(options.get("metric", "mean"))


def backend(command: list[str], capsys) -> str:
    """Run ``[python, -m, multimodalseg, ...]`` in this process; its stdout."""
    assert command[:3] == [*PY, "-m", "multimodalseg"], command
    code = main(command[3:])
    out, err = capsys.readouterr()
    assert code == 0, f"{' '.join(command[3:6])} failed: {err.strip().splitlines()[-1:] or out[-300:]}"
    return out


def harden(path: Path, moving_to_fixed: np.ndarray, out: Path) -> Path:
    """What Slicer's ``exportNode(world=True)`` writes for a volume under a linear transform: the same voxels with
    the transform put into the geometry (LPS), not resampled (resampling would blur the zero background)."""
    image = sitk.ReadImage(str(path))
    rotation, shift = moving_to_fixed[:3, :3], moving_to_fixed[:3, 3]
    direction = rotation @ np.asarray(image.GetDirection()).reshape(3, 3)
    image.SetOrigin(tuple(float(v) for v in rotation @ np.asarray(image.GetOrigin()) + shift))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    sitk.WriteImage(image, str(out))
    return out


def self_test_dice(task_id: str, folder: Path, capsys) -> dict:
    """The self-test's path on the backend; the ``evaluate`` metrics of the default model on the sample case."""
    task = get_task(task_id)
    modality = task.modalities[0] if task.modalities else None  # Samples.generateCase: whole heart's CT case
    backend(Command.buildSampleCommand(PY, task.id, folder / "sample", modality=modality), capsys)
    files = findCaseFiles(task, folder / "sample")
    assert files.complete(task) and files.label is not None
    inputs = dict(files.images)
    fixed = files.landmarks.get(task.reference_role)
    for role in task.roles:  # SelfTest.registerWithSampleLandmarks: every moving role with a landmark list
        if role == task.reference_role or fixed is None or role not in files.landmarks:
            continue
        out = folder / f"register-{role}"
        backend([*PY, "-m", "multimodalseg", "register", "--fixed-points", str(fixed), "--moving-points",
                 str(files.landmarks[role]), "--mode", "rigid", "-o", str(out)], capsys)
        matrix = json.loads((out / "report.json").read_text())["matrix_moving_to_fixed"]
        inputs[role] = harden(files.images[role], np.asarray(matrix, float), out / f"{role}.nrrd")
    labels = folder / "labels.nii.gz"
    backend(Command.buildSegmentCommand(PY, task, inputs, labels, device="cpu", modality=modality), capsys)
    out = backend([*PY, "-m", "multimodalseg", "evaluate", "--pred", str(labels), "--ref", str(files.label),
                   "--task", task.id, "--json"], capsys)
    return json.loads(out)


def dice_of(metrics: dict, metric: str) -> float:
    """As ``runTaskSelfTest`` reads it: ``mean``/``regions_mean`` or one label's Dice."""
    return metrics[metric]["dice"] if metric in ("mean", "regions_mean") else metrics["labels"][metric]["dice"]


@pytest.mark.slow
@pytest.mark.parametrize("task_id", MODULES)
def test_the_shipped_model_meets_the_module_self_test_threshold(task_id, tmp_path, capsys):
    entry = catalog.default_for(task_id)
    if entry is None or entry.incompatible:
        pytest.skip(f"no usable shipped model for {task_id}")
    minimum, metric = self_test_threshold(MODULES[task_id])
    metrics = self_test_dice(task_id, tmp_path, capsys)
    dice = dice_of(metrics, metric)
    print(f"{task_id} {entry.id} {entry.version}: Dice ({metric}) {dice:.3f}, mean {metrics['mean']['dice']:.3f}"
          f", threshold {minimum}")
    assert dice >= minimum, f"{entry.id} {entry.version}: Dice ({metric}) {dice:.3f} < {minimum} in {MODULES[task_id]}"


def test_thresholds_are_read_from_the_module_files_and_say_something():
    """Every module names a metric its task has, with a threshold a bad model would miss."""
    for task_id, module in MODULES.items():
        minimum, metric = self_test_threshold(module)
        task = get_task(task_id)
        assert metric in ("mean", "regions_mean") or metric in [label.name for label in task.labels]
        assert metric != "regions_mean" or task.regions
        assert 0.5 <= minimum < 1.0, f"{module}: minimumDice {minimum}"
