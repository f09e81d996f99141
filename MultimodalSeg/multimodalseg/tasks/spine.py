"""Spine CT-MR: vertebrae and intervertebral discs on the CT grid, with a fused CT-MR image (METHODS §E)."""

from __future__ import annotations

from multimodalseg.tasks.spec import ANATOMICAL_STRUCTURE, Code, InputSpec, LabelSpec, TaskSpec, Terminology

TASK = TaskSpec(
    id="spine",
    title="Spine CT-MR",
    description="Vertebrae and intervertebral discs from a CT and a T2 MR of one patient, after landmark registration.",
    inputs=(
        InputSpec("ct", "CT", "CT", reference=True, normalization="ct", name_patterns=("ct",)),
        InputSpec("mr", "T2 MR", "MR", name_patterns=("mr", "t2")),
    ),
    labels=(
        LabelSpec(1, 1, "vertebra", (241, 214, 145),
                  Terminology(ANATOMICAL_STRUCTURE, Code("SCT", "51282000", "Vertebra"))),
        LabelSpec(2, 2, "intervertebral disc", (111, 184, 210),
                  # not in Slicer's DICOM master list (checked): a custom entry in Slicer
                  Terminology(ANATOMICAL_STRUCTURE, Code("SCT", "360499006", "Intervertebral disc"),
                              in_slicer_master_list=False)),
    ),
    spacing=(1.0, 1.0, 1.0),
    patch_size=(256, 256, 1),
    network="mcf",
    # Vertebra levels and the fused CT-MR image in the segmentation report/outputs (MCF's disagreement map comes
    # from the predictor for any ensemble bundle).
    report_extras="multimodalseg.inference.spine_extras:spine_extras",
)
