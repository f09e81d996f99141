"""BraTS 2017-2023 case folders.

2017-2022: ``BraTS20_Training_001/BraTS20_Training_001_{flair,t1,t1ce,t2,seg}.nii.gz`` (ET = 4).
2023: ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t2f,t1n,t1c,t2w,seg}.nii.gz`` (ET = 3, convention ``brats2023``).
Validation folders without ``seg`` give unlabelled cases. All four sequences are co-registered on one 1 mm grid.
"""

from __future__ import annotations

import re
from pathlib import Path

from multimodalseg.tasks.spec import TaskSpec

from training.datasets.base import Case, CaseImage, case_folders, stem, volume_files

NAME = "brats"
TASKS = ("brain-tumor",)
# File-name suffix -> role ("seg" is the label); 2023 names first.
SUFFIXES = {
    "t2f": "flair", "t1n": "t1", "t1c": "t1ce", "t2w": "t2",
    "flair": "flair", "t1": "t1", "t1ce": "t1ce", "t1gd": "t1ce", "t2": "t2",
}
LABEL_SUFFIXES = ("seg",)
_SPLIT = re.compile(r"[_-]")


def detect(root: Path) -> bool:
    """A folder of case folders whose files end in a BraTS suffix."""
    return any(_suffix(f) in SUFFIXES for d in case_folders(root)[:3] for f in volume_files(d))


def _suffix(path: Path) -> str:
    return _SPLIT.split(stem(path))[-1].lower()


def find_cases(task: TaskSpec, root: Path) -> list[Case]:
    cases = []
    for folder in case_folders(root):
        images: dict[str, CaseImage] = {}
        label = None
        notes: list[str] = []
        is_2023 = False
        for f in volume_files(folder):
            suffix = _suffix(f)
            if suffix in LABEL_SUFFIXES:
                label = f
            elif suffix in SUFFIXES:
                role = SUFFIXES[suffix]
                is_2023 |= suffix in ("t2f", "t1n", "t1c", "t2w")
                if role in images:
                    notes.append(f"two files for {role}: {images[role].path.name} and {f.name}")
                images[role] = CaseImage(f)
        convention = "brats2023" if is_2023 else None
        cases.append(Case(folder.name, images, label, convention, None, folder, True, notes))
    return cases
