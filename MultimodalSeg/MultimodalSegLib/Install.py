"""First-Apply dependency check and install inside Slicer: torch through the PyTorch extension, then the pinned
backend requirements (``Resources/requirements.txt``) with Slicer's pip, never replacing Slicer's SimpleITK/VTK.

Slicer side (imports ``slicer`` and ``qt``). The decisions (what is missing, what to skip, whether a restart is
needed) are plain Python in ``Requirements.py``. torch is only looked up (``find_spec``), never imported here;
the backend imports it in its own process.
"""

from __future__ import annotations

import importlib
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
TORCH_REQUIREMENT = ">=2.3"


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


def _installPyTorchExtension() -> bool:
    """Offer to install the PyTorch extension; returns False (Slicer must restart before torch can be installed)."""
    if not slicer.util.confirmOkCancelDisplay(
            "MultimodalSeg runs its models with PyTorch, which the PyTorch extension installs.\n\n"
            "Install the PyTorch extension now? Slicer must be restarted afterwards; then click Apply again.",
            "MultimodalSeg: PyTorch extension needed"):
        return False
    manager = slicer.app.extensionsManagerModel()
    if not manager.installExtensionFromServer("PyTorch"):
        slicer.util.errorDisplay("The PyTorch extension could not be installed from the extensions server. "
                                 "Install it from the Extensions Manager, restart Slicer and click Apply again.")
        return False
    if slicer.util.confirmYesNoDisplay("The PyTorch extension is installed. Restart Slicer now?"):
        slicer.util.restart()
    return False


def _installTorch() -> bool:
    try:
        import PyTorchUtils
    except ImportError:
        return _installPyTorchExtension()
    if not slicer.util.confirmOkCancelDisplay(
            "MultimodalSeg needs PyTorch (torch). The PyTorch extension installs the build that fits this computer "
            "(with CUDA when an NVIDIA GPU is present; that download is several GB).\n\nInstall PyTorch now?",
            "MultimodalSeg: install PyTorch"):
        return False
    logic = PyTorchUtils.PyTorchUtilsLogic()
    with slicer.util.WaitCursor():
        logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
    importlib.invalidate_caches()
    if not torchAvailable():
        slicer.util.errorDisplay("PyTorch could not be installed; see the Python console for pip's output.")
        return False
    return True


def _pipInstall(requirementsPath: str, missing: list[str]) -> None:
    module = _pipModule()
    if module is not None:
        # Slicer >= 5.12: installs what is missing, skipping Slicer's own packages also among dependencies.
        requirements = withoutSkipped(module.load_requirements(requirementsPath), SKIP_PACKAGES)
        try:
            module.pip_ensure(requirements, skip_packages=list(SKIP_PACKAGES), requester=REQUESTER)
        except TypeError:  # a pip_ensure without skip_packages: our list names none of them anyway
            module.pip_ensure(requirements, requester=REQUESTER)
        return
    # Older Slicer: no dependency skipping, so each package goes in without its dependencies (the list is
    # complete) and pip cannot replace SimpleITK, VTK or torch behind our back.
    for requirement in missing:
        slicer.util.pip_install(f"--no-deps {requirement}")


def ensureDependencies(requirementsPath: str) -> bool:
    """Make sure the backend can run; returns True when it can now (False: declined, failed or restart needed).

    Asks before installing anything, says what will be installed, and offers a restart when an upgraded package
    was already imported by Slicer.
    """
    if not torchAvailable() and not _installTorch():
        return False
    requirements = withoutSkipped(readRequirements(requirementsPath), SKIP_PACKAGES)
    missing = missingRequirements(requirements)
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(
            "MultimodalSeg needs these Python packages in Slicer:\n\n  " + "\n  ".join(missing)
            + "\n\nSlicer's own SimpleITK and VTK are kept. Install now? (This takes a few minutes.)",
            "MultimodalSeg: install Python packages"):
        return False
    try:
        with slicer.util.WaitCursor():
            _pipInstall(requirementsPath, missing)
    except Exception as exc:  # pip's failure (CalledProcessError or the helper's own) goes to the user
        logging.exception("MultimodalSeg: installing requirements failed")
        slicer.util.errorDisplay(f"Installing the Python packages failed: {exc}")
        return False
    importlib.invalidate_caches()
    still = missingRequirements(requirements)
    if still:
        slicer.util.errorDisplay("These packages are still missing after the install: " + ", ".join(still))
        return False
    if restartNeeded(missing, sys.modules):
        if slicer.util.confirmYesNoDisplay("Some packages Slicer had already loaded were updated. Restart Slicer "
                                           "now so that the new versions are used?"):
            slicer.util.restart()
        return False
    qt.QApplication.processEvents()
    return True
