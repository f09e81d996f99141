"""DICOM volumes: a folder holding one series (or a single multi-frame file), checked before it becomes a volume.

What SimpleITK/GDCM would otherwise do silently, and what is done instead:

- **No geometry** (no Image Position/Orientation (Patient), e.g. a cine MR or a secondary capture): GDCM stacks
  the images anyway, and a multi-frame cine's frame time (e.g. 69.47 ms) becomes its slice spacing. Refused, with
  the reason, unless the user allows it (``segment --allow-dicom-without-geometry``, :func:`allow_no_geometry`).
- **Multi-frame or temporal data** (several frames in one file without per-frame positions, or several images at
  one position: time points, echoes): refused likewise.
- **Unevenly spaced slices** (a missing slice, a variable-thickness acquisition): ITK prints a multi-line warning to
  stderr and keeps a single average spacing, so the volume is stretched. Here the slices are resampled (linear,
  along the slice normal) onto an even grid at the median spacing, and one :class:`InputWarning` says so:
  "slices are not evenly spaced (max deviation X mm); resampled to Y mm". Commands turn it into a ``warning``
  progress event (:func:`warnings_to`).

Imports without torch (pydicom reads the headers).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from multimodalseg.errors import UserError

_ALLOW_NO_GEOMETRY = False
# Slices count as evenly spaced within this (mm, plus a fraction of the spacing): DICOM positions are decimal
# strings of 16 characters at most, so rounding alone leaves about 1e-4 mm.
SPACING_ATOL_MM = 0.01
SPACING_RTOL = 0.01
ALLOW_HINT = "pass --allow-dicom-without-geometry to read it anyway"


class InputWarning(UserWarning):
    """Something about an input that the user should know but that does not stop the run."""


def allow_no_geometry(allow: bool = True) -> None:
    """Accept DICOM without position/orientation tags, multi-frame and temporal data (read as GDCM stacks them)."""
    global _ALLOW_NO_GEOMETRY
    _ALLOW_NO_GEOMETRY = bool(allow)


def no_geometry_allowed() -> bool:
    return _ALLOW_NO_GEOMETRY


@contextlib.contextmanager
def warnings_to(callback: Callable[[str], None] | None) -> Iterator[None]:
    """Send every :class:`InputWarning` raised inside the block to ``callback(message)`` once (a repeated message,
    e.g. from reading one series twice, is dropped); other warnings keep their usual handling."""
    seen: set[str] = set()
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, InputWarning):
            return previous(message, category, filename, lineno, file, line)
        text = str(message)
        if text not in seen:
            seen.add(text)
            if callback is not None:
                callback(text)
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("always", InputWarning)
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = previous


@contextlib.contextmanager
def _itk_quiet() -> Iterator[None]:
    """ITK's own warnings (printed to the C stderr, several lines each) off: the checks here report instead."""
    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def _headers(files: Sequence[str]) -> list:
    import pydicom

    out = []
    for f in files:
        try:
            out.append(pydicom.dcmread(f, stop_before_pixels=True))
        except Exception:  # not readable by pydicom: leave the judgement to GDCM's reader
            return []
    return out


def _frame_positions(ds) -> bool:
    """True when a multi-frame object gives a position for each frame (enhanced CT/MR with functional groups)."""
    groups = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    return bool(groups) and all(hasattr(g, "PlanePositionSequence") for g in groups)


def check_series(headers: Sequence, path: Path) -> None:
    """Refuse geometry-less, multi-frame or temporal DICOM unless :func:`allow_no_geometry` was called."""
    if not headers or _ALLOW_NO_GEOMETRY:
        return
    frames = max(int(getattr(ds, "NumberOfFrames", 1) or 1) for ds in headers)
    if frames > 1 and not all(_frame_positions(ds) for ds in headers):
        timing = ""
        frame_time = getattr(headers[0], "FrameTime", None)
        if frame_time is not None:
            timing = f", {float(frame_time):g} ms apart"
        raise UserError(f"multi-frame DICOM ({frames} frames{timing}) without a position per frame: the frames may "
                        f"be time points, not slices, so its slice spacing is unknown; {ALLOW_HINT}", path)
    if frames > 1:
        return
    missing = [name for name in ("ImagePositionPatient", "ImageOrientationPatient")
               if any(getattr(ds, name, None) is None for ds in headers)]
    if missing:
        raise UserError(f"DICOM without {' and '.join(missing)}: where its images lie in the patient (slice "
                        f"positions and spacing) is unknown; {ALLOW_HINT}", path)
    positions = {tuple(round(float(v), 3) for v in ds.ImagePositionPatient) for ds in headers}
    if len(positions) < len(headers):
        raise UserError(f"DICOM series holds {len(headers)} images at {len(positions)} positions (several time "
                        f"points, echoes or phases); export one volume per series; {ALLOW_HINT}", path)


