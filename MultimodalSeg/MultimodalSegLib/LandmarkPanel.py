"""Landmark registration of one non-reference input onto the reference input, live in Slicer's process.

Slicer side (imports ``slicer``, ``qt``, ``vtk``). The fit and its errors come from ``Landmarks.summarizeFit``
(``multimodalseg.registration``, no torch). Coordinates: fixed points are read in world RAS; moving points in the
point list's own (local) RAS, because the moving list is placed under the same transform as the moving volume:
a new moving point clicked on the transformed volume then lands at the right place in the moving image, and the
fit maps local moving points onto fixed points, exactly what the transform's "to parent" direction means.
"""

from __future__ import annotations

import os

import numpy as np
import qt
import slicer
from multimodalseg.tasks import TaskSpec
from slicer.util import VTKObservationMixin

from MultimodalSegLib.Landmarks import MODES, FitSummary, summarizeFit
from MultimodalSegLib.Settings import landmarkReferencePrefix, pointListLabels
from MultimodalSegLib.Transforms import setFitOnTransformNode

UI_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources", "UI")

POINT_EVENTS = (
    slicer.vtkMRMLMarkupsNode.PointAddedEvent,
    slicer.vtkMRMLMarkupsNode.PointRemovedEvent,
    slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
    slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
    slicer.vtkMRMLMarkupsNode.PointPositionUndefinedEvent,
)


def definedPoints(pointListNode, world: bool) -> np.ndarray:
    """(N, 3) RAS positions of the list's defined control points (placed, not preview or skipped)."""
    points = []
    if pointListNode is not None:
        for i in range(pointListNode.GetNumberOfControlPoints()):
            if pointListNode.GetNthControlPointPositionStatus(i) != slicer.vtkMRMLMarkupsNode.PositionDefined:
                continue
            p = [0.0, 0.0, 0.0]
            if world:
                pointListNode.GetNthControlPointPositionWorld(i, p)
            else:
                pointListNode.GetNthControlPointPosition(i, p)
            points.append(p)
    return np.array(points, float).reshape(-1, 3)


