"""Backend command lines: argument lists the real CLI parser accepts, input checks, device, environment."""

from __future__ import annotations

import os
import sys

import pytest
from multimodalseg.cli import COMMANDS, build_parser
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task
from MultimodalSegLib import Command

PY = ["/opt/Slicer 5.10/bin/PythonSlicer"]


def backend_args(command: list[str]) -> list[str]:
    """What follows ``PYTHON -m multimodalseg``."""
    i = command.index("-m")
    assert command[i + 1] == "multimodalseg"
    return command[i + 2:]


def test_segment_command_is_parsed_by_the_backend_cli(tmp_path):
    task = get_task("brain-tumor")
    inputs = {"t2": tmp_path / "t2 scan.nrrd", "flair": tmp_path / "a;b.nrrd", "t1": "t1.nrrd", "t1ce": "t1ce.nrrd"}
    command = Command.buildSegmentCommand(PY, task, inputs, tmp_path / "out dir" / "labels.nrrd", device="cuda:1",
                                          tta=True, quick=True, model="tumor-demo", report=tmp_path / "r.json")
    assert command[0] == PY[0]  # one element even with a space: no shell involved
    args = build_parser().parse_args(backend_args(command))
    assert args.command == "segment" and args.task == "brain-tumor"
    # inputs in the task's role order, paths with spaces or shell characters kept whole
    assert args.input == [f"flair={tmp_path / 'a;b.nrrd'}", "t1=t1.nrrd", "t1ce=t1ce.nrrd",
                          f"t2={tmp_path / 't2 scan.nrrd'}"]
    assert args.output == os.fspath(tmp_path / "out dir" / "labels.nrrd")
    assert (args.device, args.tta, args.model, args.progress) == ("cuda:1", True, "tumor-demo", "json")
    assert args.overlap == 0.0 and args.report == os.fspath(tmp_path / "r.json")


def test_defaults_leave_model_overlap_and_modality_to_the_backend():
    task = get_task("spine")
    command = Command.buildSegmentCommand(PY, task, {"ct": "ct.nrrd", "mr": "mr.nrrd"}, "o.nrrd")
    args = build_parser().parse_args(backend_args(command))
    default = build_parser().parse_args(["segment", "--task", "spine"])
    assert (args.model, args.tta, args.modality, args.report) == (None, None, None, None)  # TTA: the backend's default
    assert args.overlap == default.overlap and args.device == "auto"
    assert "--quick" not in command and "--modality" not in command


def test_modality_for_whole_heart_only():
    heart = get_task("whole-heart")
    command = Command.buildSegmentCommand(PY, heart, {"image": "h.nrrd"}, "o.nrrd", modality="MR")
    assert build_parser().parse_args(backend_args(command)).modality == "mr"
    with pytest.raises(UserError, match="modality 'pet'"):
        Command.buildSegmentCommand(PY, heart, {"image": "h.nrrd"}, "o.nrrd", modality="pet")
    with pytest.raises(UserError, match="modality"):
        Command.buildSegmentCommand(PY, get_task("spine"), {"ct": "c", "mr": "m"}, "o.nrrd", modality="ct")


def test_skull_stripping_for_brain_tumour_only():
    task = get_task("brain-tumor")
    parser = build_parser()
    for mode in Command.SKULL_STRIP_MODES:
        command = Command.buildSegmentCommand(PY, task, {"t1ce": "t.nrrd"}, "o.nrrd", skullStrip=mode.upper())
        assert parser.parse_args(backend_args(command)).skull_strip == mode
    assert "--skull-strip" not in Command.buildSegmentCommand(PY, task, {"t1ce": "t.nrrd"}, "o.nrrd")
    with pytest.raises(UserError, match="skull stripping 'sometimes' is not available .*one of auto, always, never"):
        Command.buildSegmentCommand(PY, task, {"t1ce": "t.nrrd"}, "o.nrrd", skullStrip="sometimes")
    with pytest.raises(UserError, match="skull stripping 'always' is not available for Whole"):
        Command.buildSegmentCommand(PY, get_task("whole-heart"), {"image": "h.nrrd"}, "o.nrrd", skullStrip="always")


