"""The modules' in-Slicer self-test: the Sample Data case (``synth --held-out``, an anatomy the demo models were not
trained on) -> landmark registration -> segment (demo model) -> segment names and Dice against the case's own label
map. ``tests/backend/test_self_test_thresholds.py`` runs the same backend commands and checks that the shipped
models meet each module file's ``minimumDice``.

Slicer side (imports ``slicer``). It drives the module's logic, not its panel, so it needs no main window: it runs
with ``Slicer --no-main-window --python-script Testing/Python/RunSelfTests.py``, with ``--testing``, from "Reload
and Test" and from ctest (``slicer_add_python_unittest``). Under ``--testing`` Slicer installs no packages, so
the backend's dependencies must be installed beforehand; the test then fails at once, naming what is missing.
Dice is computed by ``multimodalseg.metrics`` on the exported label map, the same code as ``multimodalseg
evaluate``.
"""

from __future__ import annotations

import os
import tempfile

import slicer
from multimodalseg.metrics.evaluate import evaluate_files

from MultimodalSegLib import Install, Samples, Scene
from MultimodalSegLib.Logic import REQUIREMENTS


def registerWithSampleLandmarks(logic, nodes: dict) -> None:
    """Fit each moving input to the reference from the sample case's landmark lists (rigid), as a user would."""
    task = logic.task
    fixed = nodes.get(f"landmarks:{task.reference_role}")
    for role in task.roles:
        moving = nodes.get(f"landmarks:{role}")
        if role == task.reference_role or fixed is None or moving is None:
            continue
        logic.registerLandmarks(role, fixed, moving, nodes.get(role), mode="rigid")


def runTaskSelfTest(test, logic, minimumDice: float, metric: str = "mean", timeoutSeconds: float = 900.0) -> dict:
    """Run the whole path on the sample case through ``logic`` and assert segment names and Dice; returns the
    metrics.

    Args:
        test: the ``ScriptedLoadableModuleTest`` (assertions and ``delayDisplay``).
        logic: the module's logic (``Logic.TaskLogicMixin``).
        minimumDice: the least Dice accepted.
        metric: ``mean`` (over labels), ``regions_mean`` (BraTS WT/TC/ET) or a label name.
    """
    task = logic.task
    problem = Install.dependencyProblem(REQUIREMENTS)
    if problem:
        test.fail(f"the MultimodalSeg backend cannot run: {problem}. Install it first: open the module and click "
                  "Apply once in a Slicer started without --testing.")
    test.delayDisplay(f"Making the {task.title} synthetic case")
    nodes = Samples.generateCaseBlocking(task.id)
    registerWithSampleLandmarks(logic, nodes)

    test.delayDisplay("Segmenting with the default (demo) model")
    modality = task.modalities[0] if task.modalities else None  # the sample is the first modality's (CT)
    result = logic.segment({role: nodes[role] for role in task.roles if role in nodes}, modality=modality,
                           timeoutSeconds=timeoutSeconds)
    segmentation = result.segmentation
    test.assertIsNotNone(segmentation, result.message)

    names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
    test.assertEqual(names, [label.name for label in task.labels])
    with tempfile.TemporaryDirectory() as folder:
        predicted, reference = os.path.join(folder, "pred.nrrd"), os.path.join(folder, "ref.nrrd")
        Scene.exportLabelsForTraining(task, segmentation, nodes[task.reference_role], predicted)
        test.assertTrue(slicer.util.exportNode(nodes["label"], reference, Scene.freshProperties(), world=True))
        metrics = evaluate_files(predicted, reference, task=task)
    dice = metrics[metric]["dice"] if metric in ("mean", "regions_mean") else metrics["labels"][metric]["dice"]
    test.delayDisplay(f"{task.title}: Dice ({metric}) {dice:.3f}")
    test.assertGreaterEqual(dice, minimumDice)
    return metrics
