"""nnU-Net v2 raw layout: ``imagesTr/{case}_{channel:04d}.nii.gz`` + ``labelsTr/{case}.nii.gz`` + ``dataset.json``.

Channels follow ``dataset.json``'s ``channel_names`` when they name the task's roles, the task's input order
otherwise. Label values are the task's own (the convention ``data.label_convention`` overrides).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from multimodalseg.tasks.spec import TaskSpec

from training.datasets.base import Case, CaseImage, stem, volume_files
from training.datasets.channels import channel_roles

NAME = "nnunet"
TASKS = ("brain-tumor", "whole-heart", "spine", "petmr-brain")
CHANNEL_PATTERN = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def detect(root: Path) -> bool:
    return any(CHANNEL_PATTERN.match(stem(f)) for f in volume_files(root / "imagesTr"))


def find_cases(task: TaskSpec, root: Path) -> list[Case]:
    names: dict = {}
    meta_path = root / "dataset.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            names = (meta.get("channel_names") or meta.get("modality") or {}) if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            names = {}
    roles, notes = channel_roles(task, names, meta_path)
    files: dict[str, dict[int, Path]] = {}
    for f in volume_files(root / "imagesTr"):
        match = CHANNEL_PATTERN.match(stem(f))
        if match:
            files.setdefault(match["case"], {})[int(match["channel"])] = f
    labels = {stem(f): f for f in volume_files(root / "labelsTr")}
    cases = []
    for case_id, channels in sorted(files.items()):
        case_notes = list(notes)
        extra = sorted(c for c in channels if c >= len(roles))
        if extra:
            case_notes.append(f"channel file(s) {', '.join(f'{c:04d}' for c in extra)} beyond the task's "
                              f"{len(roles)} inputs")
        images = {role: CaseImage(channels[c]) for c, role in enumerate(roles) if c in channels}
        cases.append(Case(case_id, images, labels.get(case_id), None, None, root / "imagesTr", False, case_notes))
    return cases
