"""Find the files of a sample case written by ``multimodalseg synth`` or ``multimodalseg phantom`` (or any case in a
task's public layout): one image per role, the label map and the landmark lists.

Plain Python. Roles are recognised by the last ``_``/``-`` separated token of a file name
(``BraTS20_Training_001_t1ce.nii.gz`` -> ``t1ce``, ``sub-001/pet.nii.gz`` -> ``pet``, ``ct_train_1001_image`` ->
the single input of the whole-heart task), label maps by ``seg``/``label``/``aseg``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from multimodalseg.tasks import TaskSpec

LABEL_TOKENS = ("seg", "label", "labels", "aseg")
POINT_SUFFIXES = (".mrk.json", ".fcsv")
_SPLIT = re.compile(r"[_\-.]")


@dataclass
class CaseFiles:
    """Files of one case: ``images`` role -> path, ``label`` (or None), ``landmarks`` role -> point list file."""

    images: dict[str, Path] = field(default_factory=dict)
    label: Path | None = None
    landmarks: dict[str, Path] = field(default_factory=dict)

    def complete(self, task: TaskSpec) -> bool:
        return all(spec.role in self.images for spec in task.inputs if spec.required)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (*POINT_SUFFIXES, ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".mgz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _role(task: TaskSpec, stem: str) -> str | None:
    tokens = [t for t in _SPLIT.split(stem.lower()) if t]
    for token in reversed(tokens):
        if token in task.roles:
            return token
        if token in ("image", "img") and len(task.roles) == 1:
            return task.roles[0]
    return None


def findCaseFiles(task: TaskSpec, folder: str | os.PathLike) -> CaseFiles:
    """The first case found under ``folder`` (searched recursively, in sorted order)."""
    from multimodalseg.io import has_volume_suffix  # SimpleITK: not at Slicer's start-up, when modules register

    found = CaseFiles()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")):
        stem = _stem(path)
        last = (_SPLIT.split(stem.lower()) or [""])[-1]
        if path.name.lower().endswith(POINT_SUFFIXES):
            role = _role(task, stem.lower().replace("landmarks", "").replace("points", ""))
            if role is not None:
                found.landmarks.setdefault(role, path)
        elif has_volume_suffix(path):
            if last in LABEL_TOKENS:
                found.label = found.label or path
            else:
                role = _role(task, stem)
                if role is not None:
                    found.images.setdefault(role, path)
    return found


def sampleName(task: TaskSpec) -> str:
    """The Sample Data entry's title: ``Whole Heart synthetic case``."""
    return f"{task.title} synthetic case"


def nodeName(task: TaskSpec, role: str, modality: str | None = None) -> str:
    """A node name the panel's auto-assignment recognises: ``synth_<role>`` (``synth_t1ce``), or for a
    single-input task its id and the modality (``whole-heart-synth_ct``)."""
    if len(task.roles) == 1:
        return f"{task.id}-synth" + (f"_{modality}" if modality else "")
    return f"synth_{role}"
