"""Panel settings <-> parameter node strings, input auto-assignment, selector labels and module texts."""

from __future__ import annotations

import pytest
from multimodalseg.tasks import all_tasks, get_task
from MultimodalSegLib import ModuleText, SampleFiles
from MultimodalSegLib.Settings import PanelSettings, autoAssign, matchScore, roleLabel, roleToolTip


def test_settings_round_trip():
    settings = PanelSettings(model="tumor-demo", device="gpu", gpuIndex=2, tta=True, quick=False, modality="mr",
                             trainingFolder="/data/train")
    stored = settings.toParameters()
    assert all(isinstance(v, str) for v in stored.values())
    assert stored["tta"] == "true" and stored["gpuIndex"] == "2"
    assert PanelSettings.fromParameters(stored) == settings


def test_settings_from_missing_or_bad_values_fall_back_to_defaults():
    assert PanelSettings.fromParameters({}) == PanelSettings()
    bad = PanelSettings.fromParameters({"device": "tpu", "gpuIndex": "two", "tta": "yes", "quick": "0"})
    assert (bad.device, bad.gpuIndex, bad.tta, bad.quick) == ("auto", 0, True, False)
    assert PanelSettings.fromParameters({"gpuIndex": "-3"}).gpuIndex == 0


def test_longest_pattern_wins_so_t1ce_is_not_taken_for_t1():
    task = get_task("brain-tumor")
    volumes = [("v1", "BraTS20_Training_001_t1ce"), ("v2", "BraTS20_Training_001_t1"),
               ("v3", "BraTS20_Training_001_flair"), ("v4", "BraTS20_Training_001_t2"), ("v5", "unrelated")]
    assert autoAssign(task, volumes) == {"flair": "v3", "t1": "v2", "t1ce": "v1", "t2": "v4"}
    assert matchScore(("t1ce", "t1c"), "case_T1CE") == 4 and matchScore(("t1",), "flair") == 0


def test_auto_assignment_keeps_choices_and_uses_each_volume_once():
    task = get_task("spine")
    volumes = [("a", "patient CT"), ("b", "patient MR T2"), ("c", "CT bone window")]
    assert autoAssign(task, volumes, {"ct": "c"}) == {"ct": "c", "mr": "b"}
    assert autoAssign(task, [("x", "ct mr")]) in ({"ct": "x", "mr": None}, {"ct": None, "mr": "x"})
    assert autoAssign(task, []) == {"ct": None, "mr": None}


@pytest.mark.parametrize("task", all_tasks(), ids=lambda t: t.id)
def test_phantom_node_names_are_auto_assigned_to_their_roles(task):
    """Sample data names its nodes so that the panel picks each for its own role, in any scene order."""
    modality = task.modalities[0] if task.modalities else None
    volumes = [(role, SampleFiles.nodeName(task, role, modality)) for role in task.roles]
    for ordering in (volumes, volumes[::-1]):
        assert autoAssign(task, ordering) == {role: role for role in task.roles}


def test_role_labels_mark_the_reference():
    task = get_task("petmr-brain")
    assert roleLabel(task, "t1") == "T1 MR (reference):" and roleLabel(task, "pet") == "PET:"
    assert "reference geometry" in roleToolTip(task, "t1")
    assert "Resampled onto the T1 MR grid" in roleToolTip(task, "pet")
    assert "CT or MR" in roleToolTip(get_task("whole-heart"), "image")


@pytest.mark.parametrize("task", all_tasks(), ids=lambda t: t.id)
def test_help_text_describes_the_task(task):
    text = ModuleText.helpText(task.id)
    assert task.description in text and f"{len(task.labels)} segments" in text
    assert f"{task.input(task.reference_role).title} (reference grid)" in text
    assert f"Sample Data &gt; {task.title} synthetic case" in text  # SampleFiles.sampleName
