"""PET SUV (body-weight) from DICOM tags or from given parameters, and SUV statistics per structure.

Torch-free (numpy, pydicom, SimpleITK), so the Slicer side and light commands can use it.

SUVbw = activity concentration [Bq/mL] × body weight [g] / injected dose decayed to the activity's reference
time [Bq]. The reference time follows the series' Decay Correction (0054,1102):

- ``START``: the voxels are decay-corrected to the acquisition start, so the dose is decayed from the injection
  to the scan time (``exp(-ln 2 · Δt / T½)``);
- ``ADMIN``: the voxels are already decay-corrected to the administration time, so the dose is used as injected;
- ``NONE`` (not decay-corrected; per-slice frame times would be needed) is refused.

Example:
    >>> suv = load_suv("pet_dicom/")                                  # tags
    >>> suv = load_suv("pet.nii.gz", SUVOverrides(75, 370, "093000", "103000"))  # given values
    >>> rows = structure_statistics(suv.image, labels, {17: "Left-Hippocampus"})
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.io import read_image
from multimodalseg.suv.dicom import PETSeries, dicom_suv_parameters, read_pet_series
from multimodalseg.suv.parameters import F18_HALF_LIFE_S, SUVOverrides, SUVParameters, parse_time, suv_parameters
from multimodalseg.suv.stats import (
    PEAK_RADIUS_MM,
    StructureStatistics,
    structure_statistics,
    write_statistics,
)


@dataclass
class SUVImage:
    """SUV voxels and how they were obtained.

    Args:
        image: SUVbw, float32, on the PET's own grid (LPS).
        source: ``"dicom"`` (tags), ``"parameters"`` (given values) or ``"already-suv"``.
        parameters: the parameters used; None for ``"already-suv"``.
    """

    image: sitk.Image
    source: str
    parameters: SUVParameters | None

    def to_dict(self) -> dict:
        return {"source": self.source, "parameters": self.parameters.to_dict() if self.parameters else None}


def load_suv(pet: str | os.PathLike, overrides: SUVOverrides | None = None) -> SUVImage:
    """SUVbw of a PET: a DICOM series folder (tags, optionally overridden) or a volume file (given values).

    A volume file must hold activity in Bq/mL, decay-corrected to the scan start; with ``already_suv`` its voxels
    are taken as SUV unchanged. A DICOM series with ``already_suv`` must have Units GML.

    Raises:
        UserError: unreadable input, missing or invalid tags or values (naming the file, tag and option).
    """
    o = overrides or SUVOverrides()
    path = Path(pet)
    if o.already_suv and o.any_given():
        raise UserError("--already-suv cannot be combined with --weight, --dose, --half-life or the times")
    if path.is_dir():
        series = read_pet_series(path)
        if o.already_suv:
            units = str(series.headers[0].get("Units", "")).upper()
            if units != "GML":
                raise UserError(f"Units (0054,1001) is '{units or 'missing'}', not GML: the series does not hold "
                                "SUV; drop --already-suv", series.files[0])
            return SUVImage(sitk.Cast(series.image, sitk.sitkFloat32), "already-suv", None)
        params = dicom_suv_parameters(series, o)
        return SUVImage(sitk.Cast(series.image * params.scale, sitk.sitkFloat32), "dicom", params)
    image = read_image(path)
    if o.already_suv:
        return SUVImage(sitk.Cast(image, sitk.sitkFloat32), "already-suv", None)
    params = suv_parameters(o.weight_kg, o.dose_mbq, o.injection_time, o.scan_time, o.half_life_s)
    suv = sitk.Cast(image, sitk.sitkFloat64) * params.scale
    return SUVImage(sitk.Cast(suv, sitk.sitkFloat32), "parameters", params)


__all__ = [
    "F18_HALF_LIFE_S",
    "PEAK_RADIUS_MM",
    "PETSeries",
    "SUVImage",
    "SUVOverrides",
    "SUVParameters",
    "StructureStatistics",
    "dicom_suv_parameters",
    "load_suv",
    "parse_time",
    "read_pet_series",
    "structure_statistics",
    "suv_parameters",
    "write_statistics",
]
