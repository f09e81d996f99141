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


# The 45 non-zero values of a recon-all aseg.mgz (METHODS §A, corrected; issue 16).
ASEG_MGZ = [2, 3, 4, 5, 7, 8, *range(10, 19), 24, 26, 28, 30, 31, 41, 42, 43, 44, 46, 47, *range(49, 55), 58, 60, 62,
            63, 72, 77, 80, 85, *range(251, 256)]


def test_aseg_table_is_the_45_labels_of_aseg_mgz():
    values = [v for v, _, _ in ASEG_STRUCTURES]
    assert values == ASEG_MGZ and len(values) == 45
    assert not {78, 79, 81, 82} & set(values)  # aseg.stats rows that recon-all never writes into aseg.mgz
    brain = get_task("petmr-brain")
    assert [lab.value for lab in brain.labels] == ASEG_MGZ
    assert brain.value_to_index()[2] == 1 and brain.value_to_index()[3] == 2  # cortex and WM are classes, not 0
    assert brain.value_to_index()[17] == 14  # Left-Hippocampus
    assert brain.index_to_value()[45] == 255
    assert not brain.label_aliases


def test_tasks_json_lists_exactly_the_aseg_mgz_labels(cli):
    result = cli("tasks", "petmr-brain", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    task = data["tasks"][0] if "tasks" in data else data
    assert [lab["value"] for lab in task["labels"]] == ASEG_MGZ
    names = {lab["value"]: lab["name"] for lab in task["labels"]}
    assert names[2] == "Left-Cerebral-White-Matter" and names[42] == "Right-Cerebral-Cortex"


def test_cortex_and_white_matter_colours_and_codes():
    brain = get_task("petmr-brain")
    # FreeSurferColorLUT colours; SNOMED CT codes of Slicer's DICOM master list (DICOM CID 7153)
    assert brain.label("Left-Cerebral-Cortex").color == brain.label("Right-Cerebral-Cortex").color == (205, 62, 78)
    assert brain.label("Left-Cerebral-White-Matter").color == (245, 245, 245)
    assert brain.label("Right-Cerebral-White-Matter").color == (0, 225, 0)
    cortex = brain.label("Right-Cerebral-Cortex").terminology
    assert (cortex.type.value, cortex.modifier.meaning) == ("40146001", "Right")
    assert brain.label("Left-Cerebral-White-Matter").terminology.type.value == "68523003"
    assert "SCT^40146001^Cerebral cortex~SCT^24028007^Right" in brain.label("Right-Cerebral-Cortex").terminology \
        .slicer_string()


def test_aseg_stats_only_values_are_refused_naming_the_value():
    with pytest.raises(UserError, match=r"aseg.mgz: label values 78 are not in the petmr-brain label table") as err:
        get_task("petmr-brain").check_label_values([0, 2, 3, 41, 42, 78], "aseg.mgz")
    assert "\n" not in str(err.value)


def test_lateral_pairs_from_names():
    brain = get_task("petmr-brain")
    pairs = brain.lateral_pairs()
    assert len(pairs.indices) == 16  # 32 of the 45 structures are lateral
    assert ("Left-Cerebral-Cortex", "Right-Cerebral-Cortex") in pairs.names
    assert (17, 53) in pairs.values and (2, 41) in pairs.values
    assert all(brain.label(a).index == i and brain.label(b).index == j for (a, b), (i, j) in zip(pairs.names,
                                                                                               pairs.indices))
    perm = pairs.permutation(brain.num_classes)
    assert perm[0] == 0 and sorted(perm) == list(range(46)) and [perm[p] for p in perm] == list(range(46))
    left, right = brain.label("Left-Hippocampus").index, brain.label("Right-Hippocampus").index
    assert perm[left] == right and perm[right] == left
    assert perm[brain.label("Brain-Stem").index] == brain.label("Brain-Stem").index
    two = pairs.permutation(2 * brain.num_classes, members=2)
    assert two[46 + left] == 46 + right and two[:46] == perm
    assert pairs.value_map()[53] == 17 and 16 not in pairs.value_map()
    assert not get_task("whole-heart").lateral_pairs()  # left/right atria and ventricles are no mirror pair
    assert not get_task("brain-tumor").lateral_pairs() and not get_task("spine").lateral_pairs()


def test_explicit_mirror_pairs_and_json():
    from dataclasses import replace

    heart = get_task("whole-heart")
    odd = replace(heart, mirror_pairs=(("LA", "RA"),))
    assert odd.lateral_pairs().indices == ((heart.label("LA").index, heart.label("RA").index),)
    with pytest.raises(ValueError, match="unknown label"):
        replace(heart, mirror_pairs=(("LA", "nope"),)).lateral_pairs()
    assert get_task("petmr-brain").to_dict()["lateral_pairs"][0] == [2, 41]


@pytest.mark.parametrize("direction, axis", [
    ((1, 0, 0, 0, 1, 0, 0, 0, 1), 2),  # axial LPS: index x (array axis 2) is left-right
    ((-1, 0, 0, 0, -1, 0, 0, 0, 1), 2),  # RAS-stored: still array axis 2
    ((0, 0, 1, 1, 0, 0, 0, 1, 0), 0),  # sagittal slices: index z (array axis 0) runs left-right
    ((0, 1, 0, 0, 0, 1, 1, 0, 0), 1),
])
def test_lateral_axis_follows_the_direction_matrix(direction, axis):
    from multimodalseg.tasks import lateral_axis

    assert lateral_axis(direction) == axis


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
