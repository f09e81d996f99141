"""Task terminology against Slicer's DICOM master list (issue 17, defect 10).

``MASTER_LIST`` holds facts read from Slicer's
Modules/Loadable/Terminologies/Resources/SegmentationCategoryTypeModifier-DICOM-Master.json (Slicer/Slicer
1cc340fa): (category code, type code) -> (type meaning as the list writes it, laterality modifiers the list offers
for that type). Only the entries our tasks use, or nearly use, are copied; the list itself is not committed.
Structures the list lacks (checked against the whole list) are in ``ABSENT`` and must be marked
``in_slicer_master_list=False`` in the task specs.
"""

from __future__ import annotations

import pytest
from multimodalseg.tasks import all_tasks, get_task

ANATOMY, ALTERED = "123037004", "49755003"  # "Anatomical Structure", "Morphologically Altered Structure"
LR = frozenset({"24028007", "7771000"})  # Right, Left (the list also offers 51440002 "Right and left")
UNPAIRED: frozenset[str] = frozenset()

MASTER_LIST: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    # CNS segmentation types (DICOM CID 7153) and neighbours
    (ANATOMY, "68523003"): ("Cerebral White Matter", LR),
    (ANATOMY, "40146001"): ("Cerebral cortex", LR),
    (ANATOMY, "66720007"): ("Lateral ventricle", LR),
    (ANATOMY, "33060004"): ("Cerebellar white matter", UNPAIRED),
    (ANATOMY, "113305005"): ("Cerebellum", UNPAIRED),
    (ANATOMY, "42695009"): ("Thalamus", LR),
    (ANATOMY, "11000004"): ("Caudate nucleus", LR),
    (ANATOMY, "89278009"): ("Putamen", LR),
    (ANATOMY, "14738005"): ("Globus pallidus", LR),
    (ANATOMY, "49841001"): ("Third ventricle", UNPAIRED),
    (ANATOMY, "35918002"): ("Fourth ventricle", UNPAIRED),
    (ANATOMY, "35764002"): ("Brain ventricle", LR),
    (ANATOMY, "119238007"): ("Brain stem", UNPAIRED),
    (ANATOMY, "5366008"): ("Hippocampus", LR),
    (ANATOMY, "4958002"): ("Amygdala", LR),
    (ANATOMY, "65216001"): ("Cerebrospinal Fluid", LR),
    (ANATOMY, "427667007"): ("Nucleus accumbens", LR),
    (ANATOMY, "87563008"): ("Diencephalon", UNPAIRED),
    (ANATOMY, "59820001"): ("Blood Vessel", LR),
    (ANATOMY, "389080008"): ("White Matter", UNPAIRED),
    (ANATOMY, "12738006"): ("Brain", UNPAIRED),
    (ANATOMY, "244453006"): ("Optic chiasm", UNPAIRED),
    (ANATOMY, "88442005"): ("Corpus callosum", UNPAIRED),
    # heart (CID 3010 / 7152)
    (ANATOMY, "87878005"): ("Left ventricle", UNPAIRED),
    (ANATOMY, "53085002"): ("Right ventricle", UNPAIRED),
    (ANATOMY, "82471001"): ("Left atrium", UNPAIRED),
    (ANATOMY, "73829009"): ("Right atrium", UNPAIRED),
    (ANATOMY, "54247002"): ("Ascending aorta", UNPAIRED),
    (ANATOMY, "81040000"): ("Pulmonary artery", LR),
    (ANATOMY, "589001"): ("Interventricular septum", UNPAIRED),
    # spine
    (ANATOMY, "51282000"): ("Vertebra", UNPAIRED),
    # lesions (CID 7159)
    (ALTERED, "6574001"): ("Necrosis", UNPAIRED),
    (ALTERED, "79654002"): ("Edema", UNPAIRED),
    (ALTERED, "108369006"): ("Neoplasm", UNPAIRED),
}

# Types our tasks use that the master list does not have under any category (searched by code and by meaning).
ABSENT = {
    "53118009": "Inferior horn of lateral ventricle",
    "25991003": "Cerebellar cortex",
    "80621003": "Choroid plexus",
    "74968005": "Cavum septi pellucidi",
    "49848007": "Left ventricle myocardium",
    "360499006": "Intervertebral disc",
}


def _labels():
    for task in all_tasks():
        for lab in task.labels:
            yield task.id, lab


def _in_master_list(term) -> bool:
    entry = MASTER_LIST.get((term.category.value, term.type.value))
    if entry is None:
        return False
    meaning, modifiers = entry
    return term.type.meaning == meaning and (term.modifier is None or term.modifier.value in modifiers)


def test_every_label_is_in_the_master_list_or_marked_absent():
    for task_id, lab in _labels():
        term = lab.terminology
        assert term.category.scheme == term.type.scheme == "SCT", (task_id, lab.name)
        # the mark must be true both ways: listed entries are in the table, marked ones are not
        assert _in_master_list(term) == term.in_slicer_master_list, (task_id, lab.name, term)
        if not term.in_slicer_master_list and term.type.value in ABSENT:
            assert not any(t == term.type.value for _, t in MASTER_LIST)


@pytest.mark.parametrize(("task_id", "name", "code", "modifier"), [
    ("petmr-brain", "Left-Thalamus", "42695009", "7771000"),  # was 119406000, not in the list
    ("petmr-brain", "Right-Thalamus", "42695009", "24028007"),
    ("petmr-brain", "Left-Hippocampus", "5366008", "7771000"),
    ("petmr-brain", "Brain-Stem", "119238007", None),
    ("petmr-brain", "Left-vessel", "59820001", "7771000"),
    ("whole-heart", "LV", "87878005", None),
    ("spine", "vertebra", "51282000", None),
])
def test_pinned_master_list_codes(task_id, name, code, modifier):
    term = get_task(task_id).label(name).terminology
    assert term.type.value == code and term.in_slicer_master_list
    assert (term.modifier.value if term.modifier else None) == modifier


def test_marked_absent_labels():
    absent = {(t, lab.name) for t, lab in _labels() if not lab.terminology.in_slicer_master_list}
    brain = {n for t, n in absent if t == "petmr-brain"}
    assert {n for t, n in absent if t != "petmr-brain"} == {"Myo", "intervertebral disc"}
    # inferior horn, cerebellar cortex, choroid plexus on both sides, cavum; cerebellar WM and ventral DC lateralized
    assert brain == {f"{s}-{k}" for s in ("Left", "Right") for k in (
        "Inf-Lat-Vent", "Cerebellum-Cortex", "choroid-plexus", "Cerebellum-White-Matter", "VentralDC")} | {
        "5th-Ventricle"}
    assert all(get_task(t).label(n).terminology.type.value in ABSENT
               or get_task(t).label(n).terminology.modifier is not None for t, n in absent)


def test_flag_reaches_the_json():
    d = get_task("spine").to_dict()
    assert [lab["terminology"]["in_slicer_master_list"] for lab in d["labels"]] == [True, False]
