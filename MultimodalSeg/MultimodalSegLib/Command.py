"""Backend command lines (argument lists, never shell strings) and the environment the backend process runs in.

Plain Python: no Slicer import. The backend runs as ``PythonSlicer -m multimodalseg ...`` in a separate process,
so torch is never imported in Slicer's own process.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from multimodalseg.errors import UserError
from multimodalseg.tasks import TaskSpec

DEVICE_KINDS = ("auto", "cpu", "gpu")
QUICK_OVERLAP = "0"  # sliding-window overlap of the quick mode (the backend's default is 0.25)
SKULL_STRIP_MODES = ("auto", "always", "never")  # segment --skull-strip choices (a test has the backend parse each)
SAMPLE_SEED = 1  # the sample data's case is the one 'multimodalseg demo' scores (its default --seed)


def deviceArgument(kind: str, gpuIndex: int = 0) -> str:
    """The ``--device`` value: ``auto``, ``cpu`` or ``cuda:N`` for GPU ``N``."""
    kind = kind.lower()
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {kind!r} (use one of {', '.join(DEVICE_KINDS)})")
    if kind == "gpu":
        if gpuIndex < 0:
            raise ValueError(f"GPU index must be >= 0, got {gpuIndex}")
        return f"cuda:{gpuIndex}"
    return kind


def checkInputs(task: TaskSpec, inputs: Mapping[str, object]) -> None:
    """Raise a UserError naming the problem when a role is unknown or a required input is missing."""
    for role in inputs:
        task.input(role)  # raises UserError for an unknown role
    missing = [spec.title for spec in task.inputs if spec.required and inputs.get(spec.role) in (None, "")]
    if missing:
        raise UserError(f"select the {' and '.join(missing)} volume{'s' if len(missing) > 1 else ''} "
                        f"for {task.title}")


def buildSegmentCommand(
    python: Sequence[str],
    task: TaskSpec,
    inputs: Mapping[str, str | os.PathLike],
    output: str | os.PathLike,
    *,
    device: str = "auto",
    tta: bool = False,
    quick: bool = False,
    model: str | None = None,
    report: str | os.PathLike | None = None,
    modality: str | None = None,
    skullStrip: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """``python -m multimodalseg segment ...`` as an argument list.

    Args:
        python: the interpreter command, e.g. ``["/opt/Slicer/bin/PythonSlicer"]``.
        task: the task specification; inputs are passed in its role order.
        inputs: role -> file (exported volume); required roles must be present.
        output: the label map the backend writes (on the reference input's grid).
        device: ``auto``, ``cpu`` or ``cuda:N`` (see :func:`deviceArgument`).
        tta: flip test-time augmentation.
        quick: the faster setting: sliding windows without overlap (``--overlap 0``) instead of the backend's
            default; fewer windows, slightly less smooth borders between them.
        model: a catalog model id or a bundle path; None lets the backend pick the newest for the task.
        report: where the backend writes its JSON report (volumes, statistics, extra outputs).
        modality: for tasks with several input modalities (whole heart): ``ct`` or ``mr``; None: the backend decides.
        skullStrip: for tasks that strip whole-head MR first (brain tumour): ``auto``, ``always`` or ``never``;
            None: the backend's default (``auto``: strip when the input holds much more than the brain).
        extra: further ``segment`` options (the PET/MR panel's SUV values, ``Suv.SuvValues.arguments``).

    Raises:
        UserError: unknown role or a missing required input.
    """
    checkInputs(task, inputs)
    command = [*python, "-m", "multimodalseg", "segment", "--task", task.id]
    for role in task.roles:
        if inputs.get(role) not in (None, ""):
            command += ["--input", f"{role}={os.fspath(inputs[role])}"]
    command += ["-o", os.fspath(output), "--device", device]
    if tta:
        command.append("--tta")
    if quick:
        command += ["--overlap", QUICK_OVERLAP]
    if model:
        command += ["--model", model]
    if report is not None:
        command += ["--report", os.fspath(report)]
    if modality:
        if modality.lower() not in task.modalities:
            raise UserError(f"modality {modality!r} is not one of {', '.join(task.modalities) or 'none'} "
                            f"for {task.title}")
        command += ["--modality", modality.lower()]
    if skullStrip:
        if not task.skull_strip or skullStrip.lower() not in SKULL_STRIP_MODES:
            raise UserError(f"skull stripping {skullStrip!r} is not available for {task.title}"
                            + (f" (one of {', '.join(SKULL_STRIP_MODES)})" if task.skull_strip else ""))
        command += ["--skull-strip", skullStrip.lower()]
    command += [str(a) for a in extra]
    command += ["--progress", "json"]
    return command


def buildSampleCommand(python: Sequence[str], taskId: str, outDir: str | os.PathLike, seed: int = SAMPLE_SEED,
                       modality: str | None = None) -> list[str]:
    """``python -m multimodalseg synth --task T --out DIR --n 1 --seed S --held-out ... [--modality M]``: the sample
    case of the task in its public layout, with landmark lists per role, made from an anatomy held out of the demo
    models' training (the models are trained on such synthetic cases, not on the geometric phantoms). Whole heart:
    one ``modality``, default both CT and MR."""
    command = [*python, "-m", "multimodalseg", "synth", "--task", taskId, "--out", os.fspath(outDir),
               "--n", "1", "--seed", str(int(seed)), "--held-out", "--progress", "json",
               "--overwrite"]  # the folder is only regenerated when incomplete: a half-written case must not block it
    if modality:
        command += ["--modality", modality]
    return command


def buildImportModelCommand(python: Sequence[str], bundle: str | os.PathLike, sha256: str | None = None) -> list[str]:
    """``python -m multimodalseg models import FILE [--sha256 HEX]``: checks the bundle's sha256 (given, or from
    the ``FILE.sha256`` beside it) and copies it into the cache."""
    command = [*python, "-m", "multimodalseg", "models", "import", os.fspath(bundle)]
    if sha256:
        command += ["--sha256", sha256.strip().lower()]
    return command


def backendEnvironment(base: Mapping[str, str], packageParent: str | os.PathLike) -> dict[str, str]:
    """The backend's environment: ``base`` with the folder holding the ``multimodalseg`` package first on
    PYTHONPATH (Slicer installs it beside the modules, which only Slicer's own process has on its path) and
    unbuffered output, so progress lines arrive as they are printed."""
    env = dict(base)
    parent = os.fspath(packageParent)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != parent]
    env["PYTHONPATH"] = os.pathsep.join([parent, *rest])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def findPythonSlicer(
    slicerHome: str | os.PathLike,
    platform: str = sys.platform,
    which: Callable[[str], str | None] = shutil.which,
) -> list[str]:
    """The command that starts Slicer's Python: ``PythonSlicer`` on PATH, else ``<home>/bin/PythonSlicer``.

    Raises:
        UserError: neither exists.
    """
    name = "PythonSlicer.exe" if platform.startswith("win") else "PythonSlicer"
    found = which(name)
    if found:
        return [found]
    candidate = Path(slicerHome) / "bin" / name
    if candidate.is_file():
        return [str(candidate)]
    raise UserError(f"cannot find {name} (looked on PATH and in {candidate.parent})")
