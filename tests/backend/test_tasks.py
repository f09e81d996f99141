import json

import pytest
from multimodalseg.errors import UserError
from multimodalseg.tasks import TASKS, get_task
from multimodalseg.tasks.freesurfer import ASEG_STRUCTURES


def test_four_tasks_with_their_label_counts(cli):
    result = cli("tasks", "--json")
    assert result.code == 0
    tasks = {t["id"]: t for t in json.loads(result.out)["tasks"]}
    assert {k: v["num_labels"] for k, v in tasks.items()} == {
        "petmr-brain": 45, "brain-tumor": 3, "whole-heart": 7, "spine": 2}
    assert tasks["brain-tumor"]["reference"] == "t1ce"
    assert tasks["petmr-brain"]["reference"] == "t1"
    assert tasks["spine"]["reference"] == "ct"
    assert [i["role"] for i in tasks["brain-tumor"]["inputs"]] == ["flair", "t1", "t1ce", "t2"]


def test_aseg_table_is_freesurfers_45():
    values = [v for v, _, _ in ASEG_STRUCTURES]
    assert len(values) == 45 == len(set(values))
    assert values[:4] == [4, 5, 7, 8] and values[-5:] == [251, 252, 253, 254, 255]
    brain = get_task("petmr-brain")
    assert brain.value_to_index()[17] == 12  # Left-Hippocampus is the 12th structure
    assert brain.index_to_value()[45] == 255


def test_every_label_has_a_terminology_string_slicer_can_parse():
    for task in TASKS.values():
        for lab in task.labels:
            parts = lab.terminology.slicer_string().split("~")
            assert len(parts) == 7, lab.name
            # the DICOM master list holds every type (the General Anatomy list lacks e.g. hippocampus, vertebra)
            assert parts[0] == "Segmentation category and type - DICOM master list"
            assert parts[1].startswith("SCT^") and parts[2].startswith("SCT^")
            assert all(0 <= c <= 255 for c in lab.color)


def test_tumor_label_conventions_round_trip():
    tumor = get_task("brain-tumor")
    for convention, et in (("brats2021", 4), ("brats2023", 3), ("msd", 3)):
        to_index = tumor.value_to_index(convention)
        back = tumor.index_to_value(convention)
        assert to_index[et] == tumor.label("ET").index
        assert all(back[to_index[v]] == v for v in to_index)
    assert tumor.value_to_index("msd")[1] == tumor.label("ED").index


def test_heart_reads_421_as_la():
    heart = get_task("whole-heart")
    assert heart.value_to_index()[421] == heart.value_to_index()[420] == 3


def test_label_values_outside_the_table_are_refused():
    with pytest.raises(UserError, match=r"seg.nii.gz: label values 3 are not in the brain-tumor"):
        get_task("brain-tumor").check_label_values([0, 1, 3], "seg.nii.gz")


def test_unknown_task_is_a_user_error(cli):
    result = cli("tasks", "liver")
    assert result.code == 2
    assert "unknown task 'liver'" in result.err
    with pytest.raises(UserError):
        get_task("liver")


def test_unknown_role_names_the_roles():
    with pytest.raises(UserError, match="roles: flair, t1, t1ce, t2"):
        get_task("brain-tumor").input("dwi")


def test_tasks_io_and_registration_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, multimodalseg.tasks, multimodalseg.io\n"
            "assert 'torch' not in sys.modules and 'monai' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
