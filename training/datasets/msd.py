"""Medical Segmentation Decathlon layout (Task01_BrainTumour and the other tasks).

``dataset.json`` + ``imagesTr/BRATS_001.nii.gz`` (4D: one channel per modality, in the order of
``dataset.json``'s ``modality``: FLAIR, T1w, t1gd, T2w) + ``labelsTr/BRATS_001.nii.gz``. Task01's labels are
1 edema, 2 non-enhancing tumour, 3 enhancing tumour: the task's ``msd`` convention. Hidden ``._*`` files (macOS
copies inside the official archives) are skipped. A 3D ``imagesTr`` file is a one-channel task.
"""

from __future__ import annotations

import json
from pathlib import Path

from multimodalseg.tasks.spec import TaskSpec

from training.datasets.base import Case, CaseImage, stem, volume_files
from training.datasets.channels import channel_roles
from training.datasets.nnunet import CHANNEL_PATTERN

NAME = "msd"
TASKS = ("brain-tumor", "whole-heart", "spine", "petmr-brain")


def detect(root: Path) -> bool:
    files = volume_files(root / "imagesTr")
    return bool(files) and not any(CHANNEL_PATTERN.match(stem(f)) for f in files)


def find_cases(task: TaskSpec, root: Path) -> list[Case]:
    meta = _dataset_json(root)
    names = meta.get("modality") or meta.get("channel_names") or {}
    roles, notes = channel_roles(task, names, root / "dataset.json")
    convention = "msd" if task.id == "brain-tumor" and "msd" in task.label_conventions else None
    labels = {stem(f): f for f in volume_files(root / "labelsTr")}
    cases = []
    for f in volume_files(root / "imagesTr"):
        case_id = stem(f)
        if len(roles) == 1:
            images = {roles[0]: CaseImage(f)}
        else:
            images = {role: CaseImage(f, channel) for channel, role in enumerate(roles)}
        cases.append(Case(case_id, images, labels.get(case_id), convention, None, root, True, list(notes)))
    return cases


def _dataset_json(root: Path) -> dict:
    path = root / "dataset.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"_invalid": True}
    return data if isinstance(data, dict) else {}
