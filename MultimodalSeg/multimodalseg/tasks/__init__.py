"""Task specifications, one module per workflow. Imports without numpy or torch.

Example:
    >>> from multimodalseg.tasks import get_task
    >>> get_task("brain-tumor").reference_role
    't1ce'
"""

from __future__ import annotations

from multimodalseg.errors import UserError
from multimodalseg.tasks import brain_tumor, petmr_brain, spine, whole_heart
from multimodalseg.tasks.spec import (
    Code,
    InputSpec,
    LabelSpec,
    LateralPairs,
    RegionSpec,
    TaskSpec,
    Terminology,
    lateral_axis,
)

TASKS: dict[str, TaskSpec] = {m.TASK.id: m.TASK for m in (petmr_brain, brain_tumor, whole_heart, spine)}


def get_task(task_id: str) -> TaskSpec:
    """The task with this id; a UserError listing the known ids otherwise."""
    try:
        return TASKS[task_id]
    except KeyError:
        raise UserError(f"unknown task '{task_id}' (known: {', '.join(TASKS)})") from None


def all_tasks() -> list[TaskSpec]:
    return list(TASKS.values())


__all__ = [
    "TASKS", "Code", "InputSpec", "LabelSpec", "LateralPairs", "RegionSpec", "TaskSpec", "Terminology", "all_tasks",
    "get_task", "lateral_axis",
]
