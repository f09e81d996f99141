"""Resample a moving image (intensity or label map) onto the fixed grid through a landmark fit."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.io import resample_to_reference
from multimodalseg.registration.grid import voxel_centres
from multimodalseg.registration.landmarks import LandmarkFit

_OVERLAP_SAMPLES = 17  # per axis: enough to see a partial overlap, cheap enough for the live panel


def overlap_after_transform(fit: LandmarkFit, moving: sitk.Image, reference: sitk.Image) -> float:
    """Fraction of a coarse sample of ``reference``'s voxel centres that the fit maps inside ``moving``."""
    fixed_pts = voxel_centres(reference, _OVERLAP_SAMPLES)
    mapped = fit.inverse_points_lps(fixed_pts)
    direction = np.asarray(moving.GetDirection(), float).reshape(3, 3)
    index = np.linalg.solve(direction, (mapped - np.asarray(moving.GetOrigin())).T).T / np.asarray(moving.GetSpacing())
    size = np.asarray(moving.GetSize())
    inside = np.all((index >= -0.5) & (index <= size - 0.5), axis=1)
    return float(inside.mean())


def resample_moving(
    fit: LandmarkFit,
    moving: sitk.Image,
    reference: sitk.Image,
    *,
    label: bool = False,
    default_value: float = 0.0,
) -> sitk.Image:
    """Bring ``moving`` onto ``reference``'s grid through ``fit`` (fitted with ``fixed`` on the reference).

    Args:
        fit: the landmark fit (moving -> fixed; any frame, see :class:`LandmarkFit`).
        moving: the moving image (LPS, as SimpleITK reads it).
        reference: the fixed image whose grid the result takes.
        label: label map: nearest neighbour and the input's pixel type; linear and float32 otherwise.
        default_value: value where the fixed grid maps outside ``moving``.

    Raises:
        UserError: no voxel of the fixed grid maps inside the moving image (the landmarks or the images are wrong).
    """
    if overlap_after_transform(fit, moving, reference) == 0.0:
        raise UserError("after the landmark transform, the moving image does not overlap the fixed image at all; "
                        "check that the landmark files belong to these images")
    return resample_to_reference(moving, reference, label=label, transform=fit.to_sitk(reference),
                                 default_value=default_value)
