"""Sample data in Slicer's Sample Data module: one synthetic case per workflow, generated on first use by
``multimodalseg synth --held-out`` in the background (a few seconds, no download) from an anatomy held out of the
demo models' training (the case ``multimodalseg demo`` scores), then loaded with names the panel's input
auto-assignment recognises, the reference label map and the case's landmark lists.

Slicer side (imports ``slicer``). File finding and node naming are plain Python (``SampleFiles``).
"""

from __future__ import annotations

import logging
import os
import time

import slicer
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task

from MultimodalSegLib import Command
from MultimodalSegLib.Runner import SUCCEEDED, BackendRunner
from MultimodalSegLib.SampleFiles import CaseFiles, findCaseFiles, nodeName, sampleName
from MultimodalSegLib.SlicerProcess import QtBackendProcess

CATEGORY = "MultimodalSeg synthetic cases"
ICONS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources", "Icons")
_runners: dict[str, BackendRunner] = {}  # task id -> generation in progress (kept alive until it ends)


def sampleFolder(taskId: str) -> str:
    # not the old "phantoms" folder: a phantom cached by an earlier version must not be loaded as the sample
    return os.path.join(slicer.app.cachePath, "MultimodalSeg", "synthetic", taskId)


def _env() -> dict[str, str]:
    from MultimodalSegLib.Logic import backendEnvironment

    return backendEnvironment()


def _python() -> list[str]:
    return Command.findPythonSlicer(slicer.app.slicerHome)


def loadCase(taskId: str, files: CaseFiles) -> dict[str, object]:
    """Load a case: volumes named for auto-assignment, the label map, landmark lists. Returns role -> node."""
    task = get_task(taskId)
    modality = None
    if task.modalities and files.images:
        name = next(iter(files.images.values())).name.lower()
        modality = next((m for m in task.modalities if name.startswith(m) or f"_{m}" in name), None)
    nodes: dict[str, object] = {}
    for role, path in files.images.items():
        nodes[role] = slicer.util.loadVolume(str(path), {"name": nodeName(task, role, modality)})
    if files.label is not None:
        nodes["label"] = slicer.util.loadLabelVolume(str(files.label), {"name": f"{task.id}-synth reference labels",
                                                                        "show": False})
    for role, path in files.landmarks.items():
        points = slicer.util.loadMarkups(str(path))
        if points is not None:
            points.SetName(f"{task.input(role).title} synth landmarks")
            nodes[f"landmarks:{role}"] = points
    reference = nodes.get(task.reference_role)
    if reference is not None:
        slicer.util.setSliceViewerLayers(background=reference, fit=True)
    return nodes


def generateCase(taskId: str, onLoaded=None, onError=None) -> None:
    """Generate (once; cached) and load the task's synthetic sample case without blocking Slicer.

    ``onLoaded(nodes)`` gets role -> node; ``onError(message)`` a failure (default: an error dialog).
    """
    folder = sampleFolder(taskId)
    task = get_task(taskId)
    files = findCaseFiles(task, folder) if os.path.isdir(folder) else CaseFiles()
    if files.complete(task):
        nodes = loadCase(taskId, files)
        if onLoaded:
            onLoaded(nodes)
        return
    if taskId in _runners and _runners[taskId].running:
        return

    def finished(result) -> None:
        _runners.pop(taskId, None)
        if result.status != SUCCEEDED:
            (onError or slicer.util.errorDisplay)(f"Making the {sampleName(task)} failed: {result.message}")
            return
        nodes = loadCase(taskId, findCaseFiles(task, folder))
        if onLoaded:
            onLoaded(nodes)

    os.makedirs(folder, exist_ok=True)
    runner = BackendRunner(QtBackendProcess, onLog=lambda line: logging.info(f"synth: {line}"),
                           onFinished=finished)
    _runners[taskId] = runner
    slicer.util.showStatusMessage(f"Making the {sampleName(task)}...", 3000)
    modality = task.modalities[0] if task.modalities else None  # whole heart: the CT case
    runner.start(Command.buildSampleCommand(_python(), taskId, folder, modality=modality), environment=_env())


def generateCaseBlocking(taskId: str, timeoutSeconds: float = 300.0) -> dict[str, object]:
    """For self-tests: generate and load the sample case, processing events until it is loaded."""
    loaded: dict[str, object] = {}
    errors: list[str] = []
    generateCase(taskId, onLoaded=loaded.update, onError=errors.append)
    deadline = time.monotonic() + timeoutSeconds
    while not loaded and not errors and time.monotonic() < deadline:
        slicer.app.processEvents()
        time.sleep(0.05)
    if errors:
        raise UserError(errors[0])
    if not loaded:
        raise UserError(f"the {taskId} synthetic case was not generated within {timeoutSeconds:.0f} s")
    return loaded


def registerSampleData(taskId: str) -> None:
    """Add the task's synthetic case to the Sample Data module (call once Slicer's startup completed)."""
    try:
        import SampleData
    except ImportError:  # Slicer built without the Sample Data module
        return

    task = get_task(taskId)
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=CATEGORY,
        sampleName=sampleName(task),
        thumbnailFileName=os.path.join(ICONS_DIR, f"Sample-{taskId}.png"),
        uris=[],
        fileNames=[],
        nodeNames=[],
        customDownloader=lambda source, t=taskId: generateCase(t),
    )
