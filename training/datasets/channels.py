"""Channel names of MSD / nnU-Net ``dataset.json`` files mapped to a task's input roles."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from multimodalseg.tasks.spec import TaskSpec

# Normalised channel name -> role, for the names public datasets use (MSD Task01: FLAIR, T1w, t1gd, T2w;
# BraTS 2023: t2f, t1n, t1c, t2w). Only used when the role exists in the task.
ALIASES = {
    "flair": "flair", "t2f": "flair", "t2flair": "flair",
    "t1": "t1", "t1w": "t1", "t1n": "t1", "t1native": "t1",
    "t1gd": "t1ce", "t1ce": "t1ce", "t1c": "t1ce", "t1contrast": "t1ce",
    "t2": "t2", "t2w": "t2",
    "ct": "ct", "mr": "mr", "mri": "mr", "pet": "pet", "fdgpet": "pet",
}


def channel_roles(task: TaskSpec, names: Mapping[str, str], source: Path) -> tuple[list[str], list[str]]:
    """Roles in channel order, and notes on problems.

    Args:
        names: channel index (as a string, ``"0"``) -> name, as in ``dataset.json``; empty: the task's input order.
    Returns:
        ``(roles, notes)``. One-input tasks take channel 0 whatever its name.
    """
    if len(task.inputs) == 1:
        return [task.inputs[0].role], ([] if len(names) <= 1 else
                                       [f"{source}: {len(names)} channels listed; task {task.id} takes one"])
    if not names:
        return list(task.roles), []
    try:
        ordered = [names[k] for k in sorted(names, key=int)]
    except (ValueError, TypeError):
        return list(task.roles), [f"{source}: channel keys must be integers ('0', '1', ...)"]
    roles = []
    for name in ordered:
        key = re.sub(r"[^a-z0-9]", "", str(name).lower())
        role = ALIASES.get(key, key)
        roles.append(role if role in task.roles else f"?{name}")
    unknown = [r[1:] for r in roles if r.startswith("?")]
    if unknown:
        return list(task.roles), [f"{source}: channel names {', '.join(unknown)} do not match the roles of task "
                                  f"{task.id} ({', '.join(task.roles)}); using the task's order"]
    if len(set(roles)) != len(roles):
        return list(task.roles), [f"{source}: channel names map twice to one role ({', '.join(roles)})"]
    return roles, []
