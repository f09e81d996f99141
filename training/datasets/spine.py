"""Paired spine CT/MR case folders: ``case_001/{ct,mr,label}.nii.gz``; a case without a label is unlabelled.

The MR is usually registered to the CT in Slicer (landmarks) and saved on its own grid: the two are compared by
physical extent, not required to share a grid. Unlabelled cases feed semi-supervised training (METHODS §E).
"""

from __future__ import annotations

from pathlib import Path

from multimodalseg.tasks.spec import TaskSpec

from training.datasets.base import Case, CaseImage, case_folders, stem, volume_files

NAME = "spine"
TASKS = ("spine",)
LABEL_NAMES = ("label", "labels", "seg", "segmentation")


def detect(root: Path) -> bool:
    return any({stem(f).lower() for f in volume_files(d)} & {"ct", "mr"} for d in case_folders(root)[:3])


def find_cases(task: TaskSpec, root: Path) -> list[Case]:
    cases = []
    for folder in case_folders(root):
        by_stem = {stem(f).lower(): f for f in volume_files(folder)}
        images = {role: CaseImage(by_stem[role]) for role in task.roles if role in by_stem}
        label = next((by_stem[n] for n in LABEL_NAMES if n in by_stem), None)
        cases.append(Case(folder.name, images, label, None, None, folder, False))
    return cases
