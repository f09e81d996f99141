"""SUV statistics per predicted structure for ``segment`` (the petmr-brain task's ``report_extras`` hook). No torch.

Where the SUV comes from (``options["suv"]``, an :class:`~multimodalseg.suv.SUVOverrides` from the SUV options):

- a PET DICOM series: its tags, filled in or replaced by the options (``load_suv``); a missing PatientWeight or
  RadionuclideTotalDose is a UserError naming the tag, raised before the network pass;
- a volume file (or an in-memory image) with ``--weight``, ``--dose``, ``--injection-time`` and ``--scan-time``, or
  ``--already-suv``;
- a volume file without any of them: the statistics are of the PET values as stored (activity, e.g. Bq/mL), the
  columns are named ``pet_*`` instead of ``suv_*``, and the report says that SUV was not computed.

The statistics are ``multimodalseg.suv.structure_statistics`` (the ``suv-stats`` command's): the label map is
resampled onto the PET grid by nearest neighbour and the PET values are never interpolated. When ``segment`` got a
registration transform for the PET (``options["transforms"]["pet"]``, T1 points -> PET points), the label map goes
onto the PET grid through its inverse, so the statistics are of the same tissue the network saw; volumes are still
counted on the label map's own grid.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.io import resample_to_reference
from multimodalseg.suv import PEAK_RADIUS_MM, SUVImage, SUVOverrides, load_suv, structure_statistics, suv_parameters
from multimodalseg.suv.stats import CSV_COLUMNS, StructureStatistics, statistics_csv
from multimodalseg.tasks.spec import TaskSpec

NOT_SUV_NOTE = ("SUV not computed: the PET is not a DICOM series and no --weight, --dose, --injection-time and "
                "--scan-time (or --already-suv) were given; the statistics are of the PET values as stored")


@dataclass
class PETStatistics:
    """The second phase: statistics of a label map on this PET.

    Args:
        image: SUVbw, or the PET as stored when ``suv`` is None.
        suv: how the SUV was obtained (None: not computed).
        pet: the PET input's path or ``"image"``.
        notes: warnings for the progress stream.
        transform: registration of the PET (T1 physical points -> PET physical points), or None.
    """

    image: sitk.Image
    suv: SUVImage | None
    pet: str
    notes: list[str] = field(default_factory=list)
    transform: sitk.Transform | None = None
    name: str = "suv"

    @property
    def prefix(self) -> str:
        """Column prefix: ``suv_`` for SUV, ``pet_`` for values as stored."""
        return "suv_" if self.suv is not None else "pet_"

    def finish(self, labels: sitk.Image, names: Mapping[int, str]) -> tuple[dict[str, Any], str]:
        if self.transform is None:
            rows = structure_statistics(self.image, labels, dict(names))
        else:
            rows = self._registered_statistics(labels, names)
        report = {
            "suv_computed": self.suv is not None,
            "quantity": "SUVbw (g/mL)" if self.suv is not None else "PET values as stored (not SUV)",
            "pet": self.pet,
            "suv": self.suv.to_dict() if self.suv is not None else None,
            "note": None if self.suv is not None else NOT_SUV_NOTE,
            "grid": "labels resampled onto the PET grid (nearest neighbour"
                    + (", through the inverse of the PET's registration transform" if self.transform else "")
                    + "); volume_ml on the label grid",
            "peak": {"radius_mm": PEAK_RADIUS_MM, "definition": "mean of the PET voxels whose centres lie within "
                     "radius_mm of the structure's maximum voxel"},
            "structures": [self._row(r) for r in rows],
        }
        return report, self._csv(rows)

    def _registered_statistics(self, labels: sitk.Image, names: Mapping[int, str]) -> list[StructureStatistics]:
        try:
            inverse = self.transform.GetInverse()
        except RuntimeError:
            raise UserError("the PET's registration transform has no inverse: SUV statistics need one to bring "
                            "the label map onto the PET grid") from None
        on_pet = resample_to_reference(labels, self.image, label=True, transform=inverse)
        rows = structure_statistics(self.image, on_pet, dict(names))
        counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel().astype(np.int64))
        voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
        for row in rows:  # the segmentation's own volume, not its PET-grid approximation
            row.volume_ml = (int(counts[row.value]) if row.value < len(counts) else 0) * voxel_ml
        return rows

    def _row(self, row: StructureStatistics) -> dict[str, Any]:
        return {_column(k, self.prefix): v for k, v in row.to_dict().items()}

    def _csv(self, rows: list[StructureStatistics]) -> str:
        text = statistics_csv(rows)
        if self.prefix == "suv_":
            return text
        body = text.partition("\n")[2]  # statistics_csv's header is CSV_COLUMNS
        return ",".join(_column(c, self.prefix) for c in CSV_COLUMNS) + "\n" + body


def _column(name: str, prefix: str) -> str:
    return prefix + name.removeprefix("suv_") if name.startswith("suv_") else name


def suv_report(task: TaskSpec, inputs: Mapping[str, Any], images: Mapping[str, sitk.Image],
               options: Mapping[str, Any]) -> PETStatistics | None:
    """The hook's first phase: the SUV image of the case's PET (checked now, before the network pass).

    Returns:
        None when the case has no PET input.

    Raises:
        UserError: a DICOM series without the tags SUV needs (naming the tag and the option that replaces it),
            incomplete or invalid SUV options, or ``--already-suv`` with other values.
    """
    pet_role = next((spec.role for spec in task.inputs if spec.normalization == "pet"), None)
    if pet_role is None or pet_role not in images:
        return None
    overrides: SUVOverrides = options.get("suv") or SUVOverrides()
    transform = (options.get("transforms") or {}).get(pet_role)
    stats = _statistics(inputs, images, pet_role, overrides)
    stats.transform = transform
    return stats


def _statistics(inputs: Mapping[str, Any], images: Mapping[str, sitk.Image], pet_role: str,
                overrides: SUVOverrides) -> PETStatistics:
    source = inputs.get(pet_role)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_dir() and not overrides.already_suv and not overrides.any_given():
            return PETStatistics(images[pet_role], None, os.fspath(path), [NOT_SUV_NOTE])
        suv = load_suv(path, overrides)
        return PETStatistics(suv.image, suv, os.fspath(path))
    image = images[pet_role]  # an image given in memory: no tags to read
    if overrides.already_suv:
        if overrides.any_given():
            raise UserError("--already-suv cannot be combined with --weight, --dose, --half-life or the times")
        return PETStatistics(_float(image), SUVImage(_float(image), "already-suv", None), "image")
    if not overrides.any_given():
        return PETStatistics(image, None, "image", [NOT_SUV_NOTE])
    params = suv_parameters(overrides.weight_kg, overrides.dose_mbq, overrides.injection_time, overrides.scan_time,
                            overrides.half_life_s)
    suv = _float(sitk.Cast(image, sitk.sitkFloat64) * params.scale)
    return PETStatistics(suv, SUVImage(suv, "parameters", params), "image")


def _float(image: sitk.Image) -> sitk.Image:
    return sitk.Cast(image, sitk.sitkFloat32)
