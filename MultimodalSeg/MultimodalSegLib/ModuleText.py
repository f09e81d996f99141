"""Module titles, help and acknowledgement texts, written from the task specifications. Plain Python."""

from __future__ import annotations

from multimodalseg.tasks import get_task

CATEGORIES = ["Segmentation.MultimodalSeg"]
CONTRIBUTORS = ["MultimodalSeg contributors"]
HOMEPAGE = "https://github.com/multimodalseg/MultimodalSeg"
ACKNOWLEDGEMENT = (
    "MultimodalSeg builds on 3D Slicer, MONAI, PyTorch and SimpleITK. The demo models are small networks trained on "
    "synthetic data only and are not for clinical use."
)


def helpText(taskId: str) -> str:
    """The module's help: what it does, its inputs (reference marked), outputs, and how to run it."""
    task = get_task(taskId)
    inputs = ", ".join(f"{spec.title}{' (reference grid)' if spec.reference else ''}" for spec in task.inputs)
    labels = ", ".join(label.name for label in task.labels[:8]) + (" ..." if len(task.labels) > 8 else "")
    return (
        f"<p>{task.description}</p>"
        f"<p><b>Inputs:</b> {inputs}.<br><b>Output:</b> a segmentation with {len(task.labels)} segments "
        f"({labels}) named, coloured and coded (SNOMED CT) for DICOM SEG export.</p>"
        "<p>Select the inputs (volumes whose names match are picked automatically), register other inputs to the "
        "reference with landmark pairs if needed, choose the model and device, and click <i>Apply</i>. The model "
        "runs in a separate process; <i>Cancel</i> stops it. Edit the result in Segment Editor and use "
        "<i>Save for training</i> to add it to a training folder.</p>"
        f'<p>See the <a href="{HOMEPAGE}">MultimodalSeg documentation</a>. Try it with '
        f"<i>Sample Data &gt; {task.title} synthetic case</i>.</p>"
    )
