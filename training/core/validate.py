"""``validate``: a model bundle on every labelled case of a dataset, through the inference predictor.

Each case goes through ``multimodalseg.inference.Predictor`` (exactly what users run: crop, normalisation,
sliding window, post-processing, labels on the reference grid) and is scored with ``multimodalseg.metrics``
against its label map, brought to the task's own values on the reference grid (``preprocessing.load_label``):
Dice, Jaccard, sensitivity, precision, HD and HD95 per label (and region), and their means.

Tasks with a PET input (petmr-brain) also get the paper's PET analyses (``multimodalseg.metrics.petmr``): the
Pearson correlation of per-structure mean uptake inside the predicted vs the reference masks, per case and pooled
over cases, and, with ``noise_levels``, a robustness curve: mean Dice as Gaussian noise of increasing level is added
to the PET (the predictor runs once more per level and case).
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
from multimodalseg.metrics import petmr as pm
from multimodalseg.tasks.spec import TaskSpec

from training.datasets import Case

# Per-label metrics kept per case (Dice first: the table shows it).
METRICS = ("dice", "jaccard", "sensitivity", "precision", "hd", "hd95")


def pet_role(task: TaskSpec) -> str | None:
    """The task's PET input (normalisation ``pet``), or None."""
    return next((spec.role for spec in task.inputs if spec.normalization == "pet"), None)


def validate_bundle(bundle_path: str | os.PathLike, task: TaskSpec, cases: Sequence[Case], *,
                    device: str = "cpu", tta: bool = False, noise_levels: Sequence[float] = (),
                    noise_seed: int = 0) -> dict[str, Any]:
    """Per-case metrics and their means over cases.

    Args:
        noise_levels: PET tasks only: noise levels (SD as a fraction of the PET's 99th percentile) for the
            robustness curve; the clean run is level 0 and always included.
        noise_seed: seeds the noise (case k uses ``noise_seed + k``).

    Returns:
        ``{"model", "task", "cases": [{"id", "dice_mean", "means": {metric: mean over labels}, "<metric>":
        {name: value} for each of METRICS, "seconds"}], "dice": {name: mean over cases}, "dice_mean",
        "metrics_mean": {metric: mean over cases}}``; PET tasks add ``cases[i]["uptake"]`` and ``"uptake"``
        (``multimodalseg.metrics.petmr.uptake_agreement``: per case and pooled) and, with noise levels,
        ``"robustness"`` (``robustness_curve`` rows). Undefined values are None.
    """
    from multimodalseg.inference import Predictor

    predictor = Predictor.from_model(task.id, bundle_path, device=device, tta=tta)
    pet = pet_role(task)
    names = {lab.value: lab.name for lab in task.labels}
    levels = sorted({0.0, *(float(v) for v in noise_levels)}) if pet else [0.0]
    rows: list[dict[str, Any]] = []
    noisy_dice: list[list[float]] = [[] for _ in levels]
    pooled: tuple[dict[str, float | None], dict[str, float | None]] = ({}, {})
    for k, case in enumerate(c for c in cases if c.labelled):
        images = case.read_inputs()
        result = predictor.predict(images, modality=case.modality)
        reference = images[task.reference_role]
        indices = prep.load_label(task, case.label, reference, case.convention)
        ref = io.copy_geometry(prep.indices_to_values(indices, task), reference)
        row = _score(task, case, result.labels, ref)
        row["seconds"] = result.timings.get("total")
        noisy_dice[0].append(row["dice_mean"])
        if pet is not None and pet in images:
            predicted, expected = pm.mean_uptake(images[pet], result.labels, names), \
                pm.mean_uptake(images[pet], ref, names)
            row["uptake"] = {**pm.uptake_agreement(predicted, expected),
                             "structures": {n: {"predicted": predicted[n], "reference": expected[n]}
                                            for n in expected}}
            pooled[0].update({f"{case.id}/{n}": v for n, v in predicted.items()})
            pooled[1].update({f"{case.id}/{n}": v for n, v in expected.items()})
            for i, level in enumerate(levels[1:], start=1):
                noisy = {**images, pet: pm.noisy_pet(images[pet], level, noise_seed + k)}
                labels = predictor.predict(noisy, modality=case.modality).labels
                noisy_dice[i].append(_score(task, case, labels, ref)["dice_mean"])
        rows.append(row)
    names_scored = list(rows[0]["dice"]) if rows else []
    out: dict[str, Any] = {
        "model": {"id": predictor.bundle.id, "version": predictor.meta.get("version"),
                  "path": os.fspath(predictor.bundle.path)},
        "task": task.id,
        "cases": rows,
        "dice": {n: _nanmean([r["dice"][n] for r in rows]) for n in names_scored},
        "dice_mean": _nanmean([r["dice_mean"] for r in rows]),
        "metrics_mean": {m: _nanmean([r["means"][m] for r in rows]) for m in METRICS},
    }
    if pet is not None and rows and "uptake" in rows[0]:
        out["uptake"] = {"pooled": pm.uptake_agreement(*pooled),
                         "pearson_r_case_mean": _nanmean([r["uptake"]["pearson_r"] for r in rows])}
        if len(levels) > 1:
            out["robustness"] = pm.robustness_curve(levels, noisy_dice)
    return json_ready(out)


def _score(task: TaskSpec, case: Case, labels: Any, ref: Any) -> dict[str, Any]:
    """One case's metrics per label (and region); a label empty in both maps has no score (NaN)."""
    metrics = evaluate_images(labels, ref, task=task, pred_path=f"{case.id} prediction", ref_path=case.label)
    items = {**metrics["labels"], **metrics.get("regions", {})}
    row: dict[str, Any] = {"id": case.id, "dice_mean": metrics["mean"]["dice"],
                           "means": {m: metrics["mean"][m] for m in METRICS}}
    for m in METRICS:
        row[m] = {name: (v[m] if v["empty"] != "both" else math.nan) for name, v in items.items()}
    return row


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


def format_summary(result: dict[str, Any]) -> str:
    """The other metrics' means over cases, and for PET tasks the uptake correlation and the robustness curve."""
    means = result.get("metrics_mean") or {}
    lines = ["mean over cases: " + ", ".join(f"{m} {_cell(v, 0).strip()}" for m, v in means.items())] if means else []
    uptake = result.get("uptake")
    if uptake:
        p = uptake["pooled"]
        lines.append(f"PET uptake, predicted vs reference masks: Pearson r {_cell(p['pearson_r'], 0).strip()} "
                     f"pooled over {p['n']} structures (per-case mean {_cell(uptake['pearson_r_case_mean'], 0)}), "
                     f"within {p['tolerance']:.0%}: {_cell(p['within_tolerance'], 0).strip()}")
    for row in result.get("robustness") or []:
        lines.append(f"PET noise level {row['level']:.3f}: Dice {_cell(row['dice_mean'], 0).strip()} "
                     f"(drop {_cell(row['drop'], 0).strip()})")
    return "\n".join(lines)


def _cell(value: float | None, width: int) -> str:
    return "-".rjust(width) if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:{width}.3f}"


def _nanmean(values: list[float | None]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan
