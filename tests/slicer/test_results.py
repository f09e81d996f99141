"""Segment list, result tables and extra volumes as plain data, from the task specs and backend reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from multimodalseg.errors import UserError
from multimodalseg.tasks import all_tasks, get_task
from MultimodalSegLib import Results


@pytest.mark.parametrize("task_id, count", [("petmr-brain", 45), ("brain-tumor", 3), ("whole-heart", 7), ("spine", 2)])
def test_segment_specs_follow_the_task(task_id, count):
    task = get_task(task_id)
    specs = Results.segmentSpecs(task)
    assert len(specs) == count == len(task.labels)
    assert [s.name for s in specs] == [lab.name for lab in task.labels]
    assert [s.value for s in specs] == [lab.value for lab in task.labels]
    assert len({s.segmentId for s in specs}) == count  # ids unique
    for spec, label in zip(specs, task.labels):
        assert all(0.0 <= c <= 1.0 for c in spec.color)
        assert [round(c * 255) for c in spec.color] == list(label.color)
        parts = spec.terminology.split("~")
        assert len(parts) == 7 and parts[2] == f"SCT^{label.terminology.type.value}^{label.terminology.type.meaning}"


def test_segment_ids_and_terminology_examples():
    tumor = {s.name: s for s in Results.segmentSpecs(get_task("brain-tumor"))}
    assert tumor["NCR/NET"].segmentId == "NCR_NET" and tumor["ET"].value == 4
    assert "SCT^108369006^Neoplasm" in tumor["ET"].terminology
    brain = {s.name: s for s in Results.segmentSpecs(get_task("petmr-brain"))}
    assert brain["Left-Hippocampus"].terminology.split("~")[3] == "SCT^7771000^Left"  # laterality modifier
    assert brain["Left-Hippocampus"].value == 17


def test_node_name():
    assert Results.segmentationNodeName(get_task("whole-heart"), "ct_1001") == "ct_1001 - Whole Heart"


def test_segment_values_match_names_loosely():
    values, unknown = Results.segmentValues(get_task("whole-heart"), ["LV", " rv ", "Myo", "Segment_1"])
    assert values == {"LV": 500, " rv ": 600, "Myo": 205} and unknown == ["Segment_1"]


def predictor_report(tmp_path):
    """A report shaped like ``multimodalseg segment --report`` writes it, with workflow extras."""
    return {
        "task": "petmr-brain",
        "inputs": {"pet": {"path": "pet.nrrd", "size": [8, 8, 8], "spacing": [2, 2, 2]}},
        "reference": "t1",
        "model": {"id": "petmr-demo", "version": "0.1.0", "sha256": "ab" * 32, "demo": True},
        "device": "cpu", "precision": "fp32",
        "settings": {"tta": False, "overlap": 0.25, "roi_zyx": [96, 96, 96], "crop_zyx": None},
        "timings": {"load": 0.1, "total": 4.2},
        "volumes_ml": {"Left-Thalamus": 7.25, "Right-Thalamus": 7.5},
        "regions_ml": {},
        "suv": {"parameters": {"weight_kg": 70.0, "dose_bq": 3.7e8},
                "structures": [{"value": 10, "name": "Left-Thalamus", "volume_ml": 7.25, "suv_mean": 8.1,
                                "suv_max": 12.0, "suv_peak": None},
                               {"value": 49, "name": "Right-Thalamus", "volume_ml": 7.5, "suv_mean": 7.9,
                                "suv_max": 11.5, "suv_peak": 10.2}]},
        "outputs": {"labels": str(tmp_path / "labels.nrrd"), "report": str(tmp_path / "report.json")},
    }


def test_tables_from_a_report(tmp_path):
    tables = {t.key: t for t in Results.tablesFromReport(predictor_report(tmp_path))}
    # the run's description (model, settings, timings, outputs) and empty entries give no table
    assert set(tables) == {"volumes_ml", "suv_parameters", "suv_structures"}
    assert tables["suv_parameters"].title == "SUV parameters"
    vol = tables["volumes_ml"]
    assert vol.title == "Volumes (mL)" and vol.columns == ["name", "volumes_ml"]
    assert vol.rows == [["Left-Thalamus", 7.25], ["Right-Thalamus", 7.5]] and vol.columnIsNumeric(1)
    suv = tables["suv_structures"]
    assert suv.title == "SUV statistics"
    assert suv.columns == ["value", "name", "volume_ml", "suv_mean", "suv_max", "suv_peak"]
    assert suv.rows[0] == [10, "Left-Thalamus", 7.25, 8.1, 12.0, None]
    assert suv.columnIsNumeric(5) and not suv.columnIsNumeric(1)  # None cells do not make a column text


def test_table_shapes():
    regions = Results.tableFromEntry("regions_ml", {"WT": 41.2, "TC": 12.9, "ET": 5})
    assert regions.title == "Region volumes (mL)" and regions.rows == [["WT", 41.2], ["TC", 12.9], ["ET", 5]]
    chambers = Results.tableFromEntry("chamber_volumes_ml", {"LV": {"volume_ml": 120.0, "mass_g": None},
                                                             "Myo": {"volume_ml": 100.0, "mass_g": 105.0}})
    assert chambers.columns == ["name", "volume_ml", "mass_g"]
    assert chambers.rows == [["LV", 120.0, None], ["Myo", 100.0, 105.0]]
    mixed = Results.tableFromEntry("cases", [{"a": 1, "flag": True}, {"b": [1, 2]}])
    assert mixed.columns == ["a", "flag", "b"] and mixed.rows == [[1, 1, None], [None, None, "[1, 2]"]]
    for not_tabular in ([], {}, "text", 3.0, [1, 2], {"a": 1, "b": "x"}):
        assert Results.tableFromEntry("k", not_tabular) is None


def test_read_report(tmp_path):
    assert Results.readReport(tmp_path / "missing.json") == {}
    good = tmp_path / "r.json"
    good.write_text(json.dumps({"volumes_ml": {"LV": 1.0}}))
    assert Results.readReport(good) == {"volumes_ml": {"LV": 1.0}}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="bad.json: backend report cannot be read"):
        Results.readReport(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(UserError, match="not a JSON object"):
        Results.readReport(bad)


def test_extra_volumes(tmp_path):
    for name in ("labels.nrrd", "fused.nii.gz", "disagreement.nrrd", "preview.png", "report.json"):
        (tmp_path / name).write_bytes(b"x")
    report = {"outputs": {"labels": str(tmp_path / "labels.nrrd"), "report": str(tmp_path / "report.json"),
                          "preview": str(tmp_path / "preview.png"), "missing": str(tmp_path / "gone.nrrd")}}
    finished = {"outputs": {"fused": str(tmp_path / "fused.nii.gz"),
                            "disagreement": str(tmp_path / "disagreement.nrrd")}}
    extras = {e.key: e for e in Results.extraVolumes(report, finished, tmp_path / "labels.nrrd")}
    assert set(extras) == {"fused", "disagreement"}
    assert not extras["fused"].isLabel and extras["disagreement"].isLabel
    assert extras["fused"].title == "Fused"


def test_every_task_label_table_is_importable():
    # Values must be distinct and fit the uint16 label maps the backend writes.
    for task in all_tasks():
        values = [s.value for s in Results.segmentSpecs(task)]
        assert len(set(values)) == len(values) and min(values) > 0 and max(values) < 2**16
        assert not any(math.isnan(c) for s in Results.segmentSpecs(task) for c in s.color)
        assert np.asarray([s.color for s in Results.segmentSpecs(task)]).shape == (len(values), 3)
