"""Readers for the public dataset layouts, one module each, and the integrity check run before training.

Every reader module has ``NAME``, ``TASKS`` (the task ids it serves), ``detect(root) -> bool`` and
``find_cases(task, root) -> list[Case]``. :func:`find_cases` picks the layout (``auto``: nnU-Net, then MSD,
then the task's own public layout) and applies the configured label convention.

Example:
    >>> layout, cases = find_cases(get_task("brain-tumor"), "BraTS2021_Training_Data")
    >>> report = check_dataset(get_task("brain-tumor"), cases)
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from multimodalseg.errors import UserError
from multimodalseg.tasks.spec import TaskSpec

from training.datasets import brats, freesurfer, mmwhs, msd, nnunet, spine
from training.datasets.base import Case, CaseImage, check_unique_ids
from training.datasets.integrity import IntegrityReport, Problem, check_dataset

LAYOUTS: dict[str, ModuleType] = {m.NAME: m for m in (brats, msd, mmwhs, freesurfer, spine, nnunet)}
# Generic layouts are tried first: their markers (imagesTr/) are unambiguous.
_GENERIC = ("nnunet", "msd")


def find_cases(
    task: TaskSpec,
    root: str | os.PathLike,
    layout: str = "auto",
    *,
    convention: str | None = None,
    co_registered: bool | None = None,
) -> tuple[str, list[Case]]:
    """The cases under ``root`` in ``layout``.

    Args:
        convention: label convention for every case (``brats2023``, ``msd``...); None: the layout's per-case choice.
        co_registered: override the layout's promise that all modalities share one grid.

    Raises:
        UserError: missing folder, unknown layout, a layout that does not serve the task, no cases found.
    """
    path = Path(root)
    if not path.is_dir():
        raise UserError("dataset folder not found", path)
    if layout == "auto":
        candidates = [*_GENERIC, *(n for n, m in LAYOUTS.items() if n not in _GENERIC and task.id in m.TASKS)]
        layout = next((n for n in candidates if LAYOUTS[n].detect(path)), "")
        if not layout:
            raise UserError(f"no cases found: not a known layout for task {task.id} "
                            f"(looked for: {', '.join(candidates)})", path)
    if layout not in LAYOUTS:
        raise UserError(f"unknown dataset layout '{layout}' (known: auto, {', '.join(LAYOUTS)})")
    module = LAYOUTS[layout]
    if task.id not in module.TASKS:
        raise UserError(f"layout '{layout}' holds no {task.id} data (it serves {', '.join(module.TASKS)})")
    cases = module.find_cases(task, path)
    if not cases:
        raise UserError(f"no cases found in layout '{layout}'", path)
    for case in cases:
        if convention is not None:
            case.convention = convention
        if co_registered is not None:
            case.co_registered = co_registered
    check_unique_ids(cases)
    return layout, cases


__all__ = ["LAYOUTS", "Case", "CaseImage", "IntegrityReport", "Problem", "check_dataset", "find_cases"]