def _slice_offsets(headers: Sequence) -> np.ndarray | None:
    """Each image's position along the slice normal (mm), in the given order; None without geometry."""
    try:
        row_col = np.asarray([float(v) for v in headers[0].ImageOrientationPatient]).reshape(2, 3)
        normal = np.cross(row_col[0], row_col[1])
        return np.asarray([np.dot(normal, [float(v) for v in ds.ImagePositionPatient]) for ds in headers])
    except (AttributeError, TypeError, ValueError):
        return None


def even_slices(image: sitk.Image, offsets: np.ndarray, path: Path) -> sitk.Image:
    """``image`` (slices at ``offsets`` mm along its third axis) on an even grid at the median spacing, with an
    :class:`InputWarning`; unchanged when the slices are already evenly spaced."""
    if len(offsets) < 3:
        return image
    steps = np.diff(offsets)
    step = float(np.median(steps))
    if step == 0:
        return image
    deviation = float(np.max(np.abs(steps - step)))
    if deviation <= SPACING_ATOL_MM + SPACING_RTOL * abs(step):
        return image
    rel = (offsets - offsets[0]) / step  # slice coordinates in units of the even spacing, increasing
    count = int(np.floor(rel[-1] + 1e-6)) + 1
    arr = sitk.GetArrayViewFromImage(image)
    target = np.arange(count, dtype=float)
    hi = np.clip(np.searchsorted(rel, target, side="right"), 1, len(rel) - 1)
    lo = hi - 1
    w = ((target - rel[lo]) / (rel[hi] - rel[lo]))[:, None, None].astype(np.float32)
    out = (arr[lo].astype(np.float32) * (1 - w) + arr[hi].astype(np.float32) * w).astype(np.float32)
    even = sitk.GetImageFromArray(out)
    even.SetOrigin(image.GetOrigin())
    even.SetDirection(image.GetDirection())
    even.SetSpacing((*image.GetSpacing()[:2], abs(step)))
    warnings.warn(f"{path}: slices are not evenly spaced (max deviation {deviation:.3g} mm); resampled to "
                  f"{abs(step):.4g} mm", InputWarning, stacklevel=2)
    return even


def read_series(folder: Path) -> sitk.Image:
    """The one DICOM series of ``folder`` as a float32 volume, checked (see the module docstring).

    Raises:
        UserError: no series, several series, geometry-less, multi-frame or temporal data (unless allowed).
    """
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise UserError("folder holds no DICOM series", folder)
    if len(series) > 1:
        raise UserError(f"folder holds {len(series)} DICOM series; give one series per folder", folder)
    files = list(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    headers = _headers(files)
    check_series(headers, folder)
    reader.SetFileNames(files)
    # The pixel type otherwise follows the first slice: int16 there truncates slices whose rescale
    # slope/intercept differ (common in PET).
    reader.SetOutputPixelType(sitk.sitkFloat32)
    with _itk_quiet():
        image = reader.Execute()
    offsets = _slice_offsets(headers) if headers and len(headers) == image.GetSize()[2] else None
    if offsets is not None and image.GetDimension() == 3:
        image = even_slices(image, offsets, folder)
    return image


def is_dicom_file(path: Path) -> bool:
    """A file with the DICOM preamble marker (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def check_file(path: Path) -> None:
    """The checks of :func:`check_series` for a single DICOM file given as an input."""
    check_series(_headers([str(path)]), path)
