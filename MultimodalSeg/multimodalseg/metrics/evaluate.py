"""Metrics of a predicted label map against a reference label map, per label, per region and averaged."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from multimodalseg.errors import UserError
from multimodalseg.io import read_image, to_label_image
from multimodalseg.metrics.binary import BOTH_EMPTY, METRIC_KEYS, segmentation_metrics
from multimodalseg.tasks import TaskSpec

# Grid tolerances: NIfTI stores geometry as float32, so files written from one grid may differ by rounding.
SPACING_RTOL = 1e-4
ORIGIN_TOL_VOXELS = 1e-3  # of the smallest spacing
DIRECTION_TOL = 1e-4


def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def check_same_grid(pred: sitk.Image, ref: sitk.Image, pred_path: str | os.PathLike | None = None) -> None:
    """Raise a UserError naming ``pred_path`` unless size, spacing, origin and direction match the reference's.

    Evaluation never resamples: a prediction on another grid is a mistake upstream (segment writes on the
    reference input's grid), and resampling a label map would change the very voxels being scored.
    """
    problem = None
    if pred.GetSize() != ref.GetSize():
        problem = f"size {'x'.join(map(str, pred.GetSize()))} vs {'x'.join(map(str, ref.GetSize()))}"
    elif not np.allclose(pred.GetSpacing(), ref.GetSpacing(), rtol=SPACING_RTOL, atol=0):
        problem = f"spacing {_fmt(pred.GetSpacing())} vs {_fmt(ref.GetSpacing())} mm"
    elif np.abs(np.subtract(pred.GetOrigin(), ref.GetOrigin())).max() > ORIGIN_TOL_VOXELS * min(ref.GetSpacing()):
        problem = f"origin {_fmt(pred.GetOrigin())} vs {_fmt(ref.GetOrigin())} mm"
    elif np.abs(np.subtract(pred.GetDirection(), ref.GetDirection())).max() > DIRECTION_TOL:
        problem = f"direction {_fmt(pred.GetDirection())} vs {_fmt(ref.GetDirection())}"
    if problem:
        raise UserError(f"grid differs from the reference: {problem}", pred_path or "prediction")


def _as_labels(image: sitk.Image, name: str | os.PathLike) -> sitk.Image:
    """The image itself when it is unsigned 8/16-bit already (no copy), else checked and cast to UInt16."""
    if image.GetPixelID() in (sitk.sitkUInt8, sitk.sitkUInt16):
        return image
    return to_label_image(image, name)


def _present_values(objects: list[tuple[slice, ...] | None]) -> list[int]:
    return [0] + [i + 1 for i, box in enumerate(objects) if box is not None]


def _label_sets(
    task: TaskSpec | None, labels: Sequence[int] | None, convention: str | None, present: set[int]
) -> dict[str, tuple[int, ...]]:
    """Display name -> the label-map values that make up that label."""
    if task is None:
        if convention is not None:
            raise UserError("a label convention needs a task (--task)")
        values = sorted(present - {0}) if labels is None else [int(v) for v in labels]
        if any(v <= 0 for v in values):
            raise UserError(f"labels to evaluate must be positive (0 is the background), got {values}")
        return {str(v): (v,) for v in values}
    table = task.values(convention)
    wanted = None if labels is None else {int(v) for v in labels}
    if wanted is not None and wanted - set(table.values()):
        unknown = ", ".join(map(str, sorted(wanted - set(table.values()))))
        raise UserError(f"labels {unknown} are not in the {task.id} label table")
    sets = {}
    for lab in task.labels:
        value = table[lab.name]
        if wanted is None or value in wanted:
            # Aliases (MM-WHS 421 -> 420) belong to the task's own convention only.
            aliases = tuple(a for a, t in task.label_aliases.items() if t == value) if convention is None else ()
            sets[lab.name] = (value, *aliases)
    return sets


def _metrics_of(
    pred: np.ndarray,
    ref: np.ndarray,
    values: tuple[int, ...],
    boxes: tuple[list, list],
    spacing: tuple[float, ...],
) -> dict[str, Any]:
    """Metrics of the mask ``isin(values)``, computed inside the union of the values' bounding boxes."""
    found = [objs[v - 1] for objs in boxes for v in values if 0 < v <= len(objs) and objs[v - 1] is not None]
    if not found:
        return segmentation_metrics(np.zeros((1,) * pred.ndim, bool), np.zeros((1,) * pred.ndim, bool), spacing)
    box = tuple(slice(min(b[a].start for b in found), max(b[a].stop for b in found)) for a in range(pred.ndim))
    p, r = pred[box], ref[box]
    mp = p == values[0] if len(values) == 1 else np.isin(p, values)
    mr = r == values[0] if len(values) == 1 else np.isin(r, values)
    return segmentation_metrics(mp, mr, spacing, crop=False)


def mean_over_labels(per_label: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, float], dict[str, int]]:
    """Mean of each metric over labels, and how many labels each mean averages.

    Labels empty in both masks are left out (they say nothing about this segmentation, as in nnU-Net and MONAI's
    ``ignore_empty``); NaN values (undefined: distances with one mask empty, and the like) are left out too. With
    no label left at all (both label maps empty), the mean is the both-empty score: Dice 1, distances 0.
    """
    counted = [m for m in per_label.values() if m["empty"] != "both"]
    if not counted:
        return dict(BOTH_EMPTY), {k: 0 for k in METRIC_KEYS}
    means, counts = {}, {}
    for key in METRIC_KEYS:
        values = [float(m[key]) for m in counted if not math.isnan(m[key])]
        means[key] = float(np.mean(values)) if values else float("nan")
        counts[key] = len(values)
    return means, counts


