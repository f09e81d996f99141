"""The panel every MultimodalSeg module shows, built from its task specification.

Slicer side (imports ``slicer``, ``qt``). The shared layout is ``Resources/UI/MultimodalSeg.ui``; the input
selectors (one per role of the task) and the registration tabs (one per non-reference input) are added here from
``multimodalseg.tasks``. The work (export -> backend -> import) is the module logic's (``Logic.TaskLogicMixin``),
which scripts call the same way; decisions live in plain-Python helpers: ``Settings`` (what is stored,
auto-assignment), ``Command`` (the backend command), ``Suv`` (the PET SUV fields), ``Results`` (what a result
becomes).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import qt
import slicer
import vtk
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task
from slicer.util import VTKObservationMixin

from MultimodalSegLib import Command, Models
from MultimodalSegLib.LandmarkPanel import LandmarkPanel
from MultimodalSegLib.Logic import RESOURCES_DIR, SegmentResult, backendEnvironment, backendPython, suvValuesFromVolume
from MultimodalSegLib.Runner import CANCELED, SUCCEEDED, BackendRunner, RunResult
from MultimodalSegLib.Settings import (
    DEVICE_ITEMS,
    INPUT_REFERENCE_PREFIX,
    PanelSettings,
    autoAssign,
    chosenFolder,
    modalityItems,
    registrationTabTitle,
    roleLabel,
    roleToolTip,
    skullStripItems,
)
from MultimodalSegLib.SlicerProcess import QtBackendProcess
from MultimodalSegLib.Suv import TAGS as SUV_TAGS
from MultimodalSegLib.Suv import SuvValues


class TaskPanel(VTKObservationMixin):
    """Inputs, registration, model and options, Apply/Cancel, progress, log, result and save-for-training.

    Args:
        taskId: a task id of ``multimodalseg.tasks``.
        parentLayout: the module widget's layout.
        logic: the module's logic (``Logic.TaskLogicMixin``: owner of the parameter node, does the work).
    """

    def __init__(self, taskId: str, parentLayout, logic) -> None:
        VTKObservationMixin.__init__(self)
        self.task = get_task(taskId)
        self.logic = logic
        self.parameterNode = None
        self.inputSelectors: dict[str, object] = {}
        self.landmarkPanels: dict[str, LandmarkPanel] = {}
        self._updatingGui = False
        self.active = False  # the module is shown (enter/exit): only then a new scene gets a parameter node
        self._clearedRoles: set[str] = set()  # inputs the user emptied: auto-assignment leaves them empty

        uiWidget = slicer.util.loadUI(os.path.join(RESOURCES_DIR, "UI", "MultimodalSeg.ui"))
        parentLayout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.outputSegmentationSelector.setMRMLScene(slicer.mrmlScene)
        self.ui.taskDescriptionLabel.text = self.task.description
        self.ui.referenceHintLabel.visible = len(self.task.inputs) > 1
        self.buildInputSelectors()
        self.buildRegistrationTabs()
        self.buildOptions()
        self.buildSuvFields()

        self.modelRunner = BackendRunner(QtBackendProcess, onLog=self.log, onFinished=self.onModelImported)

        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.openCacheButton.connect("clicked(bool)", self.onOpenCache)
        self.ui.saveForTrainingButton.connect("clicked(bool)", self.onSaveForTraining)
        for widget, signal in ((self.ui.modelComboBox, "currentIndexChanged(int)"),
                               (self.ui.deviceComboBox, "currentIndexChanged(int)"),
                               (self.ui.gpuIndexSpinBox, "valueChanged(int)"),
                               (self.ui.modalityComboBox, "currentIndexChanged(int)"),
                               (self.ui.skullStripComboBox, "currentIndexChanged(int)"),
                               (self.ui.ttaCheckBox, "toggled(bool)"),
                               (self.ui.quickCheckBox, "toggled(bool)"),
                               (self.ui.trainingFolderButton, "directoryChanged(QString)")):
            widget.connect(signal, self.updateParameterNodeFromGui)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.initializeParameterNode()

    def enter(self) -> None:
        self.active = True
        if self.parameterNode is None:
            self.initializeParameterNode()

    def exit(self) -> None:
        self.active = False

    # -- building the panel from the task --------------------------------------------------------------------

    def buildInputSelectors(self) -> None:
        form = self.ui.inputsFrame.layout()
        for spec in self.task.inputs:
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.selectNodeUponCreation = False
            selector.addEnabled = False
            selector.removeEnabled = False
            selector.noneEnabled = True
            selector.showHidden = False
            selector.showChildNodeTypes = False
            selector.setMRMLScene(slicer.mrmlScene)
            selector.setToolTip(roleToolTip(self.task, spec.role))
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGui)
            label = qt.QLabel(roleLabel(self.task, spec.role))
            if spec.reference:
                label.setStyleSheet("font-weight: bold")
            form.addRow(label, selector)
            self.inputSelectors[spec.role] = selector

    def buildRegistrationTabs(self) -> None:
        moving = [spec for spec in self.task.inputs if not spec.reference]
        self.ui.registrationCollapsibleButton.visible = bool(moving)
        for spec in moving:
            panel = LandmarkPanel(self.task, spec.role, None, self.volumeForRole)
            self.ui.registrationTabWidget.addTab(panel.widget, registrationTabTitle(self.task, spec.role))
            self.landmarkPanels[spec.role] = panel

    def buildOptions(self) -> None:
        for kind, text in DEVICE_ITEMS:
            self.ui.deviceComboBox.addItem(text, kind)
        modalities = modalityItems(self.task)
        self.ui.modalityLabel.visible = bool(modalities)
        self.ui.modalityComboBox.visible = bool(modalities)
        for value, text in modalities:
            self.ui.modalityComboBox.addItem(text, value)
        stripping = skullStripItems(self.task)
        self.ui.skullStripLabel.visible = bool(stripping)
        self.ui.skullStripComboBox.visible = bool(stripping)
        for value, text in stripping:
            self.ui.skullStripComboBox.addItem(text, value)
        self.refreshModels()

    def hasPet(self) -> bool:
        return "pet" in self.task.roles

    def buildSuvFields(self) -> None:
        self.ui.suvCollapsibleButton.visible = self.hasPet()
        if not self.hasPet():
            return
        self.ui.suvFromDicomButton.connect("clicked(bool)", self.onSuvFromDicom)
        self.ui.suvAlreadyCheckBox.connect("toggled(bool)", self.updateSuvEnabled)
        self.inputSelectors["pet"].connect("currentNodeChanged(vtkMRMLNode*)", self.onPetChanged)
        self.ui.suvSourceLabel.text = "Enter the values, or select a PET loaded from DICOM."

    def updateSuvEnabled(self, *_args) -> None:
        enabled = not self.ui.suvAlreadyCheckBox.checked
        for widget in (self.ui.suvWeightSpinBox, self.ui.suvDoseSpinBox, self.ui.suvInjectionTimeLineEdit,
                       self.ui.suvScanTimeLineEdit):
            widget.enabled = enabled

    def onPetChanged(self, node) -> None:
        if node is not None and suvValuesFromVolume(node) is not None:
            self.onSuvFromDicom()

    def onSuvFromDicom(self, *_args) -> None:
        values = suvValuesFromVolume(self.volumeForRole("pet"))
        if values is None:
            self.ui.suvSourceLabel.text = "The selected PET did not come from the DICOM database: enter the values."
            return
        self.ui.suvWeightSpinBox.value = values.weightKg or 0.0
        self.ui.suvDoseSpinBox.value = values.doseMBq or 0.0
        self.ui.suvInjectionTimeLineEdit.text = values.injectionTime
        self.ui.suvScanTimeLineEdit.text = values.scanTime
        self.ui.suvAlreadyCheckBox.checked = values.alreadySuv
        absent = [SUV_TAGS[key] for key, value in (("weight", values.weightKg), ("dose", values.doseMBq),
                                                     ("injection", values.injectionTime), ("scan", values.scanTime))
                  if not value]
        self.ui.suvSourceLabel.text = ("From the PET's DICOM tags." if not absent or values.alreadySuv
                                       else "From DICOM; missing " + ", ".join(absent) + ": enter them.")

    def suvValues(self) -> SuvValues | None:
        """The SUV fields (None for tasks without PET). Zero means "not entered"."""
        if not self.hasPet():
            return None
        return SuvValues(weightKg=float(self.ui.suvWeightSpinBox.value) or None,
                         doseMBq=float(self.ui.suvDoseSpinBox.value) or None,
                         injectionTime=str(self.ui.suvInjectionTimeLineEdit.text).strip(),
                         scanTime=str(self.ui.suvScanTimeLineEdit.text).strip(),
                         alreadySuv=bool(self.ui.suvAlreadyCheckBox.checked), source="panel")

    def refreshModels(self) -> None:
        combo = self.ui.modelComboBox
        current = combo.currentData
        combo.blockSignals(True)
        combo.clear()
        try:
            choices = Models.modelChoices(self.task.id)
        except UserError as exc:
            choices = []
            self.setStatus(str(exc), error=True)
        for index, choice in enumerate(choices):
            combo.addItem(choice.text, choice.modelId)
            combo.setItemData(index, choice.toolTip, qt.Qt.ToolTipRole)
        combo.setCurrentIndex(max(combo.findData(current), 0) if current is not None else 0)
        combo.blockSignals(False)

    def volumeForRole(self, role: str):
        selector = self.inputSelectors.get(role)
        return selector.currentNode() if selector is not None else None

    # -- parameter node ----------------------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        self.autoAssignInputs()

    def setParameterNode(self, parameterNode) -> None:
        if self.parameterNode is not None:
            self.removeObserver(self.parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)
        self.parameterNode = parameterNode
        if parameterNode is not None:
            self.addObserver(parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)
        for panel in self.landmarkPanels.values():
            panel.setParameterNode(parameterNode)
        self.updateGuiFromParameterNode()

    def updateGuiFromParameterNode(self, *_args) -> None:
        if self.parameterNode is None:
            return
        self._updatingGui = True
        try:
            p = self.parameterNode
            for role, selector in self.inputSelectors.items():
                selector.setCurrentNode(p.GetNodeReference(INPUT_REFERENCE_PREFIX + role))
            names = {name: p.GetParameter(name) for name in PanelSettings().toParameters()}
            settings = PanelSettings.fromParameters(names)
            self.ui.modelComboBox.setCurrentIndex(max(self.ui.modelComboBox.findData(settings.model), 0))
            self.ui.deviceComboBox.setCurrentIndex(max(self.ui.deviceComboBox.findData(settings.device), 0))
            self.ui.gpuIndexSpinBox.value = settings.gpuIndex
            self.ui.gpuIndexSpinBox.enabled = settings.device == "gpu"
            self.ui.modalityComboBox.setCurrentIndex(max(self.ui.modalityComboBox.findData(settings.modality), 0))
            strip = self.ui.skullStripComboBox
            strip.setCurrentIndex(max(strip.findData(settings.skullStrip), 0))
            self.ui.ttaCheckBox.checked = settings.tta
            self.ui.quickCheckBox.checked = settings.quick
            if settings.trainingFolder:
                self.ui.trainingFolderButton.directory = settings.trainingFolder
        finally:
            self._updatingGui = False
        for panel in self.landmarkPanels.values():  # e.g. a loaded scene's point lists and transforms
            panel.updateGuiFromParameterNode()

    def currentSettings(self) -> PanelSettings:
        return PanelSettings(
            model=self.ui.modelComboBox.currentData or "",
            device=self.ui.deviceComboBox.currentData or "auto",
            gpuIndex=int(self.ui.gpuIndexSpinBox.value),
            tta=bool(self.ui.ttaCheckBox.checked),
            quick=bool(self.ui.quickCheckBox.checked),
            modality=(self.ui.modalityComboBox.currentData or "") if self.task.modalities else "",
            skullStrip=(self.ui.skullStripComboBox.currentData or "auto") if self.task.skull_strip else "",
            trainingFolder=chosenFolder(self.ui.trainingFolderButton.directory),
        )

    def updateParameterNodeFromGui(self, *_args) -> None:
        if self._updatingGui or self.parameterNode is None:
            return
        p = self.parameterNode
        wasModifying = p.StartModify()
        for role, selector in self.inputSelectors.items():
            before = p.GetNodeReferenceID(INPUT_REFERENCE_PREFIX + role)
            if before and not selector.currentNodeID:
                self._clearedRoles.add(role)
            elif selector.currentNodeID:
                self._clearedRoles.discard(role)
            p.SetNodeReferenceID(INPUT_REFERENCE_PREFIX + role, selector.currentNodeID)
        settings = self.currentSettings()
        for name, value in settings.toParameters().items():
            p.SetParameter(name, value)
        p.EndModify(wasModifying)
        self.ui.gpuIndexSpinBox.enabled = settings.device == "gpu"

    def autoAssignInputs(self) -> None:
        """Fill empty input selectors with volumes whose names match the role (e.g. ``*_t1ce`` -> T1ce)."""
        volumes = [(n.GetID(), n.GetName()) for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                   if not n.IsA("vtkMRMLLabelMapVolumeNode")]
        current = {role: s.currentNodeID or None for role, s in self.inputSelectors.items()}
        for role, nodeId in autoAssign(self.task, volumes, current, self._clearedRoles).items():
            if nodeId and not current.get(role):
                self.inputSelectors[role].setCurrentNodeID(nodeId)

    def onNodeAdded(self, _caller, _event) -> None:
        # Volumes are named after their file once loading completes; assign after the event loop settles.
        qt.QTimer.singleShot(0, self.autoAssignInputs)

    def onSceneStartClose(self, _caller, _event) -> None:
        self.logic.cancel()
        self.setParameterNode(None)
        self._clearedRoles.clear()  # an input emptied in the old scene is filled in again in the next one

    def onSceneEndClose(self, _caller, _event) -> None:
        # Only the module on screen makes a parameter node for the new scene; the others make theirs on enter().
        if self.active:
            self.initializeParameterNode()

    # -- status, log, progress -----------------------------------------------------------------------------------

    def log(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)
        logging.info(f"MultimodalSeg: {line}")

    def setStatus(self, text: str, error: bool = False) -> None:
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #c0392b" if error else "")
        if error:
            self.log(f"Error: {text}")

    def onProgress(self, fraction: float, stage: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.progressBar.format = f"{stage} %p%" if stage else "%p%"

    def setRunning(self, running: bool) -> None:
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.applyButton.toolTip = ("Stop the backend; no result is created." if running
                                       else "Run the segmentation in the background; click again to cancel.")
        for widget in (self.ui.inputsCollapsibleButton, self.ui.modelCollapsibleButton,
                       self.ui.saveForTrainingButton):
            widget.enabled = not running

    # -- apply / cancel ------------------------------------------------------------------------------------------

    def selectedInputs(self) -> dict[str, object]:
        return {role: selector.currentNode() for role, selector in self.inputSelectors.items()}

    def onApply(self) -> None:
        if self.logic.running:
            self.logic.cancel()
            return
        try:
            settings = self.currentSettings()
            self.setStatus("Exporting the inputs...")
            self.logic.segment(
                self.selectedInputs(), model=settings.model or None,
                device=Command.deviceArgument(settings.device, settings.gpuIndex), tta=settings.tta,
                quick=settings.quick, modality=settings.modality or None, suv=self.suvValues(),
                skullStrip=settings.skullStrip or None, onProgress=self.onProgress, onLog=self.log,
                onFinished=self.onSegmentFinished, wait=False)
        except UserError as exc:
            self.setStatus(str(exc), error=True)
            return
        except Exception as exc:  # a slot: PythonQt would print and swallow it
            logging.exception("MultimodalSeg: starting the backend failed")
            self.setStatus(f"Could not start: {exc}", error=True)
            return
        self.setRunning(True)
        self.setStatus(f"Segmenting ({self.task.title})...")

    def onSegmentFinished(self, result: SegmentResult) -> None:
        self.setRunning(False)
        if result.status == CANCELED:
            self.ui.progressBar.value = 0
            self.setStatus("Canceled; no result was created.")
            return
        if result.status != SUCCEEDED:
            self.setStatus(f"Segmentation failed: {result.message}", error=True)
            return
        self.ui.outputSegmentationSelector.setCurrentNode(result.segmentation)
        for warning in result.warnings:
            self.log(f"Warning: {warning}")
        self.setStatus(result.message + (f" Warning: {result.warnings[-1]}" if result.warnings else ""))

    # -- models ---------------------------------------------------------------------------------------------------

    def onImportModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), "Import a MultimodalSeg model bundle", "",
                                              "Model bundles (*.pt)")
        if not path or self.modelRunner.running:
            return
        sha256 = None
        if not Path(f"{path}.sha256").is_file():  # the checksum must come from the model's publisher
            sha256 = qt.QInputDialog.getText(slicer.util.mainWindow(), "Model checksum",
                                             f"No {Path(path).name}.sha256 file beside the bundle.\n"
                                             "Enter the sha256 its publisher gave (64 hex digits):")
            if not sha256:
                return
        try:
            command = Command.buildImportModelCommand(backendPython(), path, sha256)
        except UserError as exc:
            self.setStatus(str(exc), error=True)
            return
        self.setStatus(f"Importing {Path(path).name} (checking its sha256)...")
        self.modelRunner.start(command, environment=backendEnvironment())

    def onModelImported(self, result: RunResult) -> None:
        if result.status == SUCCEEDED:
            self.refreshModels()
            self.setStatus("Model imported into the cache.")
        else:
            self.setStatus(f"Model import failed: {result.message}", error=True)

    def onOpenCache(self) -> None:
        folder = Models.cacheFolder()
        folder.mkdir(parents=True, exist_ok=True)
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(folder)))

    # -- save for training ---------------------------------------------------------------------------------------

    def onSaveForTraining(self) -> None:
        segmentation = self.ui.outputSegmentationSelector.currentNode()
        settings = self.currentSettings()
        inputs = self.selectedInputs()
        try:
            if segmentation is None:
                raise UserError("select the (edited) segmentation to save")
            with slicer.util.WaitCursor():
                saved, unknown = self.logic.saveForTraining(segmentation, inputs, settings.trainingFolder,
                                                            modality=settings.modality or None)
        except UserError as exc:
            self.setStatus(str(exc), error=True)
            return
        except OSError as exc:  # e.g. a read-only folder: say so in the panel, not only in the console
            self.setStatus(f"Saving the training case failed: {exc}", error=True)
            return
        if unknown:
            self.log(f"Segments not saved (no {self.task.title} label of that name): {', '.join(unknown)}")
        self.setStatus(f"Saved training case {saved.caseId} in {saved.root}.")

    def cleanup(self) -> None:
        self.logic.cancel()
        for panel in self.landmarkPanels.values():
            panel.cleanup()
        self.removeObservers()

