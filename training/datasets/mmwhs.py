"""MM-WHS 2017: ``ct_train_1001_image.nii.gz`` + ``ct_train_1001_label.nii.gz`` (and ``mr_train_...``).

Files may sit in one folder or in ``ct_train/`` and ``mr_train/`` sub-folders (searched recursively). Labels use
the MM-WHS values (205 Myo, 420 LA, 500 LV, 550 RA, 600 RV, 820 AA, 850 PA); the known MR label 421 is read as
420 through the task's ``label_aliases``. Test images (no label file) give unlabelled cases. CT and MR cases are
different patients: each case carries its ``modality`` (``ct``/``mr``) for modality-conditioned networks.
"""

from __future__ import annotations

import re
from pathlib import Path

from multimodalseg.tasks.spec import TaskSpec

from training.datasets.base import VOLUME_PATTERN, Case, CaseImage, stem

NAME = "mmwhs"
TASKS = ("whole-heart",)
_IMAGE = re.compile(r"^(?P<case>(?P<modality>ct|mr)_\w*?\d+)_image$", re.IGNORECASE)


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and VOLUME_PATTERN.search(p.name) and _IMAGE.match(stem(p)))


def detect(root: Path) -> bool:
    return bool(_images(root))


def find_cases(task: TaskSpec, root: Path) -> list[Case]:
    role = task.inputs[0].role
    cases = []
    for image in _images(root):
        match = _IMAGE.match(stem(image))
        case_id = match["case"]
        label = next((p for p in sorted(image.parent.iterdir())
                      if VOLUME_PATTERN.search(p.name) and stem(p) == f"{case_id}_label"), None)
        cases.append(Case(case_id, {role: CaseImage(image)}, label, None, match["modality"].lower(),
                          image.parent, True))
    return cases
