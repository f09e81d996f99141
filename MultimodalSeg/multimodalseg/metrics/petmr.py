"""PET/MR evaluation as in the paper (METHODS §A.1, §A.5): SUV agreement between predicted and reference structures,
and the PET noise of the robustness curve. No torch.

- **SUV agreement.** Per structure, the mean PET value inside the predicted mask and inside the reference mask
  (``multimodalseg.suv.structure_statistics``: the label map is resampled onto the PET grid by nearest neighbour,
  the PET is never interpolated). :func:`uptake_agreement` gives the Pearson correlation of the two over the
  structures present in both masks (the paper's PCC, > 0.9), the least-squares line, the mean absolute relative
  difference and the share of structures whose mean differs by at most 5 % (a tolerance rate; the paper's exact
  definition is not given). Pearson's r is invariant to a global scale, so a PET in Bq/mL gives the same r as its
  SUV within one case; pooled over cases the values should be SUV (or the r mixes patients' scales).
- **Robustness.** :func:`noisy_pet` adds zero-mean Gaussian noise with standard deviation ``level`` times the PET's
  robust scale (the 99th percentile of its positive voxels, the scale the ``pet`` normalisation divides by), so a
  level means the same thing for Bq/mL and SUV images. The curve is Dice against level
  (``training.validate`` runs the predictor once per level); :func:`robustness_curve` tabulates it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from multimodalseg.suv import structure_statistics

TOLERANCE = 0.05


def mean_uptake(pet: sitk.Image, labels: sitk.Image, names: Mapping[int, str]) -> dict[str, float | None]:
    """Mean PET value per structure (name -> mean; None where the structure has no PET voxel)."""
    return {row.name: row.suv_mean for row in structure_statistics(pet, labels, dict(names))}


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r of two samples; NaN with fewer than 3 pairs or a constant sample."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if a.size != b.size:
        raise ValueError(f"samples differ in length ({a.size} vs {b.size})")
    if a.size < 3:
        return math.nan
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((da * da).sum()) * float((db * db).sum()))
    return float((da * db).sum() / denom) if denom > 0 else math.nan


def uptake_agreement(predicted: Mapping[str, float | None], reference: Mapping[str, float | None],
                     tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Agreement of per-structure mean uptake from predicted vs reference masks.

    Args:
        predicted, reference: structure name -> mean uptake (None: structure absent in that mask).
        tolerance: relative difference counted as agreeing (0.05).

    Returns:
        ``pearson_r``, ``n`` (structures with both values), ``slope`` and ``intercept`` of predicted on reference
        (least squares), ``mean_abs_rel_diff`` (mean of |pred - ref| / |ref| over structures with ref != 0),
        ``within_tolerance`` (share of those with a relative difference <= ``tolerance``), ``tolerance``. Values
        that cannot be computed are NaN.
    """
    names = [n for n in reference if reference[n] is not None and predicted.get(n) is not None]
    x = np.array([reference[n] for n in names], np.float64)
    y = np.array([predicted[n] for n in names], np.float64)
    slope = intercept = math.nan
    if x.size >= 2 and float(np.ptp(x)) > 0:
        slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    nonzero = x != 0
    rel = np.abs(y[nonzero] - x[nonzero]) / np.abs(x[nonzero])
    return {
        "pearson_r": pearson(x, y),
        "n": int(x.size),
        "slope": slope,
        "intercept": intercept,
        "mean_abs_rel_diff": float(rel.mean()) if rel.size else math.nan,
        "within_tolerance": float((rel <= tolerance).mean()) if rel.size else math.nan,
        "tolerance": tolerance,
    }


def robust_scale(pet: sitk.Image) -> float:
    """The 99th percentile of the positive voxels (1.0 for an image without any)."""
    values = sitk.GetArrayViewFromImage(pet)
    positive = values[values > 0]
    scale = float(np.percentile(positive, 99)) if positive.size else 0.0
    return scale if scale > 0 else 1.0


def noisy_pet(pet: sitk.Image, level: float, seed: int = 0) -> sitk.Image:
    """``pet`` plus Gaussian noise of SD ``level`` × :func:`robust_scale` (float32, same grid; level 0: a copy).

    Raises:
        ValueError: a negative or non-finite level.
    """
    if not (math.isfinite(level) and level >= 0):
        raise ValueError(f"noise level must be a finite number >= 0, got {level}")
    values = sitk.GetArrayFromImage(pet).astype(np.float32)
    if level > 0:
        rng = np.random.default_rng(seed)
        values += rng.normal(0.0, level * robust_scale(pet), values.shape).astype(np.float32)
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(pet)
    return out


def robustness_curve(levels: Sequence[float], dice_per_case: Sequence[Sequence[float]]) -> list[dict[str, float]]:
    """Rows ``{"level", "dice_mean", "dice_sd", "drop"}`` of Dice against noise level.

    Args:
        levels: noise levels, the first normally 0 (the clean images).
        dice_per_case: per level, the cases' mean Dice (NaN entries left out).

    ``drop`` is the mean Dice lost relative to the first level.
    """
    if len(levels) != len(dice_per_case):
        raise ValueError(f"{len(levels)} levels but {len(dice_per_case)} Dice lists")
    stats = []
    for values in dice_per_case:
        finite = np.array([v for v in values if v is not None and not math.isnan(v)], np.float64)
        stats.append((float(finite.mean()), float(finite.std())) if finite.size else (math.nan, math.nan))
    base = stats[0][0] if stats else math.nan
    return [{"level": float(level), "dice_mean": mean, "dice_sd": sd, "drop": base - mean}
            for level, (mean, sd) in zip(levels, stats)]
