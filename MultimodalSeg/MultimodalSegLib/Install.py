"""First-Apply dependency check and install inside Slicer: torch (the build for this computer, chosen by
light-the-torch as the PyTorch extension does), then the pinned backend requirements (``Resources/requirements.txt``)
with Slicer's pip, never replacing Slicer's SimpleITK/VTK.

Slicer side (imports ``slicer`` and ``qt``). The decisions (what is missing, what to skip, whether a restart is
needed) are plain Python in ``Requirements.py``. torch is only looked up (``find_spec`` and its installed
version), never imported here: the backend imports it in its own process. (SlicerPyTorch's ``installTorch`` ends
with ``import torch``, which would load torch into Slicer's process, so it is not used.)

Each install asks once: ``slicer.packaging.pip_ensure`` asks and offers the restart itself, so no question of ours
comes before or after it, and its "declined" is reported as declined, not as a failure. Under ``--testing``
Slicer installs nothing and answers every question with "no": :func:`dependencyProblem` then says what is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import qt
import slicer

from MultimodalSegLib.Requirements import (
    SKIP_PACKAGES,
    missingRequirements,
    readRequirements,
    restartNeeded,
    torchAvailable,
    withoutSkipped,
)

REQUESTER = "MultimodalSeg"
TORCH_REQUIREMENT = "torch>=2.3"
LIGHT_THE_TORCH = "light-the-torch>=0.5"


def _pipModule():
    """Slicer's package helper with ``pip_ensure`` (``slicer.packaging``, named ``slicer.pydeps`` in some
    versions), or None before Slicer 5.12."""
    for name in ("slicer.packaging", "slicer.pydeps"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module
    return None


def _testing() -> bool:
    return bool(slicer.app.testingEnabled())


def torchProblem() -> str | None:
    """Why the installed torch cannot be used (absent, or older than the requirement), or None."""
    if not torchAvailable():
        return "PyTorch (torch) is not installed"
    if missingRequirements([TORCH_REQUIREMENT]):
        return f"the installed PyTorch is older than required ({TORCH_REQUIREMENT})"
    return None


def dependencyProblem(requirementsPath: str) -> str | None:
    """What is missing for the backend to run (None: nothing), found without importing or installing anything."""
    problems = [p for p in (torchProblem(),) if p]
    missing = missingRequirements(withoutSkipped(readRequirements(requirementsPath), SKIP_PACKAGES))
    if missing:
        problems.append("missing Python packages: " + ", ".join(missing))
    return "; ".join(problems) or None


def _installTorch(problem: str) -> bool:
    if _testing():
        logging.info(f"MultimodalSeg: testing mode, not installing PyTorch ({problem})")
        return False
    if not slicer.util.confirmOkCancelDisplay(
            f"MultimodalSeg runs its models with PyTorch: {problem}.\n\nInstall PyTorch now? The build that fits this "
            "computer is chosen (with CUDA when an NVIDIA GPU is present; that download is several GB).",
            "MultimodalSeg: install PyTorch"):
        return False
    hadTorch = "torch" in sys.modules  # only if some other extension imported it into Slicer
    try:
        with slicer.util.WaitCursor():
            if importlib.util.find_spec("light_the_torch") is None:
                slicer.util.pip_install(LIGHT_THE_TORCH)
            slicer.util.executePythonModule("light_the_torch", ["install", TORCH_REQUIREMENT])
    except Exception as exc:  # pip's CalledProcessError and the like go to the user
        logging.exception("MultimodalSeg: installing PyTorch failed")
        slicer.util.errorDisplay(f"Installing PyTorch failed: {exc}")
        return False
    importlib.invalidate_caches()
    still = torchProblem()
    if still:
        slicer.util.errorDisplay(f"After the install, {still}; see the Python console for the installer's output.")
        return False
    if hadTorch:
        if slicer.util.confirmYesNoDisplay("PyTorch was updated while an old version is loaded in Slicer. Restart "
                                           "Slicer now?"):
            slicer.util.restart()
        return False
    return True


def _pipInstall(requirementsPath: str, missing: list[str]) -> str:
    """Install the missing requirements; returns ``installed`` or ``declined`` (raises when pip fails)."""
    module = _pipModule()
    if module is not None:
        # Slicer >= 5.12: asks once, installs what is missing (Slicer's own packages skipped also among
        # dependencies) and offers the restart itself.
        requirements = withoutSkipped(module.load_requirements(requirementsPath), SKIP_PACKAGES)
        try:
            try:
                module.pip_ensure(requirements, skip_packages=list(SKIP_PACKAGES), requester=REQUESTER)
            except TypeError:  # a pip_ensure without skip_packages: our list names none of them anyway
                module.pip_ensure(requirements, requester=REQUESTER)
        except RuntimeError as exc:
            if "declined" in str(exc).lower():
                return "declined"
            raise
        return "installed"
    # Older Slicer: our one question; each package goes in without its dependencies (the list is complete), so
    # pip cannot replace SimpleITK, VTK or torch behind our back.
    if not slicer.util.confirmOkCancelDisplay(
            "MultimodalSeg needs these Python packages in Slicer:\n\n  " + "\n  ".join(missing)
            + "\n\nSlicer's own SimpleITK and VTK are kept. Install now? (This takes a few minutes.)",
            "MultimodalSeg: install Python packages"):
        return "declined"
    with slicer.util.WaitCursor():
        for requirement in missing:
            slicer.util.pip_install(f"--no-deps {requirement}")
    if restartNeeded(missing, sys.modules):
        if slicer.util.confirmYesNoDisplay("Some packages Slicer had already loaded were updated. Restart Slicer "
                                           "now so that the new versions are used?"):
            slicer.util.restart()
        return "restart"
    return "installed"


def ensureDependencies(requirementsPath: str, onStatus=None) -> bool:
    """Make sure the backend can run; returns True when it can now (False: declined, failed, testing mode or
    restart needed). ``onStatus(text)`` gets a line for the panel when it cannot."""
    report = onStatus or (lambda text: None)
    problem = torchProblem()
    if problem and not _installTorch(problem):
        report(f"Not ready: {problem}." + (" Slicer installs nothing under --testing." if _testing() else ""))
        return False
    requirements = withoutSkipped(readRequirements(requirementsPath), SKIP_PACKAGES)
    missing = missingRequirements(requirements)
    if not missing:
        return True
    if _testing():
        report("Not ready: missing Python packages " + ", ".join(missing) + "; Slicer installs nothing under "
               "--testing (run once without it).")
        return False
    try:
        outcome = _pipInstall(requirementsPath, missing)
    except Exception as exc:  # pip's failure (CalledProcessError or the helper's own) goes to the user
        logging.exception("MultimodalSeg: installing requirements failed")
        slicer.util.errorDisplay(f"Installing the Python packages failed: {exc}")
        report("Installing the Python packages failed; see the Python console.")
        return False
    if outcome == "declined":
        report("The Python packages were not installed (declined).")
        return False
    importlib.invalidate_caches()
    still = missingRequirements(requirements)
    if still:
        slicer.util.errorDisplay("These packages are still missing after the install: " + ", ".join(still))
        report("Some Python packages are still missing: " + ", ".join(still))
        return False
    if outcome == "restart":
        report("Restart Slicer to use the updated packages.")
        return False
    qt.QApplication.processEvents()
    return True
