"""Brain tumour (BraTS): NCR/NET, ED, ET from FLAIR, T1, T1ce and T2 (METHODS §B)."""

from __future__ import annotations

from multimodalseg.tasks.spec import (
    MORPHOLOGICALLY_ALTERED,
    Code,
    InputSpec,
    LabelSpec,
    RegionSpec,
    TaskSpec,
    Terminology,
)

NCR, ED, ET = "NCR/NET", "ED", "ET"

TASK = TaskSpec(
    id="brain-tumor",
    title="Brain Tumor (BraTS)",
    description="Glioma sub-regions from four MR sequences; output labels NCR/NET, ED, ET and regions WT, TC, ET.",
    inputs=(
        # FLAIR, T1 and T2 may be missing (clinicians often have only T1ce and FLAIR): a bundle trained with
        # modality dropout says so in ``preprocessing.missing_inputs``; other bundles refuse, naming the role.
        InputSpec("flair", "FLAIR", "MR", required=False, name_patterns=("flair",)),
        InputSpec("t1", "T1", "MR", required=False, name_patterns=("t1",)),
        InputSpec("t1ce", "T1 contrast-enhanced", "MR", reference=True, name_patterns=("t1ce", "t1c", "t1gd", "gad")),
        InputSpec("t2", "T2", "MR", required=False, name_patterns=("t2",)),
    ),
    labels=(
        LabelSpec(1, 1, NCR, (255, 64, 64), Terminology(MORPHOLOGICALLY_ALTERED, Code("SCT", "6574001", "Necrosis")),
                  "necrotic and non-enhancing tumour core"),
        LabelSpec(2, 2, ED, (64, 255, 64), Terminology(MORPHOLOGICALLY_ALTERED, Code("SCT", "79654002", "Edema")),
                  "peritumoral edema"),
        LabelSpec(4, 3, ET, (255, 255, 64),
                  Terminology(MORPHOLOGICALLY_ALTERED, Code("SCT", "108369006", "Neoplasm")),
                  "enhancing tumour"),
    ),
    output_kind="regions",
    regions=(
        RegionSpec("WT", (NCR, ED, ET), "whole tumour"),
        RegionSpec("TC", (NCR, ET), "tumour core"),
        RegionSpec("ET", (ET,), "enhancing tumour"),
    ),
    spacing=(1.0, 1.0, 1.0),
    patch_size=(128, 128, 128),
    network="dmfnet",
    postprocess="multimodalseg.postprocessing.brats:postprocess",
    skull_strip=True,  # whole-head MR is stripped first (inference.brain_mask); BraTS data already is
    # The task's own values follow BraTS 2017-2022 (ET = 4).
    label_conventions={
        "brats2021": {NCR: 1, ED: 2, ET: 4},
        "brats2023": {NCR: 1, ED: 2, ET: 3},
        "msd": {ED: 1, NCR: 2, ET: 3},
    },
)