class LandmarkPanel(VTKObservationMixin):
    """The registration tab of one moving input.

    Args:
        task: the task specification.
        role: the moving input's role.
        parameterNode: the module's parameter node (selections and mode survive scene save/load).
        volumeForRole: role -> currently selected volume node (or None).
    """

    def __init__(self, task: TaskSpec, role: str, parameterNode, volumeForRole) -> None:
        VTKObservationMixin.__init__(self)
        self.task, self.role = task, role
        self.parameterNode = parameterNode
        self.volumeForRole = volumeForRole
        self.prefix = landmarkReferencePrefix(role)
        self._observedPointLists: list = []
        self._interacting = False
        self._updatingGui = False

        self.widget = slicer.util.loadUI(os.path.join(UI_DIR, "LandmarkPanel.ui"))
        self.ui = slicer.util.childWidgetVariables(self.widget)
        self.widget.setMRMLScene(slicer.mrmlScene)
        for selector in (self.ui.fixedPointsSelector, self.ui.movingPointsSelector, self.ui.transformSelector):
            selector.setMRMLScene(slicer.mrmlScene)
        self.ui.fixedPointsSelector.baseName = f"{task.input(task.reference_role).title} points"
        self.ui.movingPointsSelector.baseName = f"{task.input(role).title} points"
        self.ui.transformSelector.baseName = f"{task.input(role).title} to {task.input(task.reference_role).title}"
        for placeWidget in (self.ui.fixedPlaceWidget, self.ui.movingPlaceWidget):
            placeWidget.setMRMLScene(slicer.mrmlScene)
            placeWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceMultipleMarkups
        self.ui.fixedPointsLabel.text, self.ui.movingPointsLabel.text = pointListLabels(task, role)
        for mode, text in MODES:
            self.ui.modeComboBox.addItem(text, mode)
        self.ui.pairsTableWidget.horizontalHeader().setStretchLastSection(True)

        # Many point events arrive per mouse move: recompute once per burst.
        self.timer = qt.QTimer()
        self.timer.setSingleShot(True)
        self.timer.setInterval(30)
        self.timer.connect("timeout()", self.recompute)

        self.ui.fixedPointsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onPointListsChanged)
        self.ui.movingPointsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onPointListsChanged)
        self.ui.transformSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSettingsChanged)
        self.ui.modeComboBox.connect("currentIndexChanged(int)", self.onModeChanged)
        self.ui.liveUpdateCheckBox.connect("toggled(bool)", self.onSettingsChanged)
        self.ui.computeButton.connect("clicked(bool)", self.recompute)
        self.ui.hardenButton.connect("clicked(bool)", self.onHarden)
        self.ui.landmarkRegistrationButton.connect("clicked(bool)", self.onOpenLandmarkRegistration)
        self.updateGuiFromParameterNode()

    # -- parameter node --------------------------------------------------------------------------------------

    def setParameterNode(self, parameterNode) -> None:
        self.parameterNode = parameterNode
        self.updateGuiFromParameterNode()

    def updateGuiFromParameterNode(self) -> None:
        if self.parameterNode is None:
            return
        self._updatingGui = True
        try:
            p = self.parameterNode
            self.ui.fixedPointsSelector.setCurrentNode(p.GetNodeReference(self.prefix + "fixed"))
            self.ui.movingPointsSelector.setCurrentNode(p.GetNodeReference(self.prefix + "moving"))
            self.ui.transformSelector.setCurrentNode(p.GetNodeReference(self.prefix + "transform"))
            index = self.ui.modeComboBox.findData(p.GetParameter(self.prefix + "mode") or "rigid")
            self.ui.modeComboBox.currentIndex = max(index, 0)
            self.ui.liveUpdateCheckBox.checked = p.GetParameter(self.prefix + "live") != "false"
        finally:
            self._updatingGui = False
        self.observePointLists()

    def onSettingsChanged(self, *_args) -> None:
        if self._updatingGui or self.parameterNode is None:
            return
        p = self.parameterNode
        wasModifying = p.StartModify()
        p.SetNodeReferenceID(self.prefix + "fixed", self.ui.fixedPointsSelector.currentNodeID)
        p.SetNodeReferenceID(self.prefix + "moving", self.ui.movingPointsSelector.currentNodeID)
        p.SetNodeReferenceID(self.prefix + "transform", self.ui.transformSelector.currentNodeID)
        p.SetParameter(self.prefix + "mode", self.mode)
        p.SetParameter(self.prefix + "live", "true" if self.ui.liveUpdateCheckBox.checked else "false")
        p.EndModify(wasModifying)

    def onModeChanged(self, *_args) -> None:
        self.onSettingsChanged()
        if not self._updatingGui:
            self.recompute()

    @property
    def mode(self) -> str:
        return self.ui.modeComboBox.currentData or "rigid"

    # -- point lists -----------------------------------------------------------------------------------------

    def onPointListsChanged(self, *_args) -> None:
        self.ui.fixedPlaceWidget.setCurrentNode(self.ui.fixedPointsSelector.currentNode())
        self.ui.movingPlaceWidget.setCurrentNode(self.ui.movingPointsSelector.currentNode())
        if self._updatingGui:  # restoring a saved scene: its transform is restored too, nothing to refit
            return
        self.onSettingsChanged()
        self.observePointLists()
        self.recompute()

    def observePointLists(self) -> None:
        for node in self._observedPointLists:
            self._observe(node, self.removeObserver)
        self._observedPointLists = [n for n in (self.ui.fixedPointsSelector.currentNode(),
                                                self.ui.movingPointsSelector.currentNode()) if n is not None]
        for node in self._observedPointLists:
            self._observe(node, self.addObserver)

    def _observe(self, node, method) -> None:
        # One callback per kind of event: VTK names every markups event "UserEvent" in the callback.
        for event in POINT_EVENTS:
            method(node, event, self.onPointChanged)
        method(node, slicer.vtkMRMLMarkupsNode.PointStartInteractionEvent, self.onPointStartInteraction)
        method(node, slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent, self.onPointEndInteraction)

    def onPointStartInteraction(self, caller, _event=None) -> None:
        self._interacting = caller is self.ui.movingPointsSelector.currentNode()

    def onPointEndInteraction(self, _caller=None, _event=None) -> None:
        self._interacting = False
        self.onPointChanged()

    def onPointChanged(self, _caller=None, _event=None) -> None:
        # While a moving point is dragged, its local position depends on the transform being refitted; wait for
        # the drag to end so the point stays under the mouse. Fixed points update live.
        if self.ui.liveUpdateCheckBox.checked and not self._interacting:
            self.timer.start()

    # -- fit and transform -----------------------------------------------------------------------------------

    def recompute(self, *_args) -> FitSummary:
        fixed = definedPoints(self.ui.fixedPointsSelector.currentNode(), world=True)
        moving = definedPoints(self.ui.movingPointsSelector.currentNode(), world=False)
        summary = summarizeFit(fixed, moving, self.mode)
        self.showSummary(summary)
        if summary.fit is not None:
            self.applyTransform(summary)
        return summary

    def showSummary(self, summary: FitSummary) -> None:
        table = self.ui.pairsTableWidget
        table.setRowCount(len(summary.rows))
        for r, row in enumerate(summary.rows):
            for c, text in enumerate(row.cells()):
                item = qt.QTableWidgetItem(text)
                item.setTextAlignment(qt.Qt.AlignRight | qt.Qt.AlignVCenter)
                table.setItem(r, c, item)
        self.ui.rmsLabel.text = summary.rmsText
        self.ui.messageLabel.text = summary.message
        self.ui.messageLabel.setStyleSheet("" if summary.fit is not None else "color: #b35900")

    def transformNode(self):
        node = self.ui.transformSelector.currentNode()
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTransformNode", self.ui.transformSelector.baseName)
            self.ui.transformSelector.setCurrentNode(node)
        return node

    def applyTransform(self, summary: FitSummary) -> None:
        """Set the fit on the transform node and put the moving volume and moving points under it."""
        node = self.transformNode()
        setFitOnTransformNode(node, summary.fit)
        for child in (self.volumeForRole(self.role), self.ui.movingPointsSelector.currentNode()):
            if child is not None and child.GetTransformNodeID() != node.GetID():
                child.SetAndObserveTransformNodeID(node.GetID())

    def onHarden(self) -> None:
        """Apply the transform permanently to the moving volume and its points (a thin-plate spline resamples)."""
        for child in (self.volumeForRole(self.role), self.ui.movingPointsSelector.currentNode()):
            if child is not None and child.GetParentTransformNode() is not None:
                with slicer.util.tryWithErrorDisplay("Hardening the transform failed.", waitCursor=True):
                    child.HardenTransform()
        self.ui.messageLabel.text = "Transform hardened into the moving volume and its points."

    def onOpenLandmarkRegistration(self) -> None:
        """Open Slicer's Landmark Registration module with the same fixed and moving volumes."""
        fixed = self.volumeForRole(self.task.reference_role)
        moving = self.volumeForRole(self.role)
        slicer.util.selectModule("LandmarkRegistration")
        widget = slicer.util.getModuleWidget("LandmarkRegistration")
        selectors = getattr(widget, "volumeDialogSelectors", None)
        if fixed is None or moving is None or not selectors:
            return  # the module's own volume dialog is open for the user to choose
        # Its entry dialog holds "Fixed" and "Moving" selectors; applying it creates the transform and layout.
        selectors["Fixed"].setCurrentNode(fixed)
        selectors["Moving"].setCurrentNode(moving)
        widget.onVolumeDialogApply()

    def cleanup(self) -> None:
        self.timer.stop()
        self.removeObservers()
