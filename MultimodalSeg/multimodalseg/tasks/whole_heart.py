"""Whole heart: the 7 MM-WHS substructures from CT or MR with one conditional model (METHODS §C, §D)."""

from __future__ import annotations

from multimodalseg.tasks.spec import ANATOMICAL_STRUCTURE, Code, InputSpec, LabelSpec, TaskSpec, Terminology


def _label(value: int, index: int, name: str, color: tuple[int, int, int], code: Code, description: str,
           in_slicer_master_list: bool = True) -> LabelSpec:
    term = Terminology(ANATOMICAL_STRUCTURE, code, in_slicer_master_list=in_slicer_master_list)
    return LabelSpec(value, index, name, color, term, description)


# Training indices follow Payer and MI-Seg: LV 1, RV 2, LA 3, RA 4, Myo 5, AA 6, PA 7.
TASK = TaskSpec(
    id="whole-heart",
    title="Whole Heart",
    description="Seven cardiac substructures (MM-WHS) from a CT or an MR image, one model for both modalities.",
    inputs=(
        InputSpec("image", "CT or MR image", "CT|MR", reference=True, normalization="zscore",
                  name_patterns=("heart", "cardiac", "ct", "mr", "cta")),
    ),
    labels=(
        # Slicer's DICOM master list has no myocardium type (checked): a custom entry in Slicer.
        _label(205, 5, "Myo", (220, 20, 60), Code("SCT", "49848007", "Left Ventricle Myocardium"),
               "left ventricle myocardium", in_slicer_master_list=False),
        _label(420, 3, "LA", (255, 165, 0), Code("SCT", "82471001", "Left atrium"), "left atrium blood cavity"),
        _label(500, 1, "LV", (200, 0, 0), Code("SCT", "87878005", "Left ventricle"), "left ventricle blood cavity"),
        _label(550, 4, "RA", (0, 150, 255), Code("SCT", "73829009", "Right atrium"), "right atrium blood cavity"),
        _label(600, 2, "RV", (0, 60, 200), Code("SCT", "53085002", "Right ventricle"), "right ventricle blood cavity"),
        _label(820, 6, "AA", (255, 80, 180), Code("SCT", "54247002", "Ascending aorta"), "ascending aorta"),
        _label(850, 7, "PA", (120, 220, 120), Code("SCT", "81040000", "Pulmonary artery"), "pulmonary artery"),
    ),
    spacing=(1.0, 1.0, 1.0),
    patch_size=(96, 96, 96),
    network="maunet",
    label_aliases={421: 420},  # a known MM-WHS MR label bug
    modalities=("ct", "mr"),
    report_extras="multimodalseg.inference.heart_extras:heart_extras",  # chamber volumes, myocardial mass
)
