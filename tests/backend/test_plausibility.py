"""Plausibility (issue 18): one file for several roles, an intensity image as labels, task-free SUV statistics."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.cli.suv_stats_cmd import read_names
from multimodalseg.errors import UserError


def _labels(path, values=(1, 2), shape=(10, 12, 14)):
    arr = np.zeros(shape, np.uint16)
    for k, v in enumerate(values):
        arr[2 + 3 * k: 4 + 3 * k, 3:9, 3:10] = v
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    return path


def _pet(path, shape=(10, 12, 14)):
    arr = np.full(shape, 1.0, np.float32)
    arr[5:7] = 4.0
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    return path


def test_suv_stats_task_free_with_a_names_table(cli, tmp_path):
    labels = _labels(tmp_path / "atlas.nii.gz", values=(17, 1001))
    pet = _pet(tmp_path / "suv.nii.gz")
    names = tmp_path / "lut.txt"  # FreeSurferColorLUT style: value name R G B A
    names.write_text("# my atlas\n17  Left-Hippocampus  220 216 20 0\n")
    r = cli("suv-stats", "--pet", pet, "--labels", labels, "--names", names, "--already-suv",
            "-o", tmp_path / "s.csv")
    assert r.code == 0, r.err
    rows = {row["value"]: row for row in csv.DictReader((tmp_path / "s.csv").open())}
    assert set(rows) == {"17", "1001"}
    assert rows["17"]["name"] == "Left-Hippocampus" and rows["1001"]["name"] == "label 1001"
    assert float(rows["17"]["suv_mean"]) == pytest.approx(1.0) and float(rows["1001"]["suv_mean"]) == pytest.approx(4)


def test_suv_stats_task_none_names_values_by_number(cli, tmp_path):
    r = cli("suv-stats", "--pet", _pet(tmp_path / "suv.nii.gz"), "--labels", _labels(tmp_path / "a.nii.gz"),
            "--task", "none", "--already-suv", "-o", tmp_path / "s.csv", "--json", tmp_path / "s.json")
    assert r.code == 0, r.err
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [row["name"] for row in rows] == ["label 1", "label 2"]
    import json

    assert json.loads((tmp_path / "s.json").read_text())["task"] is None


def test_suv_stats_other_atlas_points_to_the_task_free_mode(cli, tmp_path):
    r = cli("suv-stats", "--pet", _pet(tmp_path / "suv.nii.gz"), "--labels", _labels(tmp_path / "a.nii.gz",
                                                                                    values=(5000,)),
            "--already-suv", "-o", tmp_path / "s.csv")
    assert r.code == 2 and "for another atlas use --task none (and --names TABLE)" in r.err
    assert not (tmp_path / "s.csv").exists()


def test_suv_stats_same_file_for_pet_and_labels_warns(cli, tmp_path):
    labels = _labels(tmp_path / "a.nii.gz")
    r = cli("suv-stats", "--pet", labels, "--labels", labels, "--task", "none", "--already-suv",
            "-o", tmp_path / "s.csv")
    assert r.code == 0, r.err
    assert r.err.strip() == f"warning: {labels.resolve()}: the same file is given for --pet and --labels"


@pytest.mark.parametrize("text, problem", [
    ("value,name\n1,a\n1,b\n", "line 3: value 1 is named twice"),
    ("1,a\nbone,2\n", "line 2: expected 'value,name'"),
    ("# nothing\n", "names table names no values"),
])
def test_names_table_errors(tmp_path, text, problem):
    path = tmp_path / "n.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=problem):
        read_names(path)


def test_names_table_formats(tmp_path):
    path = tmp_path / "n.tsv"
    path.write_text("value\tname\n4\tLeft-Lateral-Ventricle\n\n43\tRight-Lateral-Ventricle  # comment\n")
    assert read_names(path) == {4: "Left-Lateral-Ventricle", 43: "Right-Lateral-Ventricle"}


def test_evaluate_intensity_image_refused_unless_asked(cli, tmp_path):
    rng = np.random.default_rng(0)
    image = np.round(rng.normal(400, 120, (6, 8, 9))).clip(0).astype(np.uint16)  # ~300 distinct values
    count = len(np.unique(image[image > 0]))
    sitk.WriteImage(sitk.GetImageFromArray(image), str(tmp_path / "t1.nii.gz"))
    labels = _labels(tmp_path / "pred.nii.gz", shape=(6, 8, 9), values=(1,))
    r = cli("evaluate", "--pred", labels, "--ref", tmp_path / "t1.nii.gz")
    assert r.code == 2 and f"holds {count} distinct label values: an intensity image" in r.err
    r = cli("evaluate", "--pred", labels, "--ref", tmp_path / "t1.nii.gz", "--max-labels", count, "--json")
    assert r.code == 0, r.err


def test_evaluate_same_file_twice_warns_after_the_metrics(cli, tmp_path):
    labels = _labels(tmp_path / "l.nii.gz")
    r = cli("evaluate", "--pred", labels, "--ref", labels)
    assert r.code == 0 and "mean over labels" in r.out
    assert r.err.strip() == f"warning: {labels.resolve()}: the same file is given for --pred and --ref"
