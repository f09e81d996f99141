"""Landmark registration: paired points -> rigid / similarity / affine / thin-plate spline, errors and files.

Conventions (details in ``landmarks.py`` and ``transform_files.py``):

* Points: one frame per fit, LPS (ITK, this package's arrays) or RAS (Slicer); the maths does not care.
  Markup files say their frame and :func:`read_markups` returns LPS.
* ``LandmarkFit.matrix`` / ``transform_points``: MOVING -> FIXED (Slicer's "to parent" for the moving volume).
* ``LandmarkFit.inverse_points`` / ``to_sitk`` / transform files: FIXED -> MOVING in LPS (ITK's resampling
  direction; Slicer shows it as "from parent").

Imports numpy, scipy and SimpleITK only (no torch, no VTK): Slicer's own process imports it for live updates.

Example:
    >>> fit = fit_landmarks(fixed_lps, moving_lps, "rigid")
    >>> fit.rms, fit.loo_errors
    >>> write_transform(fit, "moving_to_fixed.tfm")
    >>> aligned = resample_moving(fit, moving_image, fixed_image)
"""

from __future__ import annotations

from multimodalseg.registration.landmarks import LandmarkFit, fit_landmarks
from multimodalseg.registration.markups import lps_to_ras, ras_to_lps, read_markups, write_markups
from multimodalseg.registration.resample import overlap_after_transform, resample_moving
from multimodalseg.registration.tps import ThinPlateSpline
from multimodalseg.registration.transform_files import read_transform, write_transform
from multimodalseg.registration.validate import MODES

__all__ = [
    "MODES",
    "LandmarkFit",
    "ThinPlateSpline",
    "fit_landmarks",
    "lps_to_ras",
    "overlap_after_transform",
    "ras_to_lps",
    "read_markups",
    "read_transform",
    "resample_moving",
    "write_markups",
    "write_transform",
]
