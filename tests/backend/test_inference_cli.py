"""``multimodalseg segment``: progress lines from a real process, batch mode, and every bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg.bundles import save_bundle, sha256_file
from multimodalseg.nets import build_network
from multimodalseg.progress import parse_progress_line
from multimodalseg.tasks import get_task

SPINE = get_task("spine")
CONFIG = {"spatial_dims": 3, "in_channels": 2, "out_channels": 3, "features": (4, 4, 8, 8, 16, 4)}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """A private model cache, so the user's real one never matters."""
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))


def make_bundle(folder: Path, task: str = "spine", name: str = "tiny", version: str = "0.1") -> Path:
    """A real (randomly initialised) tiny BasicUNet bundle with its .sha256 sidecar."""
    spec = get_task(task)
    out = len(spec.regions) if spec.output_kind == "regions" else spec.num_classes
    config = {**CONFIG, "in_channels": len(spec.inputs), "out_channels": out}
    torch.manual_seed(0)
    net = build_network("basic_unet", **config)
    meta = {"id": name, "version": version, "task": task, "network": {"name": "basic_unet", "config": config},
            "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in spec.labels],
            "preprocessing": {"spacing": None, "patch_size": [32, 32, 32]}, "demo": True}
    path = folder / f"{name}.pt"
    save_bundle(path, net.state_dict(), meta)
    return path


def write_case(folder: Path, prefix: str = "", shape=(20, 40, 36)) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    ct = np.full(shape, -1000.0, np.float32)
    ct[4:16, 6:34, 6:30] = rng.normal(40, 10, (12, 28, 24))
    mr = np.zeros(shape, np.float32)
    mr[4:16, 6:34, 6:30] = rng.normal(200, 30, (12, 28, 24))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, arr in (("ct", ct), ("mr", mr)):
        paths[role] = folder / f"{prefix}{role}.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(paths[role]))
    return paths


@pytest.fixture
def case(tmp_path):
    return write_case(tmp_path / "in")


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path / "models")


def _segment_args(case, out, bundle, *extra):
    return ("segment", "--task", "spine", "--input", f"ct={case['ct']}", "--input", f"mr={case['mr']}",
            "-o", out, "--model", bundle, "--device", "cpu", "--no-fusion", *extra)  # spine: no fused image here


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_progress_json_lines_from_a_real_process(cli_process, case, bundle, tmp_path):
    out = tmp_path / "out" / "seg.nii.gz"
    r = cli_process(*_segment_args(case, out, bundle, "--progress", "json", "--report", tmp_path / "out" / "r.json"))
    assert r.code == 0, r.err
    events = [e for e in map(parse_progress_line, r.out.splitlines()) if e is not None]
    assert len(events) == len(r.out.splitlines())  # nothing but JSON lines on stdout
    assert events[0]["event"] == "started" and events[0]["task"] == "spine" and events[0]["model"] == "tiny"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert len(fractions) > 5 and fractions == sorted(fractions) and len(set(fractions)) == len(fractions)
    assert fractions[-1] == 1.0
    assert {e["stage"] for e in events if e["event"] == "progress"} >= {"load", "preprocess", "sliding window",
                                                                         "postprocess"}
    finished = events[-1]
    assert finished["event"] == "finished"
    assert finished["outputs"]["labels"] == str(out) and Path(finished["outputs"]["report"]).is_file()
    assert set(finished["timings"]) >= {"load", "preprocess", "sliding window", "postprocess", "write", "total"}
    labels = sitk.ReadImage(str(out))
    assert labels.GetSize() == (36, 40, 20)
    assert set(np.unique(sitk.GetArrayFromImage(labels))) <= {0, 1, 2}
    report = json.loads((tmp_path / "out" / "r.json").read_text())
    assert report["model"]["sha256"] == sha256_file(bundle)
    assert set(report["volumes_ml"]) == {"vertebra", "intervertebral disc"}


def test_parse_progress_line_ignores_other_text():
    assert parse_progress_line("loading model...") is None
    assert parse_progress_line('{"fraction": 0.3}') is None
    assert parse_progress_line('{"event": "progress", "fraction": 1.7}') is None
    assert parse_progress_line('{"event": "progress", "fraction": 0.25, "stage": "load"}\n')["stage"] == "load"
    assert parse_progress_line('{"event": "error", "message": "x"}')["message"] == "x"


def test_tta_overlap_preview_and_bar(cli, case, bundle, tmp_path):
    out = tmp_path / "o.nrrd"
    r = cli(*_segment_args(case, out, bundle, "--tta", "--overlap", "0.5", "--sw-batch-size", "2",
                           "--progress", "bar", "--report", tmp_path / "r.json", "--preview", tmp_path / "p.png"))
    assert r.code == 0, r.err
    assert r.out == "" and "100%" in r.err and f"wrote {out}" in r.err  # the bar goes to stderr
    report = json.loads((tmp_path / "r.json").read_text())
    settings = report["settings"]
    assert settings["tta"] is True and settings["overlap"] == 0.5 and settings["sw_batch_size"] == 2
    assert report["outputs"] == {"labels": str(out), "preview": str(tmp_path / "p.png"),
                                 "report": str(tmp_path / "r.json")}
    from PIL import Image

    with Image.open(tmp_path / "p.png") as png:
        assert png.format == "PNG" and png.width > png.height


