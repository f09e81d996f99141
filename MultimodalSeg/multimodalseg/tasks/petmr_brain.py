"""PET/MR brain: the 45 labels of FreeSurfer's aseg.mgz from 18F-FDG PET + T1 MR (METHODS §A)."""

from __future__ import annotations

from multimodalseg.tasks.freesurfer import ASEG_STRUCTURES
from multimodalseg.tasks.spec import ANATOMICAL_STRUCTURE, Code, InputSpec, LabelSpec, TaskSpec, Terminology

LEFT = Code("SCT", "7771000", "Left")
RIGHT = Code("SCT", "24028007", "Right")

# SNOMED CT type per structure (laterality goes in the modifier). Keys: name without Left-/Right-. Codes and
# meanings are those of Slicer's DICOM master list (category Anatomical Structure, mostly DICOM CID 7153) where it
# has the structure; tests/backend/test_terminology.py pins them against the entries checked in that list.
_TYPES: dict[str, Code] = {
    "Cerebral-White-Matter": Code("SCT", "68523003", "Cerebral White Matter"),
    "Cerebral-Cortex": Code("SCT", "40146001", "Cerebral cortex"),
    "Lateral-Ventricle": Code("SCT", "66720007", "Lateral ventricle"),
    "Inf-Lat-Vent": Code("SCT", "53118009", "Inferior Horn of Lateral Ventricle"),
    "Cerebellum-White-Matter": Code("SCT", "33060004", "Cerebellar white matter"),
    "Cerebellum-Cortex": Code("SCT", "25991003", "Cerebellar Cortex"),
    "Thalamus": Code("SCT", "42695009", "Thalamus"),
    "Caudate": Code("SCT", "11000004", "Caudate nucleus"),
    "Putamen": Code("SCT", "89278009", "Putamen"),
    "Pallidum": Code("SCT", "14738005", "Globus pallidus"),
    "3rd-Ventricle": Code("SCT", "49841001", "Third ventricle"),
    "4th-Ventricle": Code("SCT", "35918002", "Fourth ventricle"),
    "Brain-Stem": Code("SCT", "119238007", "Brain stem"),
    "Hippocampus": Code("SCT", "5366008", "Hippocampus"),
    "Amygdala": Code("SCT", "4958002", "Amygdala"),
    "CSF": Code("SCT", "65216001", "Cerebrospinal Fluid"),
    "Accumbens-area": Code("SCT", "427667007", "Nucleus accumbens"),
    "VentralDC": Code("SCT", "87563008", "Diencephalon"),
    "vessel": Code("SCT", "59820001", "Blood Vessel"),
    "choroid-plexus": Code("SCT", "80621003", "Choroid plexus"),
    "5th-Ventricle": Code("SCT", "74968005", "Cavum of septum pellucidum"),
    "WM-hypointensities": Code("SCT", "389080008", "White Matter"),
    "non-WM-hypointensities": Code("SCT", "12738006", "Brain"),
    "Optic-Chiasm": Code("SCT", "244453006", "Optic chiasm"),
    "CC": Code("SCT", "88442005", "Corpus callosum"),
}

# Not in Slicer's DICOM master list (checked against the whole list): these types (inferior horn, cerebellar
# cortex, choroid plexus, cavum septi pellucidi) ...
_NOT_IN_SLICER_LIST = frozenset({"Inf-Lat-Vent", "Cerebellum-Cortex", "choroid-plexus", "5th-Ventricle"})
# ... and these types, which the list has only without laterality (paired "U"), with a Left/Right modifier.
_UNPAIRED_IN_SLICER_LIST = frozenset({"Cerebellum-White-Matter", "VentralDC"})


def _terminology(name: str) -> Terminology:
    modifier = LEFT if name.startswith("Left-") else RIGHT if name.startswith("Right-") else None
    key = name.removeprefix("Left-").removeprefix("Right-")
    key = "CC" if key.startswith("CC_") else key
    listed = key not in _NOT_IN_SLICER_LIST and not (modifier and key in _UNPAIRED_IN_SLICER_LIST)
    return Terminology(ANATOMICAL_STRUCTURE, _TYPES[key], modifier, in_slicer_master_list=listed)


TASK = TaskSpec(
    id="petmr-brain",
    title="PET/MR Brain",
    description="The 45 labels of FreeSurfer's aseg.mgz (cortex and white matter included) from FDG PET and "
                "T1-weighted MR, with SUV statistics per structure.",
    inputs=(
        InputSpec("pet", "PET", "PET", normalization="pet", name_patterns=("pet", "fdg", "suv")),
        InputSpec("t1", "T1 MR", "MR", reference=True, name_patterns=("t1", "mprage", "spgr")),
    ),
    labels=tuple(
        LabelSpec(value, i + 1, name, color, _terminology(name))
        for i, (value, name, color) in enumerate(ASEG_STRUCTURES)
    ),
    spacing=(1.0, 1.0, 1.0),
    patch_size=(96, 96, 96),
    network="dual_uxnet",
    report_extras="multimodalseg.suv.report:suv_report",
)
