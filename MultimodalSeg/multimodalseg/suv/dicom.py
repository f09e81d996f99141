"""PET DICOM series: activity read slice by slice with each slice's own rescale, and SUV parameters from tags.

Why pydicom per file: PET series usually scale every slice differently (Rescale Slope (0028,1053) per slice,
chosen to use the full 16-bit range). A series reader that picks one output type from the first slice can
truncate or mis-scale the others, so each slice applies its own Modality LUT here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import DA, DT, TM

from multimodalseg.errors import UserError
from multimodalseg.io import make_image
from multimodalseg.suv.parameters import SUVOverrides, SUVParameters, check_positive, parse_time

# tag keyword -> (DICOM tag, the command-line option that supplies its value)
TAGS = {
    "PatientWeight": ("(0010,1030)", "--weight"),
    "RadionuclideTotalDose": ("(0018,1074)", "--dose"),
    "RadionuclideHalfLife": ("(0018,1075)", "--half-life"),
    "RadiopharmaceuticalStartDateTime": ("(0018,1078)", "--injection-time"),
    "SeriesTime": ("(0008,0031)", "--scan-time"),
    "DecayCorrection": ("(0054,1102)", None),
}


@dataclass
class PETSeries:
    """A PET DICOM series read slice by slice.

    Args:
        image: activity as stored × each slice's slope + intercept, float64, LPS geometry from Image Position
            (Patient) and Image Orientation (Patient), slices sorted along the normal.
        files: the slice files, in slice order.
        headers: their datasets, in slice order.
    """

    image: sitk.Image
    files: list[Path]
    headers: list[pydicom.Dataset]


def read_pet_series(folder: str | os.PathLike) -> PETSeries:
    """Read the one PET series in ``folder``, each slice with its own Rescale Slope and Intercept.

    Raises:
        UserError: no DICOM images, several series, not PT, multi-frame, inconsistent or irregular geometry.
    """
    folder = Path(folder)
    slices: list[tuple[Path, pydicom.Dataset]] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, ValueError):
            continue  # not DICOM (a README, a thumbnail): ignored, as series readers do
        if "PixelData" in ds:
            slices.append((path, ds))
    if not slices:
        raise UserError("folder holds no DICOM image files", folder)
    if len({str(ds.get("SeriesInstanceUID", "")) for _, ds in slices}) > 1:
        raise UserError("folder holds several DICOM series; give one series per folder", folder)
    first_path, first = slices[0]
    if first.get("Modality") != "PT":
        raise UserError(f"Modality (0008,0060) is '{first.get('Modality', '')}', not PT: not a PET series", first_path)
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise UserError("multi-frame (enhanced) PET is not supported; export single-frame slices", first_path)
    for path, ds in slices:
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if tag not in ds:
                raise UserError(f"{tag} is missing: the slice cannot be placed in space", path)
    orientation = np.asarray(first.ImageOrientationPatient, float)
    normal = np.cross(orientation[:3], orientation[3:])
    slices.sort(key=lambda s: float(np.dot(np.asarray(s[1].ImagePositionPatient, float), normal)))
    for path, ds in slices:
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, float), orientation, atol=1e-4):
            raise UserError("slices have different Image Orientation (Patient) (0020,0037)", path)
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise UserError("slices have different sizes", path)
    positions = np.array([np.dot(np.asarray(ds.ImagePositionPatient, float), normal) for _, ds in slices])
    steps = np.diff(positions)
    if len(steps) and (steps.min() <= 1e-3 or steps.max() - steps.min() > 0.01 * steps.mean()):
        raise UserError(f"slice positions are duplicated or unevenly spaced ({steps.min():.3f} to {steps.max():.3f} "
                        "mm apart)", folder)
    # Modality LUT per slice (PS3.3 C.11.1): stored value × this slice's slope + this slice's intercept.
    array = np.stack([
        ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1.0) or 1.0)
        + float(ds.get("RescaleIntercept", 0.0) or 0.0)
        for _, ds in slices
    ])
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)  # DICOM order: between rows, columns
    slice_spacing = float(steps.mean()) if len(steps) else float(first.get("SliceThickness", 1.0) or 1.0)
    # ITK direction columns: along a row (x index), down a column (y index), the slice normal (z index).
    direction = np.column_stack([orientation[:3], orientation[3:], normal])
    image = make_image(array, (column_spacing, row_spacing, slice_spacing), slices[0][1].ImagePositionPatient,
                       direction)
    return PETSeries(image, [p for p, _ in slices], [ds for _, ds in slices])


def dicom_suv_parameters(series: PETSeries, overrides: SUVOverrides | None = None) -> SUVParameters:
    """SUV parameters from the series' tags; values given in ``overrides`` replace (or fill in) the tags.

    The scan time for ``START`` is Series Date/Time, or the earliest Acquisition Date/Time when that is earlier
    (a series re-saved after the scan gets a later series time: QIBA's vendor-neutral rule). An injection time
    without a date (Radiopharmaceutical Start Time) takes the scan's date, the day before when it is later.

    Raises:
        UserError: naming the first slice's file and each missing or invalid tag, with the option to give.
    """
    o = overrides or SUVOverrides()
    ds, path = series.headers[0], series.files[0]
    units = str(ds.get("Units", "")).upper()
    if units != "BQML":
        raise UserError(f"Units (0054,1001) is '{units or 'missing'}'; SUV needs BQML (Bq/mL) voxels "
                        "(give --already-suv if the series holds SUV)", path)
    odd = next((p for p, h in zip(series.files, series.headers) if str(h.get("Units", "")).upper() != units), None)
    if odd is not None:
        raise UserError("slices have different Units (0054,1001)", odd)
    corrected = [str(v).upper() for v in (ds.get("CorrectedImage") or [])]
    if corrected and "ATTN" not in corrected:
        raise UserError("CorrectedImage (0028,0051) lacks ATTN: the series is not attenuation-corrected", path)
    mode = str(ds.get("DecayCorrection", "")).upper()
    if not mode:
        raise _missing(["DecayCorrection"], path)
    if mode not in ("START", "ADMIN"):
        raise UserError(f"DecayCorrection (0054,1102) is '{mode}'; SUV from this series needs START or ADMIN", path)
    info = (ds.get("RadiopharmaceuticalInformationSequence") or [pydicom.Dataset()])[0]
    weight = o.weight_kg if o.weight_kg is not None else _number(ds, "PatientWeight", path)
    dose = o.dose_mbq * 1e6 if o.dose_mbq is not None else _number(info, "RadionuclideTotalDose", path)
    half_life = o.half_life_s if o.half_life_s is not None else _number(info, "RadionuclideHalfLife", path)
    series_time = _dicom_datetime(ds, "SeriesDate", "SeriesTime", path)
    acquired = [_dicom_datetime(h, "AcquisitionDate", "AcquisitionTime", p) for p, h in zip(series.files,
                                                                                            series.headers)]
    earliest = min((t for t in acquired if t is not None), default=None)
    scan = earliest if series_time is None or (earliest is not None and earliest < series_time) else series_time
    if o.scan_time is not None:
        scan = parse_time(o.scan_time, "--scan-time", scan)
    if o.injection_time is not None:
        injection = parse_time(o.injection_time, "--injection-time", scan)
    else:
        injection = _injection_time(info, scan, path)
    needed = {"PatientWeight": weight, "RadionuclideTotalDose": dose, "RadionuclideHalfLife": half_life}
    if mode == "START":  # with ADMIN the voxels already refer to the injection: no times are needed
        needed.update(RadiopharmaceuticalStartDateTime=injection, SeriesTime=scan)
    missing = [name for name, value in needed.items() if value is None]
    if missing:
        raise _missing(missing, path)
    check_positive({"PatientWeight (0010,1030)": weight, "RadionuclideTotalDose (0018,1074)": dose,
                    "RadionuclideHalfLife (0018,1075)": half_life}, path)
    if mode == "START" and scan < injection:
        raise UserError(f"the scan ({scan.isoformat()}) is before the injection ({injection.isoformat()})", path)
    return SUVParameters(weight, dose, half_life, injection, scan, mode)


def _missing(names: Sequence[str], path: Path) -> UserError:
    tags = [f"{n} {TAGS[n][0]}" for n in names]
    options = [opt for opt in dict.fromkeys(TAGS[n][1] for n in names) if opt]
    hint = f"; give {' and '.join(options)}" if options else ""
    return UserError(f"{' and '.join(tags)} {'is' if len(tags) == 1 else 'are'} missing{hint}", path)


def _number(ds: pydicom.Dataset, name: str, path: Path) -> float | None:
    value = ds.get(name)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} {TAGS[name][0]} '{value}' is not a number", path) from None


def _dicom_datetime(ds: pydicom.Dataset, date_tag: str, time_tag: str, path: Path) -> datetime | None:
    if not ds.get(date_tag) or not ds.get(time_tag):
        return None
    try:
        return datetime.combine(DA(ds.get(date_tag)), TM(ds.get(time_tag)))
    except ValueError:
        raise UserError(f"{date_tag}/{time_tag} '{ds.get(date_tag)} {ds.get(time_tag)}' is not a valid date and "
                        "time", path) from None


def _injection_time(info: pydicom.Dataset, scan: datetime | None, path: Path) -> datetime | None:
    try:
        if info.get("RadiopharmaceuticalStartDateTime"):
            return DT(info.RadiopharmaceuticalStartDateTime).replace(tzinfo=None)
        if info.get("RadiopharmaceuticalStartTime") and scan is not None:
            injected = datetime.combine(scan.date(), TM(info.RadiopharmaceuticalStartTime))
            return injected - timedelta(days=1) if injected > scan else injected
    except ValueError:
        raise UserError("the injection time in RadiopharmaceuticalInformationSequence (0054,0016) is not a valid "
                        "time", path) from None
    return None