def _assert_user_error(r, pattern: str, out_dir: Path) -> None:
    assert r.code == 2, (r.code, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert re.search(pattern, lines[0]), lines[0]
    assert _files(out_dir) == []  # no output, not even a partial one


@pytest.mark.parametrize("kind, pattern", [
    ("wrong_role", r"unknown input role 'pet' for task spine \(roles: ct, mr\)"),
    ("missing_role", r"task spine needs input mr"),
    ("bad_item", r"--input expects ROLE=PATH"),
    ("two_d", r"mr2d\.nii\.gz: image is 2D"),
    ("nan", r"mrnan\.nrrd: image holds 3 NaN"),
    ("no_overlap", r"mrfar\.nii\.gz: does not overlap the reference input 'ct'.*register it first"),
    ("missing_file", r"nothere\.nii\.gz: file not found"),
])
def test_bad_inputs(cli, case, bundle, tmp_path, kind, pattern):
    inputs = [f"ct={case['ct']}", f"mr={case['mr']}"]
    if kind == "wrong_role":
        inputs[1] = f"pet={case['mr']}"
    elif kind == "missing_role":
        inputs = inputs[:1]
    elif kind == "bad_item":
        inputs[1] = str(case["mr"])
    elif kind == "two_d":
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((24, 24), np.float32)), str(tmp_path / "mr2d.nii.gz"))
        inputs[1] = f"mr={tmp_path / 'mr2d.nii.gz'}"
    elif kind == "nan":
        arr = np.ones((20, 24, 24), np.float32)
        arr[1, 2, 3:6] = np.nan
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "mrnan.nrrd"))
        inputs[1] = f"mr={tmp_path / 'mrnan.nrrd'}"
    elif kind == "no_overlap":
        far = sitk.ReadImage(str(case["mr"]))
        far.SetOrigin((0.0, 400.0, 0.0))
        sitk.WriteImage(far, str(tmp_path / "mrfar.nii.gz"))
        inputs[1] = f"mr={tmp_path / 'mrfar.nii.gz'}"
    elif kind == "missing_file":
        inputs[1] = f"mr={tmp_path / 'nothere.nii.gz'}"
    out_dir = tmp_path / "out"
    args = ["segment", "--task", "spine", "-o", out_dir / "seg.nii.gz", "--model", bundle, "--device", "cpu",
            "--progress", "none"]
    for item in inputs:
        args += ["--input", item]
    _assert_user_error(cli(*args), pattern, out_dir)


def test_json_progress_reports_the_error_event(cli, case, tmp_path, bundle):
    r = cli(*_segment_args(case, tmp_path / "out" / "s.nii.gz", bundle, "--progress", "json", "--overlap", "1.5"))
    assert r.code == 2
    events = [parse_progress_line(x) for x in r.out.splitlines()]
    assert events[-1]["event"] == "error" and "overlap must be in [0, 1)" in events[-1]["message"]


