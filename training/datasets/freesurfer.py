"""PET/MR subject folders in FreeSurfer style.

``sub-001/{pet,t1,aseg}.nii.gz`` (or ``.mgz``), or a FreeSurfer subject: ``sub-001/mri/T1.mgz`` +
``sub-001/mri/aseg.mgz`` with the PET beside them (``mri/pet.mgz``) or in the subject folder. PET and MR come from
different scans: they are compared by physical extent, not required to share a grid.

Labels are FreeSurfer ``aseg.mgz`` values (FreeSurferColorLUT), the task's 45: cerebral white matter and cortex
(2, 3, 41, 42) are classes like the others, mapped to training indices 1..45 in value order
(``TaskSpec.value_to_index``). A label file with any other value (an ``aparc+aseg`` with cortical parcels 1000+, or
the ``aseg.stats``-only 78/79/81/82) is refused when it is read (``preprocessing.load_label``), with one line naming
the file and the values; nothing is mapped to background silently.
"""

from __future__ import annotations

from pathlib import Path

from multimodalseg.tasks.spec import TaskSpec

from training.datasets.base import Case, CaseImage, case_folders, stem, volume_files

NAME = "freesurfer"
TASKS = ("petmr-brain",)
# Role -> accepted file stems (lower case), in order of preference; FreeSurfer's T1.mgz before orig.mgz.
NAMES = {
    "pet": ("pet", "fdg", "pet_suv", "suv", "fdg_pet"),
    "t1": ("t1", "t1w", "orig", "mprage"),
}
LABEL_NAMES = ("aseg", "aseg.auto", "label", "seg")


def detect(root: Path) -> bool:
    return any(_find(d, LABEL_NAMES) or _find(d, NAMES["t1"]) for d in case_folders(root)[:3])


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    files = volume_files(folder) + volume_files(folder / "mri")
    by_stem = {stem(f).lower(): f for f in files}
    return next((by_stem[n] for n in names if n in by_stem), None)


def find_cases(task: TaskSpec, root: Path) -> list[Case]:
    cases = []
    for folder in case_folders(root):
        images = {role: CaseImage(f) for role, names in NAMES.items() if role in task.roles
                  and (f := _find(folder, names)) is not None}
        cases.append(Case(folder.name, images, _find(folder, LABEL_NAMES), None, None, folder, False))
    return cases
