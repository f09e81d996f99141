"""``multimodalseg evaluate``: JSON and table output, tasks, conventions and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

SPACING_XYZ = (0.8, 0.8, 2.5)


def strict_json(text: str) -> dict:
    """Parse JSON refusing NaN and Infinity (undefined metrics must be null)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def tumour(shift: int = 0, et: int = 4) -> np.ndarray:
    arr = np.zeros((12, 20, 20), np.uint8)
    arr[2:10, 4:16, 4:16] = 2
    arr[4:8, 6:14, 6:14] = et
    arr[5:7, 8:12, 8:12] = 1
    return np.roll(arr, shift, axis=2)


@pytest.fixture
def case(volume_file):
    ref = volume_file("ref.nii.gz", tumour(), spacing=SPACING_XYZ, origin=(-10.0, 5.0, 30.0))
    pred = volume_file("pred.nii.gz", tumour(shift=1), spacing=SPACING_XYZ, origin=(-10.0, 5.0, 30.0))
    return pred, ref


def test_file_against_itself_gives_dice_1_and_hd_0(cli, case):
    _, ref = case
    result = cli("evaluate", "--pred", ref, "--ref", ref, "--json")
    assert result.code == 0, result.err
    out = strict_json(result.out)
    assert set(out["labels"]) == {"1", "2", "4"}
    assert out["mean"] == {"dice": 1.0, "jaccard": 1.0, "sensitivity": 1.0, "precision": 1.0,
                           "hd": 0.0, "hd95": 0.0, "assd": 0.0}


def test_json_has_per_label_metrics_regions_and_mean(cli, case):
    pred, ref = case
    result = cli("evaluate", "--pred", pred, "--ref", ref, "--task", "brain-tumor", "--json")
    assert result.code == 0, result.err
    out = strict_json(result.out)
    assert list(out["labels"]) == ["NCR/NET", "ED", "ET"] and list(out["regions"]) == ["WT", "TC", "ET"]
    keys = {"dice", "jaccard", "sensitivity", "precision", "hd", "hd95", "assd"}
    assert set(out["mean"]) == keys
    for metrics in out["labels"].values():
        assert keys | {"volume_pred_ml", "volume_ref_ml", "empty"} == set(metrics)
        assert 0 < metrics["dice"] < 1
        # a one-voxel shift along x: the largest surface distance is one x spacing
        assert metrics["hd"] == pytest.approx(SPACING_XYZ[0], rel=1e-6)
    assert out["regions"]["WT"]["volume_ref_ml"] == pytest.approx(8 * 12 * 12 * np.prod(SPACING_XYZ) / 1000, rel=1e-5)


def test_empty_label_is_null_in_json_and_named_in_the_table(cli, volume_file):
    ref = volume_file("ref.nrrd", tumour(), spacing=SPACING_XYZ)
    no_et = tumour()
    no_et[no_et == 4] = 2
    pred = volume_file("pred.nrrd", no_et, spacing=SPACING_XYZ)
    out = strict_json(cli("evaluate", "--pred", pred, "--ref", ref, "--task", "brain-tumor", "--json").out)
    assert out["labels"]["ET"]["dice"] == 0 and out["labels"]["ET"]["hd95"] is None
    assert out["empty"]["pred"] == ["ET"] and out["mean_count"]["hd95"] == 2 and out["mean_count"]["dice"] == 3
    table = cli("evaluate", "--pred", pred, "--ref", ref, "--task", "brain-tumor")
    assert table.code == 0
    lines = table.out.splitlines()
    assert lines[0].split()[:3] == ["label", "Dice", "Jaccard"]
    assert any(line.startswith("ET") and "(empty prediction)" in line for line in lines)
    assert any(line.startswith("mean over labels") for line in lines) and "regions" in lines


def test_conventions(cli, volume_file):
    ref = volume_file("ref.nii.gz", tumour(et=3))
    pred = volume_file("pred.nii.gz", tumour(shift=1, et=3))
    out = strict_json(cli("evaluate", "--pred", pred, "--ref", ref, "--task", "brain-tumor",
                          "--convention", "brats2023", "--json").out)
    assert out["convention"] == "brats2023" and out["labels"]["ET"]["volume_ref_ml"] > 0
    result = cli("evaluate", "--pred", pred, "--ref", ref, "--task", "brain-tumor")  # default: ET = 4
    assert result.code == 2 and "label values 3 are not in the brain-tumor label table" in result.err


def test_as_a_real_process(cli_process, case):
    pred, ref = case
    result = cli_process("evaluate", "--pred", pred, "--ref", ref)
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].startswith("label")


def _bad(volume_file, tmp_path, kind):
    """(pred, ref, extra args, text the error must hold) for one kind of bad input."""
    good = volume_file("good.nii.gz", tumour())
    if kind == "missing":
        return tmp_path / "nope.nii.gz", good, [], "nope.nii.gz: file not found"
    if kind == "corrupt":
        path = tmp_path / "corrupt.nii.gz"
        path.write_bytes(b"\x1f\x8b not really gzip")
        return path, good, [], "corrupt.nii.gz: cannot read image"
    if kind == "2d":
        return volume_file("flat.nii.gz", tumour()[0]), good, [], "flat.nii.gz: image is 2D"
    if kind == "nan":
        arr = tumour().astype(np.float32)
        arr[1, 1, 1] = np.nan
        # .mha: ITK's NIfTI reader turns NaN into 0 (SimpleITK 2.5), so a NIfTI NaN never reaches the check
        return volume_file("nan.mha", arr), good, [], "nan.mha: image holds 1 NaN"
    if kind == "grid":
        moved = volume_file("moved.nii.gz", tumour(), origin=(0.0, 0.0, 4.0))
        return moved, good, [], "moved.nii.gz: grid differs from the reference: origin (0, 0, 4) vs (0, 0, 0) mm"
    if kind == "size":
        bigger = volume_file("bigger.nii.gz", np.zeros((12, 20, 22), np.uint8))
        return bigger, good, [], "bigger.nii.gz: grid differs from the reference: size 22x20x12 vs 20x20x12"
    if kind == "task":
        return good, good, ["--task", "liver"], "unknown task 'liver'"
    if kind == "values":
        arr = tumour()
        arr[0, 0, 0] = 9
        return good, volume_file("odd.nii.gz", arr), ["--task", "brain-tumor"], "odd.nii.gz: label values 9 are not"
    if kind == "convention":
        return good, good, ["--task", "whole-heart", "--convention", "msd"], "unknown label convention 'msd'"
    if kind == "convention-no-task":
        return good, good, ["--convention", "msd"], "a label convention needs a task"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "corrupt", "2d", "nan", "grid", "size", "task", "values",
                                  "convention", "convention-no-task"])
def test_bad_input_is_one_line_and_exit_2(cli, volume_file, tmp_path, kind):
    pred, ref, extra, expected = _bad(volume_file, tmp_path, kind)
    result = cli("evaluate", "--pred", pred, "--ref", ref, *extra, "--json")
    assert result.code == 2
    assert result.out == ""
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert result.err.startswith("multimodalseg evaluate: error: ")
    assert expected in result.err
