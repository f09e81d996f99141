"""From network output to a label map of training indices, and label volumes. No torch.

The task's post-processing hook (``TaskSpec.postprocess = "module:function"``) has the signature::

    fn(prediction: np.ndarray, task: TaskSpec, options: Mapping[str, Any]) -> np.ndarray

- ``prediction``: for ``output_kind == "regions"`` the sigmoid probabilities ``(R, Z, Y, X)`` float32, one channel
  per ``task.regions`` in that order; for ``"labels"`` the argmax map ``(Z, Y, X)`` of training indices (uint8 or
  uint16). Always on the network grid (network spacing, cropped to the foreground box): the cheap place.
- ``options``: ``threshold`` (0.5, for regions), ``spacing`` (network grid spacing, ITK order, mm),
  ``voxel_ml`` (volume of one network voxel in mL), ``modality`` (``"ct"``/``"mr"``/None).
- returns the ``(Z, Y, X)`` training-index map (0 background, ``LabelSpec.index`` otherwise).

For regions without a hook, :func:`regions_to_labels` applies the nested-region rule (BraTS WT ⊇ TC ⊇ ET -> ED,
NCR, ET). A hook may call it first and then add its own rule (e.g. BraTS: a small ET becomes NCR).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from multimodalseg.tasks.spec import TaskSpec

Hook = Callable[[np.ndarray, TaskSpec, Mapping[str, Any]], np.ndarray]


def index_dtype(task: TaskSpec) -> type:
    return np.uint8 if len(task.labels) <= np.iinfo(np.uint8).max else np.uint16


def regions_class_order(task: TaskSpec) -> list[tuple[int, int]]:
    """``(region channel, label index)`` pairs, painting order, for nested regions.

    Regions are painted from the largest to the smallest; each paints the one label that it holds and no smaller
    region holds (BraTS: WT -> ED, TC -> NCR, ET -> ET), which is nnU-Net's ``regions_class_order``.

    Raises:
        ValueError: regions that are not nested, or a region that does not single out one label; such a task
            needs its own hook.
    """
    sets = [(c, set(r.labels)) for c, r in enumerate(task.regions)]
    ordered = sorted(sets, key=lambda item: -len(item[1]))
    order = []
    for k, (channel, labels) in enumerate(ordered):
        smaller = [s for _, s in ordered[k + 1:]]
        if any(not s <= labels and s & labels for s in smaller):
            raise ValueError(f"task {task.id}: regions are not nested; give the task a postprocess hook")
        own = labels - set().union(*smaller) if smaller else labels
        if len(own) != 1:
            raise ValueError(f"task {task.id}: region {task.regions[channel].name} does not single out one label")
        order.append((channel, task.label(next(iter(own))).index))
    return order


def regions_to_labels(probabilities: np.ndarray, task: TaskSpec, threshold: float = 0.5) -> np.ndarray:
    """Sigmoid region probabilities ``(R, Z, Y, X)`` -> training-index map ``(Z, Y, X)`` (nested-region rule)."""
    if probabilities.shape[0] != len(task.regions):
        raise ValueError(f"expected {len(task.regions)} region channels, got {probabilities.shape[0]}")
    labels = np.zeros(probabilities.shape[1:], index_dtype(task))
    for channel, index in regions_class_order(task):
        labels[probabilities[channel] > threshold] = index
    return labels


def labels_to_regions(indices: np.ndarray, task: TaskSpec) -> np.ndarray:
    """Training-index map ``(Z, Y, X)`` -> binary region masks ``(R, Z, Y, X)`` bool (the inverse for nested tasks)."""
    return np.stack([np.isin(indices, [task.label(n).index for n in r.labels]) for r in task.regions])


def load_hook(task: TaskSpec) -> Hook | None:
    """The task's ``postprocess`` function, imported now; None when the task has none."""
    if not task.postprocess:
        return None
    module_name, _, attr = task.postprocess.partition(":")
    if not attr:
        raise ValueError(f"task {task.id}: postprocess must be 'module:function', got '{task.postprocess}'")
    return getattr(importlib.import_module(module_name), attr)


def apply(prediction: np.ndarray, task: TaskSpec, options: Mapping[str, Any]) -> np.ndarray:
    """Run the hook (or the default) and check what it returns."""
    hook = load_hook(task)
    if hook is not None:
        labels = np.asarray(hook(prediction, task, options))
    elif task.output_kind == "regions":
        labels = regions_to_labels(prediction, task, float(options.get("threshold", 0.5)))
    else:
        labels = prediction
    expected = prediction.shape[1:] if task.output_kind == "regions" else prediction.shape
    if labels.shape != expected or labels.dtype.kind not in "ui":
        raise ValueError(f"post-processing of {task.id} returned {labels.dtype} {labels.shape}, "
                         f"expected an integer map {expected}")
    if labels.size and int(labels.max()) > len(task.labels):
        raise ValueError(f"post-processing of {task.id} returned index {int(labels.max())} > {len(task.labels)}")
    return labels.astype(index_dtype(task), copy=False)


def volumes_ml(indices: np.ndarray, task: TaskSpec, voxel_ml: float) -> tuple[dict[str, float], dict[str, float]]:
    """Per-label and per-region volumes in mL of a training-index map (``voxel_ml`` = one voxel's volume)."""
    counts = np.bincount(indices.ravel(), minlength=len(task.labels) + 1)
    labels = {lab.name: round(float(counts[lab.index]) * voxel_ml, 3) for lab in task.labels}
    regions = {r.name: round(sum(labels[n] for n in r.labels), 3) for r in task.regions}
    return labels, regions
