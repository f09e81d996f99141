"""The whole-heart task's report extras (``TaskSpec.report_extras``, protocol in ``inference.extras``). No torch.

After the network pass: the LV, RV, LA, RA and myocardium volumes (mL) and the myocardial mass (g, 1.05 g/mL) of
the label map (``metrics.heart.cardiac_volumes``), as report key ``heart`` and a table ``<out>_heart.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import SimpleITK as sitk

from multimodalseg.metrics.heart import MYOCARDIAL_DENSITY_G_PER_ML, cardiac_volumes
from multimodalseg.tasks.spec import TaskSpec


class HeartExtra:
    """Chamber volumes and myocardial mass of one whole-heart label map (MM-WHS values)."""

    name = "heart"

    def __init__(self) -> None:
        self.notes: list[str] = []

    def finish(self, labels: sitk.Image, names: Mapping[int, str]) -> tuple[dict[str, Any], str | None]:
        values = {name: int(value) for value, name in names.items()}
        volumes = cardiac_volumes(labels, values=values if {"LV", "RV", "LA", "RA", "Myo"} <= set(values) else None)
        data: dict[str, Any] = {k: round(v, 3) for k, v in volumes.items()}
        data["myocardial_density_g_per_ml"] = MYOCARDIAL_DENSITY_G_PER_ML
        rows = ["quantity,value,unit"] + [f"{k.rsplit('_', 1)[0]},{v:.3f},{'g' if k.endswith('_g') else 'mL'}"
                                          for k, v in volumes.items()]
        return data, "\n".join(rows) + "\n"


def heart_extras(task: TaskSpec, inputs: Mapping[str, Any], images: Mapping[str, sitk.Image],
                 options: Mapping[str, Any]) -> HeartExtra:
    """First phase: nothing to read or check before the network pass."""
    return HeartExtra()