def test_missing_required_inputs_are_named():
    task = get_task("brain-tumor")
    with pytest.raises(UserError, match="select the T1 contrast-enhanced volume"):  # FLAIR, T1, T2 are optional
        Command.buildSegmentCommand(PY, task, {"t1": "a", "t1ce": "", "t2": ""}, "o.nrrd")
    with pytest.raises(UserError, match="select the FLAIR and T2 volumes for Spine|select the .* volumes? for"):
        Command.buildSegmentCommand(PY, get_task("spine"), {"ct": "", "mr": ""}, "o.nrrd")
    assert "--input" in " ".join(Command.buildSegmentCommand(PY, task, {"t1ce": "b", "flair": ""}, "o.nrrd"))
    with pytest.raises(UserError, match="unknown input role 'ct'"):
        Command.checkInputs(task, {"ct": "x"})


def test_device_argument():
    assert Command.deviceArgument("auto") == "auto"
    assert Command.deviceArgument("CPU", 3) == "cpu"
    assert Command.deviceArgument("gpu", 2) == "cuda:2"
    with pytest.raises(ValueError):
        Command.deviceArgument("tpu")
    with pytest.raises(ValueError):
        Command.deviceArgument("gpu", -1)


def test_model_import_command_is_parsed_by_the_backend_cli():
    command = Command.buildImportModelCommand(PY, "/models/my model.pt")
    args = build_parser().parse_args(backend_args(command))
    assert args.command == "models" and args.file == "/models/my model.pt" and args.sha256 is None
    given = build_parser().parse_args(backend_args(Command.buildImportModelCommand(PY, "m.pt", " ABCD\n")))
    assert given.sha256 == "abcd"


def test_sample_command_is_the_held_out_synth_case_demo_scores(tmp_path):
    """Sample Data makes its case with ``synth --held-out`` (not the geometric phantom the demo models score poorly
    on) at the seed ``multimodalseg demo`` uses, so the self-test scores the case the demo table reports."""
    assert "synth" in COMMANDS
    args = build_parser().parse_args(backend_args(Command.buildSampleCommand(PY, "spine", tmp_path)))
    assert (args.command, args.task, args.out, args.n, args.modality, args.held_out, args.anatomy) == (
        "synth", "spine", tmp_path, 1, None, True, None)
    demo = build_parser().parse_args(["demo"])
    assert args.seed == Command.SAMPLE_SEED == demo.seed
    assert args.progress == "json" and args.overwrite  # the runner reads its events; a half-written case is redone
    heart = build_parser().parse_args(backend_args(Command.buildSampleCommand(PY, "whole-heart", tmp_path, seed=7,
                                                                              modality="ct")))
    assert (heart.modality, heart.seed) == ("ct", 7)


def test_backend_environment_puts_the_package_folder_first():
    base = {"PYTHONPATH": os.pathsep.join(["/slicer/lib", "/ext/modules"]), "HOME": "/h"}
    env = Command.backendEnvironment(base, "/ext/modules")
    assert env["PYTHONPATH"].split(os.pathsep) == ["/ext/modules", "/slicer/lib"]
    assert env["PYTHONUNBUFFERED"] == "1" and env["HOME"] == "/h"
    assert base["PYTHONPATH"] == os.pathsep.join(["/slicer/lib", "/ext/modules"])  # not modified
    assert Command.backendEnvironment({}, "/m")["PYTHONPATH"] == "/m"


def test_environment_lets_a_real_python_import_the_backend_from_the_module_folder(tmp_path):
    import subprocess

    module_dir = os.path.join(os.path.dirname(__file__), "..", "..", "MultimodalSeg")
    env = Command.backendEnvironment({k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                                     os.path.abspath(module_dir))
    code = "import multimodalseg, os; print(os.path.dirname(multimodalseg.__file__))"
    # -S: no site-packages (so not the editable install): only PYTHONPATH can provide the package
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         check=True).stdout.strip()
    assert os.path.samefile(out, os.path.join(module_dir, "multimodalseg"))


def test_find_python_slicer(tmp_path):
    assert Command.findPythonSlicer(tmp_path, "linux", lambda name: f"/usr/bin/{name}") == ["/usr/bin/PythonSlicer"]
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / "PythonSlicer.exe"
    exe.write_text("")
    assert Command.findPythonSlicer(tmp_path, "win32", lambda name: None) == [str(exe)]
    with pytest.raises(UserError, match="cannot find PythonSlicer"):
        Command.findPythonSlicer(tmp_path, "linux", lambda name: None)