@pytest.mark.parametrize("kind, pattern", [
    ("unknown_id", r"unknown model 'no-such-model'"),
    ("tampered", r"tiny\.pt: model bundle sha256 mismatch .*damaged, truncated or was changed"),
    ("truncated", r"tiny\.pt: model bundle sha256 mismatch"),
    ("truncated_resigned", r"tiny\.pt: model bundle cannot be read"),
    ("other_task", r"brats\.pt: model bundle is for task 'brain-tumor', not 'spine'"),
    ("no_sidecar", r"tiny\.pt: model bundle has no sha256"),
    ("no_model", r"no model for task spine in the catalogs .*python -m training fit"),
])
def test_bad_models(cli, case, bundle, tmp_path, kind, pattern, monkeypatch):
    from multimodalseg import catalog

    monkeypatch.setattr(catalog, "shipped_catalog", lambda: tmp_path / "no-shipped-catalog.json")
    model = str(bundle)
    data = bundle.read_bytes()
    if kind == "unknown_id":
        model = "no-such-model"
    elif kind == "tampered":
        bundle.write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    elif kind in ("truncated", "truncated_resigned"):
        bundle.write_bytes(data[: len(data) // 2])
        if kind == "truncated_resigned":  # a sidecar that matches the damaged file: the load itself must refuse
            bundle.with_name("tiny.pt.sha256").write_text(f"{sha256_file(bundle)}  tiny.pt\n")
    elif kind == "other_task":
        model = str(make_bundle(tmp_path / "models", task="brain-tumor", name="brats"))
    elif kind == "no_sidecar":
        bundle.with_name("tiny.pt.sha256").unlink()
    args = ["segment", "--task", "spine", "--input", f"ct={case['ct']}", "--input", f"mr={case['mr']}",
            "-o", tmp_path / "out" / "seg.nii.gz", "--device", "cpu", "--progress", "none"]
    if kind != "no_model":
        args += ["--model", model]
    _assert_user_error(cli(*args), pattern, tmp_path / "out")


@pytest.mark.parametrize("kind, pattern", [
    ("parent_is_file", r"seg\.nii\.gz: cannot write output"),
    ("bad_suffix", r"seg\.txt: unsupported output format"),
    ("overwrite_input", r"ct\.nii\.gz: output would overwrite an input file"),
    ("preview_suffix", r"p\.jpg: expected a \.png file name"),
    ("no_cuda", r"CUDA is not available here"),
    ("convention", r"unknown label convention 'brats2023' for task spine"),
])
def test_bad_outputs_and_options(cli, case, bundle, tmp_path, kind, pattern):
    out_dir = tmp_path / "out"
    out = out_dir / "seg.nii.gz"
    extra = []
    if kind == "parent_is_file":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file, not a folder")
        out, out_dir = blocker / "seg.nii.gz", tmp_path / "nothing"
    elif kind == "bad_suffix":
        out = out_dir / "seg.txt"
    elif kind == "overwrite_input":
        out, out_dir = case["ct"], tmp_path / "nothing"
    elif kind == "preview_suffix":
        extra = ["--preview", out_dir / "p.jpg"]
    elif kind == "no_cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        extra = ["--device", "cuda"]
    elif kind == "convention":
        extra = ["--convention", "brats2023"]
    before = case["ct"].read_bytes()
    _assert_user_error(cli(*_segment_args(case, out, bundle, "--progress", "none", *extra)), pattern, out_dir)
    assert case["ct"].read_bytes() == before


def test_batch_skips_a_malformed_case_and_resumes(cli, bundle, tmp_path):
    root = tmp_path / "cases"
    for name in ("case01", "case02", "case03"):
        write_case(root / name, prefix=f"{name}_")
    (root / "case02" / "case02_mr.nii.gz").unlink()  # malformed: an input is missing
    out = tmp_path / "seg"
    args = ("segment", "--task", "spine", "--input-dir", root, "--output-dir", out, "--model", bundle,
            "--device", "cpu", "--progress", "json", "--no-fusion")
    r = cli(*args)
    assert r.code == 2
    assert "case case02 failed: " in r.err and "no file for input 'mr'" in r.err
    assert r.err.strip().splitlines()[-1].endswith("1 of 3 cases failed (case02); 2 segmented, 0 already done")
    assert _files(out) == ["case01.json", "case01.nii.gz", "case03.json", "case03.nii.gz"]
    events = [parse_progress_line(x) for x in r.out.splitlines()]
    assert [e["case"] for e in events if e["event"] == "finished"] == ["case01", "case03"]
    summary = events[-2]
    assert summary["event"] == "summary" and summary["done"] == ["case01", "case03"] and summary["skipped"] == []
    assert list(summary["failed"]) == ["case02"] and "no file for input 'mr'" in summary["failed"]["case02"]
    assert events[-1]["event"] == "error" and "1 of 3 cases failed" in events[-1]["message"]
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # Resumable: the done cases are skipped; the repaired case is segmented.
    shutil.copy(root / "case01" / "case01_mr.nii.gz", root / "case02" / "case02_mr.nii.gz")
    stamp = (out / "case01.nii.gz").stat().st_mtime_ns
    r = cli(*args)
    assert r.code == 0, r.err
    events = [parse_progress_line(x) for x in r.out.splitlines()]
    assert events[-1]["done"] == ["case02"] and events[-1]["skipped"] == ["case01", "case03"]
    assert (out / "case01.nii.gz").stat().st_mtime_ns == stamp
    assert (out / "case02.nii.gz").is_file()


def test_batch_folder_errors(cli, bundle, tmp_path):
    r = cli("segment", "--task", "spine", "--input-dir", tmp_path / "none", "--output-dir", tmp_path / "o",
            "--model", bundle, "--progress", "none")
    assert r.code == 2 and "input folder not found" in r.err
    (tmp_path / "empty").mkdir()
    r = cli("segment", "--task", "spine", "--input-dir", tmp_path / "empty", "--output-dir", tmp_path / "o",
            "--model", bundle, "--progress", "none")
    assert r.code == 2 and "no spine cases found" in r.err
    r = cli("segment", "--task", "spine", "--input-dir", tmp_path / "empty", "-o", tmp_path / "x.nii.gz",
            "--progress", "none")
    assert r.code == 2 and "batch mode" in r.err
