"""Voxel-centre coordinates of a SimpleITK image grid, in LPS mm."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def voxel_centres(image: sitk.Image, samples: int | None = None, slices: range | None = None) -> np.ndarray:
    """(P, 3) LPS voxel centres of ``image`` in array order (z slowest, x fastest).

    Args:
        image: the grid.
        samples: if given, only this many positions per axis, spread from corner to corner.
        slices: if given (and ``samples`` is not), only these z indices.
    """
    size = image.GetSize()
    axes = [np.arange(s, dtype=float) if samples is None else np.linspace(0, s - 1, min(s, samples)) for s in size]
    if slices is not None and samples is None:
        axes[2] = np.asarray(slices, dtype=float)
    k, j, i = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    return ijk * np.asarray(image.GetSpacing()) @ direction.T + np.asarray(image.GetOrigin())