def evaluate_images(
    pred: sitk.Image,
    ref: sitk.Image,
    *,
    task: TaskSpec | None = None,
    labels: Sequence[int] | None = None,
    convention: str | None = None,
    pred_path: str | os.PathLike | None = None,
    ref_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Per-label (and, for tasks with regions, per-region) metrics of a prediction against a reference.

    Args:
        pred, ref: label maps on the same grid (checked; never resampled).
        task: gives label names, aliases, regions and the allowed values (others are a UserError).
        labels: label-map values to evaluate; default: the task's labels, or every nonzero value of either map.
        convention: the task's label convention the two files use (``brats2021``, ``brats2023``, ``msd``).
        pred_path, ref_path: file names for error messages.

    Returns:
        ``labels``: name (task) or value (as a string) -> metrics (see ``segmentation_metrics``);
        ``regions``: the same per region (tasks with regions only); ``mean`` and ``mean_count``: averages over
        labels and the number of labels in each; ``regions_mean``/``regions_mean_count`` likewise;
        ``empty``: label names empty in ``both`` maps, only in ``pred``, only in ``ref``; ``spacing`` (x, y, z) mm.
    """
    pred_name, ref_name = pred_path or "prediction", ref_path or "reference"
    check_same_grid(pred, ref, pred_name)
    # Keep the cast images alive: an array view of a temporary image reads freed memory.
    pred_labels, ref_labels = _as_labels(pred, pred_name), _as_labels(ref, ref_name)
    pred_arr, ref_arr = sitk.GetArrayViewFromImage(pred_labels), sitk.GetArrayViewFromImage(ref_labels)
    boxes = (ndi.find_objects(pred_arr), ndi.find_objects(ref_arr))  # one pass each: box per value, value-1
    present_pred, present_ref = _present_values(boxes[0]), _present_values(boxes[1])
    if task is not None:
        task.check_label_values(present_pred, os.fspath(pred_name), convention)
        task.check_label_values(present_ref, os.fspath(ref_name), convention)
    label_sets = _label_sets(task, labels, convention, set(present_pred) | set(present_ref))
    spacing = tuple(float(s) for s in reversed(ref.GetSpacing()))  # array axis order (z, y, x)

    per_label = {name: _metrics_of(pred_arr, ref_arr, vals, boxes, spacing) for name, vals in label_sets.items()}
    mean, count = mean_over_labels(per_label)
    result: dict[str, Any] = {
        "task": task.id if task else None,
        "convention": convention,
        "spacing": list(ref.GetSpacing()),
        "labels": per_label,
        "mean": mean,
        "mean_count": count,
        "empty": {side: [n for n, m in per_label.items() if m["empty"] == side] for side in ("both", "pred", "ref")},
    }
    if task is not None and task.regions:
        all_sets = _label_sets(task, None, convention, set())
        regions = {
            region.name: _metrics_of(
                pred_arr, ref_arr, tuple(v for name in region.labels for v in all_sets[name]), boxes, spacing
            )
            for region in task.regions
        }
        result["regions"] = regions
        result["regions_mean"], result["regions_mean_count"] = mean_over_labels(regions)
    return result


def evaluate_files(
    pred_path: str | os.PathLike,
    ref_path: str | os.PathLike,
    *,
    task: TaskSpec | None = None,
    labels: Sequence[int] | None = None,
    convention: str | None = None,
) -> dict[str, Any]:
    """Read two label-map files (UserError on bad files) and run :func:`evaluate_images`."""
    ref = read_image(ref_path, label=True)
    pred = read_image(pred_path, label=True)
    return evaluate_images(pred, ref, task=task, labels=labels, convention=convention,
                           pred_path=pred_path, ref_path=ref_path)


def json_ready(value: Any) -> Any:
    """A copy with NaN and infinities as None, so ``json.dumps`` writes ``null`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
