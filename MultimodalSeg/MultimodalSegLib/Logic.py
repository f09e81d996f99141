"""The modules' logic: export the inputs, run the backend, import the result. Usable without the panel:

    >>> import BrainTumor
    >>> logic = BrainTumor.BrainTumorLogic()
    >>> result = logic.segment({"flair": f, "t1": t1, "t1ce": t1ce, "t2": t2}, model=None, device="auto",
    ...                        onProgress=lambda fraction, stage: print(f"{fraction:.0%} {stage}"))
    >>> result.segmentation.GetName(), [t.GetName() for t in result.tables]

Slicer side (imports ``slicer``). Each module's ``<Name>Logic`` mixes :class:`TaskLogicMixin` into
``ScriptedLoadableModuleLogic``. All modules share one warm backend process (``Worker.WorkerRunner`` running
``multimodalseg serve``): only the first job of a Slicer session pays for starting Python, torch and MONAI, and
one job runs at a time. ``segment(..., wait=True)`` (the default, for the console and scripts) processes Qt
events until the job ends and returns its :class:`SegmentResult`; ``wait=False`` (the panel) returns at once and
calls ``onFinished(result)``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import slicer
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task

from MultimodalSegLib import Command, Install, Results, Scene
from MultimodalSegLib.Landmarks import FitSummary, summarizeFit
from MultimodalSegLib.Runner import CANCELED, FAILED, SUCCEEDED, RunResult
from MultimodalSegLib.Settings import chosenFolder
from MultimodalSegLib.SlicerProcess import QtBackendProcess
from MultimodalSegLib.Suv import SuvValues, valuesFromDataset
from MultimodalSegLib.TrainingWriter import SavedCase, saveTrainingCase
from MultimodalSegLib.Transforms import setFitOnTransformNode
from MultimodalSegLib.Worker import WorkerRunner, serveCommand

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # beside the multimodalseg package
RESOURCES_DIR = os.path.join(MODULE_DIR, "Resources")
REQUIREMENTS = os.path.join(RESOURCES_DIR, "requirements.txt")

_worker: WorkerRunner | None = None
_workerOwner: TaskLogicMixin | None = None  # the logic whose job runs now


def backendPython() -> list[str]:
    return Command.findPythonSlicer(slicer.app.slicerHome)


def backendEnvironment() -> dict[str, str]:
    # PythonSlicer sets Slicer's paths itself: start from the environment Slicer was started with.
    return Command.backendEnvironment(slicer.util.startupEnvironment(), MODULE_DIR)


def sharedWorker() -> WorkerRunner:
    """The one warm backend of this Slicer session (created on first use, stopped when Slicer quits)."""
    global _worker
    if _worker is None:
        _worker = WorkerRunner(QtBackendProcess, serveCommand(backendPython()), environment=backendEnvironment(),
                               onLog=lambda line: logging.info(f"MultimodalSeg backend: {line}"))
        slicer.app.connect("aboutToQuit()", _worker.shutdown)
    return _worker


@dataclass
class SegmentResult:
    """How a segmentation job ended, and what it added to the scene.

    Attributes:
        status: ``succeeded``, ``failed`` or ``canceled``.
        message: the failure's line, or a one-line summary of the result.
        segmentation: the ``vtkMRMLSegmentationNode`` (one segment per task label, in the task's order).
        tables: ``vtkMRMLTableNode``s (volumes, SUV statistics, ...), titled with what their values are.
        volumes: further volume nodes (spine: fused image, disagreement map), in memory (saved with the scene).
        report: the backend's JSON report.
        seconds: the backend's own time for the job (``timings.total``).
        warnings: the backend's warning messages (e.g. the CUDA out-of-memory fallback to CPU).
    """

    status: str
    message: str = ""
    segmentation: Any = None
    tables: list = field(default_factory=list)
    volumes: list = field(default_factory=list)
    report: dict = field(default_factory=dict)
    seconds: float | None = None
    warnings: list[str] = field(default_factory=list)


def _node(value):
    """A node from a node, a node ID or a node name (the console's convenience)."""
    if value is None or not isinstance(value, str):
        return value
    return slicer.mrmlScene.GetNodeByID(value) or slicer.util.getFirstNodeByName(value)


def suvValuesFromVolume(volumeNode) -> SuvValues | None:
    """SUV fields from the DICOM tags of a PET volume loaded from Slicer's DICOM database, or None."""
    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split() if volumeNode is not None else []
    if not uids or getattr(slicer, "dicomDatabase", None) is None:
        return None
    path = slicer.dicomDatabase.fileForInstance(uids[0])
    if not path:
        return None
    import pydicom  # Slicer ships pydicom

    try:
        return valuesFromDataset(pydicom.dcmread(path, stop_before_pixels=True))
    except Exception as exc:  # an unreadable file: the user types the values
        logging.warning(f"MultimodalSeg: cannot read the SUV tags of {path}: {exc}")
        return None


class TaskLogicMixin:
    """Export -> run -> import for one task; mixed into each module's ``ScriptedLoadableModuleLogic``."""

    taskId = ""

    def __init__(self) -> None:
        self.task = get_task(self.taskId)
        self._dependenciesChecked = False
        self._onFinished: Callable[[SegmentResult], None] | None = None
        self._pending: dict[str, Any] = {}
        self._last: SegmentResult | None = None

    @property
    def running(self) -> bool:
        """Whether a job of this logic is in progress."""
        return _workerOwner is self and _worker is not None and _worker.running

    def cancel(self) -> None:
        """Stop this logic's job (the backend process is killed and a fresh one started)."""
        if self.running:
            _worker.cancel()

    def checkDependencies(self, onStatus: Callable[[str], None] | None = None) -> bool:
        """Install what the backend needs (asking first), once per session; False when it cannot run yet."""
        if not self._dependenciesChecked:
            if not Install.ensureDependencies(REQUIREMENTS, onStatus):
                return False
            self._dependenciesChecked = True
        return True

    def segment(self, inputs: Mapping[str, Any], *, model: str | None = None, device: str = "auto",
                tta: bool = False, quick: bool = False, modality: str | None = None, suv: SuvValues | None = None,
                skullStrip: str | None = None, onProgress: Callable[[float, str], None] | None = None,
                onLog: Callable[[str], None] | None = None,
                onFinished: Callable[[SegmentResult], None] | None = None, wait: bool = True,
                timeoutSeconds: float = 3600.0) -> SegmentResult | None:
        """Segment the task's input volumes.

        Args:
            inputs: role -> volume node (or node ID or name), e.g. ``{"pet": petNode, "t1": t1Node}``.
            model: catalog model id or bundle path; None: the task's newest model.
            device: ``auto``, ``cpu`` or ``cuda:N``.
            tta, quick, modality, skullStrip: see ``Command.buildSegmentCommand``.
            suv: PET tasks: the SUV values (default: from the PET's DICOM tags when it came from DICOM).
            onProgress: ``(fraction, stage)`` while the backend runs.
            onLog: each log line of the run.
            onFinished: the :class:`SegmentResult` once the job ended.
            wait: process events until the job ends and return its result (raising on failure); False: return
                None at once.

        Raises:
            UserError: an input missing or of an unknown role, dependencies not installed, another MultimodalSeg
                job running, or (with ``wait``) the job failed.
        """
        nodes = {role: _node(value) for role, value in inputs.items()}
        Command.checkInputs(self.task, {r: n.GetID() for r, n in nodes.items() if n is not None})
        worker = sharedWorker()
        if worker.running:
            raise UserError("another MultimodalSeg segmentation is running; wait for it or cancel it")
        log = onLog or (lambda line: logging.info(f"MultimodalSeg: {line}"))
        if not self.checkDependencies(log):
            raise UserError("the Python packages the backend needs are not installed (see the log)")
        if suv is None and "pet" in nodes:
            suv = suvValuesFromVolume(nodes["pet"])
        extra = suv.arguments() if suv is not None and self._hasPet() else []
        workDir = tempfile.mkdtemp(prefix="MultimodalSeg-", dir=slicer.app.temporaryPath)
        try:
            with slicer.util.WaitCursor():
                files = Scene.exportInputs({r: n for r, n in nodes.items() if n is not None}, workDir)
            labels, report = os.path.join(workDir, "labels.nrrd"), os.path.join(workDir, "report.json")
            command = Command.buildSegmentCommand(backendPython(), self.task, files, labels, device=device, tta=tta,
                                                  quick=quick, model=model, report=report, modality=modality,
                                                  skullStrip=skullStrip, extra=extra)
        except BaseException:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        global _workerOwner
        _workerOwner = self
        self._pending = {"inputs": nodes, "labels": labels, "report": report}
        self._onFinished, self._last = onFinished, None
        log("Running: " + " ".join(command))
        worker.start(command, workDir=workDir, onProgress=onProgress, onLog=log, onFinished=self._runFinished)
        if not wait:
            return None
        deadline = time.monotonic() + timeoutSeconds
        while self._last is None and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.02)
        if self._last is None:
            self.cancel()
            raise UserError(f"the segmentation did not finish within {timeoutSeconds:.0f} s; canceled")
        if self._last.status == FAILED:
            raise UserError(f"segmentation failed: {self._last.message}")
        return self._last

    def _hasPet(self) -> bool:
        return any("PET" in spec.modality.upper().split("|") for spec in self.task.inputs)

    def _runFinished(self, run: RunResult) -> None:
        # Called from a Qt signal: every exception is caught here (PythonQt would print and swallow it).
        pending, self._pending = self._pending, {}
        if run.status == CANCELED:
            result = SegmentResult(CANCELED, "canceled; no result was created")
        elif run.status != SUCCEEDED:
            result = SegmentResult(FAILED, run.message, warnings=run.warnings)
        else:
            try:
                with slicer.util.WaitCursor():
                    result = self.importResult(pending, run)
            except Exception as exc:
                logging.exception("MultimodalSeg: importing the result failed")
                result = SegmentResult(FAILED, f"the result could not be loaded: {exc}", warnings=run.warnings)
        self._last = result
        if self._onFinished is not None:
            try:
                self._onFinished(result)
            except Exception:
                logging.exception("MultimodalSeg: the onFinished callback failed")

    def importResult(self, pending: Mapping[str, Any], run: RunResult) -> SegmentResult:
        """Turn a finished run's files into scene nodes beside the reference input."""
        reference = pending["inputs"][self.task.reference_role]
        report = Results.readReport(pending["report"])
        name = Results.segmentationNodeName(self.task, reference.GetName())
        segmentation = Scene.importSegmentation(pending["labels"], Results.segmentSpecs(self.task), reference, name)
        Scene.placeWithInput(segmentation, reference)
        modelInfo = report.get("model") or {}
        segmentation.SetAttribute("MultimodalSeg.model", str(modelInfo.get("id", "")))
        segmentation.SetAttribute("MultimodalSeg.modelVersion", str(modelInfo.get("version", "")))
        tables = []
        for table in Results.tablesFromReport(report or (run.finished or {})):
            node = Scene.addTable(table, f"{name} {table.title}")
            Scene.placeWithInput(node, reference)
            tables.append(node)
        volumes = []
        for extra in Results.extraVolumes(report, run.finished, pending["labels"]):
            node = Scene.loadExtraVolume(extra, f"{name} {extra.title}")
            Scene.placeWithInput(node, reference)
            volumes.append(node)
        Scene.showResult(segmentation, reference)
        seconds = (run.finished or {}).get("timings", {}).get("total")
        message = f"Done: {name}" + (f" ({float(seconds):.0f} s)." if seconds is not None else ".")
        return SegmentResult(SUCCEEDED, message, segmentation, tables, volumes, report,
                             None if seconds is None else float(seconds), list(run.warnings))

    def saveForTraining(self, segmentation, inputs: Mapping[str, Any], folder: str,
                        modality: str | None = None) -> tuple[SavedCase, list[str]]:
        """Save the (edited) segmentation and its inputs as a training case in ``folder`` (the task's public
        layout, with a manifest). Returns the saved case and the names of segments that match no label.

        Raises:
            UserError: no folder chosen (Slicer's working folder is never taken), an input missing, no segment
                named like a label, or files that cannot be written.
        """
        folder = chosenFolder(folder)
        if not folder:
            raise UserError("choose the training folder")
        segmentation = _node(segmentation)
        nodes = {role: _node(value) for role, value in inputs.items() if value is not None}
        Command.checkInputs(self.task, {r: n.GetID() for r, n in nodes.items() if n is not None})
        with tempfile.TemporaryDirectory(prefix="MultimodalSeg-", dir=slicer.app.temporaryPath) as tmp:
            files = Scene.exportInputs(nodes, tmp)
            labels = os.path.join(tmp, "labels.nrrd")
            unknown = Scene.exportLabelsForTraining(self.task, segmentation, nodes[self.task.reference_role], labels)
            saved = saveTrainingCase(
                self.task, folder, files, labels, source=Scene.sourceDescription(nodes),
                model={"id": segmentation.GetAttribute("MultimodalSeg.model") or None,
                       "version": segmentation.GetAttribute("MultimodalSeg.modelVersion") or None},
                modality=modality)
        return saved, unknown

    def registerLandmarks(self, role: str, fixedPoints, movingPoints, movingVolume=None, mode: str = "rigid",
                          transformNode=None) -> FitSummary:
        """Fit input ``role`` onto the reference from paired point lists and put the moving volume and points
        under the transform (what the panel's registration tab does). Raises UserError when the fit fails."""
        from MultimodalSegLib.LandmarkPanel import definedPoints

        summary = summarizeFit(definedPoints(_node(fixedPoints), world=True),
                               definedPoints(_node(movingPoints), world=False), mode)
        if summary.fit is None:
            raise UserError(f"landmark fit for {role} failed: {summary.message}")
        if transformNode is None:
            transformNode = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLTransformNode", f"{self.task.input(role).title} to "
                                        f"{self.task.input(self.task.reference_role).title}")
        setFitOnTransformNode(transformNode, summary.fit)
        for child in (_node(movingVolume), _node(movingPoints)):
            if child is not None:
                child.SetAndObserveTransformNodeID(transformNode.GetID())
        return summary
