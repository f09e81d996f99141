"""The backend's Python requirements inside Slicer: read the pinned list, leave out what Slicer provides, and
find what is missing without importing anything.

Plain Python (``packaging`` and ``importlib.metadata``). ``Install.py`` installs the result with Slicer's pip.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

# Never installed by this extension: Slicer's own SimpleITK and VTK (a pip copy would shadow Slicer's builds),
# and torch, which Install.py installs with light-the-torch (the right CUDA variant for the computer).
SKIP_PACKAGES = ("SimpleITK", "vtk", "torch")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def readRequirements(path: str | os.PathLike) -> list[str]:
    """The requirement lines of a ``requirements.txt`` (comments and blank lines dropped).

    Raises:
        ValueError: a line is not a valid requirement (naming the file and line).
    """
    out = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise ValueError(f"{path}:{number}: not a requirement: {line!r} ({exc})") from exc
        out.append(line)
    return out


def withoutSkipped(requirements: Iterable[Any], skip: Sequence[str] = SKIP_PACKAGES) -> list[Any]:
    """The requirements (strings or ``Requirement`` objects, returned as given) minus those naming a package in
    ``skip`` (case- and separator-insensitive)."""
    skipped = {_canonical(s) for s in skip}
    return [r for r in requirements if _canonical(Requirement(str(r)).name) not in skipped]


def missingRequirements(
    requirements: Iterable[str],
    installedVersion: Callable[[str], str] = importlib.metadata.version,
) -> list[str]:
    """The requirements not satisfied by the installed distributions (absent, or a version outside the spec).

    Requirements whose environment marker does not apply here are left out.
    """
    missing = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = installedVersion(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


def restartNeeded(installed: Iterable[str], loadedModules: Mapping[str, object]) -> bool:
    """Whether an installed requirement was already imported in this process (its old version stays loaded)."""
    importNames = {"pillow": "PIL", "pyyaml": "yaml"}
    for text in installed:
        name = _canonical(Requirement(str(text)).name)
        module = importNames.get(name, name.replace("-", "_"))
        if module in loadedModules:
            return True
    return False


def torchAvailable(findSpec: Callable[[str], object] | None = None) -> bool:
    """Whether ``import torch`` would work, found without importing it (Slicer's process must stay torch-free)."""
    import importlib.util

    return (findSpec or importlib.util.find_spec)("torch") is not None
