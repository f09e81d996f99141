"""``validate``: a model bundle on every labelled case of a dataset, through the inference predictor.

Each case goes through ``multimodalseg.inference.Predictor`` (exactly what users run: crop, normalisation,
sliding window, post-processing, labels on the reference grid) and is scored with ``multimodalseg.metrics``
against its label map, brought to the task's own values on the reference grid (``preprocessing.load_label``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from multimodalseg import io
from multimodalseg import preprocessing as prep
from multimodalseg.metrics import evaluate_images, json_ready
from multimodalseg.tasks.spec import TaskSpec

from training.datasets import Case


def validate_bundle(bundle_path: str | os.PathLike, task: TaskSpec, cases: Sequence[Case], *,
                    device: str = "cpu", tta: bool = False) -> dict[str, Any]:
    """Per-case metrics and their means over cases (Dice per label and region, HD95 per label).

    Returns:
        ``{"model", "cases": [{"id", "dice_mean", "dice": {name: value}, "hd95": {...}}],
        "dice": {name: mean over cases}, "dice_mean"}``; undefined values are None.
    """
    from multimodalseg.inference import Predictor

    predictor = Predictor.from_model(task.id, bundle_path, device=device, tta=tta)
    rows = []
    for case in cases:
        if not case.labelled:
            continue
        images = case.read_inputs()
        result = predictor.predict(images, modality=case.modality)
        reference = images[task.reference_role]
        indices = prep.load_label(task, case.label, reference, case.convention)
        ref = io.copy_geometry(prep.indices_to_values(indices, task), reference)
        metrics = evaluate_images(result.labels, ref, task=task, pred_path=f"{case.id} prediction",
                                  ref_path=case.label)
        items = {**metrics["labels"], **metrics.get("regions", {})}
        rows.append({
            "id": case.id,
            "dice_mean": metrics["mean"]["dice"],
            "dice": {name: (m["dice"] if m["empty"] != "both" else math.nan) for name, m in items.items()},
            "hd95": {name: m["hd95"] for name, m in items.items()},
            "seconds": result.timings.get("total"),
        })
    names = list(rows[0]["dice"]) if rows else []
    dice = {n: _nanmean([r["dice"][n] for r in rows]) for n in names}
    return json_ready({
        "model": {"id": predictor.bundle.id, "version": predictor.meta.get("version"),
                  "path": os.fspath(predictor.bundle.path)},
        "task": task.id,
        "cases": rows,
        "dice": dice,
        "dice_mean": _nanmean([r["dice_mean"] for r in rows]),
    })


def format_validation(result: dict[str, Any]) -> str:
    """A fixed-width table: one row per case, Dice per label/region, and the mean row."""
    names = list(result["dice"])
    width = max([len(r["id"]) for r in result["cases"]] + [len("mean")])
    cols = [max(len(n), 6) for n in names]
    lines = [f"{'case':<{width}} {'mean':>6} " + " ".join(n.rjust(c) for n, c in zip(names, cols))]
    for row in [*result["cases"], {"id": "mean", "dice_mean": result["dice_mean"], "dice": result["dice"]}]:
        cells = " ".join(_cell(row["dice"].get(n), c) for n, c in zip(names, cols))
        lines.append(f"{row['id']:<{width}} {_cell(row['dice_mean'], 6)} {cells}")
    return "\n".join(lines)


def _cell(value: float | None, width: int) -> str:
    return "-".rjust(width) if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:{width}.3f}"


def _nanmean(values: list[float | None]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan
