"""The modules' in-Slicer self-test: phantom -> landmark registration -> Apply (demo model) -> segment names and
Dice against the phantom's own label map.

Slicer side (imports ``slicer``). Written for the day it runs inside Slicer (``Reload and Test`` in developer mode,
or ctest through ``slicer_add_python_unittest``); Dice is computed by ``multimodalseg.metrics`` on the exported
label map, the same code as ``multimodalseg evaluate``.
"""

from __future__ import annotations

import os
import tempfile
import time

import slicer
from multimodalseg.metrics.evaluate import evaluate_files
from multimodalseg.tasks import get_task

from MultimodalSegLib import Samples, Scene


def registerWithPhantomLandmarks(panel, nodes: dict) -> None:
    """Fit each moving input to the reference from the phantom's landmark lists (rigid), as a user would."""
    task = panel.task
    fixed = nodes.get(f"landmarks:{task.reference_role}")
    for role, landmarkPanel in panel.landmarkPanels.items():
        moving = nodes.get(f"landmarks:{role}")
        if fixed is None or moving is None:
            continue
        landmarkPanel.ui.fixedPointsSelector.setCurrentNode(fixed)
        landmarkPanel.ui.movingPointsSelector.setCurrentNode(moving)
        summary = landmarkPanel.recompute()
        if summary.fit is None:
            raise AssertionError(f"landmark fit for {role} failed: {summary.message}")


def runTaskSelfTest(test, moduleName: str, taskId: str, minimumDice: float, metric: str = "mean",
                    timeoutSeconds: float = 900.0) -> dict:
    """Run the whole panel path on a phantom and assert segment names and Dice; returns the metrics.

    Args:
        test: the ``ScriptedLoadableModuleTest`` (assertions and ``delayDisplay``).
        moduleName: e.g. ``BrainTumor``.
        taskId: the module's task.
        minimumDice: the least Dice accepted.
        metric: ``mean`` (over labels), ``regions_mean`` (BraTS WT/TC/ET) or a label name.
    """
    task = get_task(taskId)
    test.delayDisplay(f"Making the {task.title} phantom")
    nodes = Samples.generateCaseBlocking(taskId)
    slicer.util.selectModule(moduleName)
    panel = slicer.util.getModuleWidget(moduleName).panel
    for role in task.roles:
        panel.inputSelectors[role].setCurrentNode(nodes[role])
    registerWithPhantomLandmarks(panel, nodes)

    test.delayDisplay("Segmenting with the default (demo) model")
    panel.onApply()
    test.assertTrue(panel.runner.running, f"the backend did not start: {panel.ui.statusLabel.text}")
    deadline = time.monotonic() + timeoutSeconds
    while panel.runner.running and time.monotonic() < deadline:
        slicer.app.processEvents()
        time.sleep(0.05)
    test.assertFalse(panel.runner.running, "the backend did not finish in time")
    segmentation = panel.ui.outputSegmentationSelector.currentNode()
    test.assertIsNotNone(segmentation, panel.ui.statusLabel.text)

    names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
    test.assertEqual(names, [label.name for label in task.labels])
    with tempfile.TemporaryDirectory() as folder:
        predicted, reference = os.path.join(folder, "pred.nrrd"), os.path.join(folder, "ref.nrrd")
        Scene.exportLabelsForTraining(task, segmentation, nodes[task.reference_role], predicted)
        test.assertTrue(slicer.util.exportNode(nodes["label"], reference, world=True))
        metrics = evaluate_files(predicted, reference, task=task)
    dice = metrics[metric]["dice"] if metric in ("mean", "regions_mean") else metrics["labels"][metric]["dice"]
    test.delayDisplay(f"{task.title}: Dice ({metric}) {dice:.3f}")
    test.assertGreaterEqual(dice, minimumDice)
    return metrics
