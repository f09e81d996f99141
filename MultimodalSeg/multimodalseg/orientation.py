"""Lossless reorientation to a model's orientation: an axis permutation and flips of the voxel array, no resampling.

A network learns anatomy in the array orientation of its training data: the brain models were trained on
FreeSurfer-conformed maps (LIA), and a NIfTI T1 in RAS shows them the brain rotated and mirrored (on the real
Colin27 T1 the left and right nuclei swapped: Dice 0.000). So training brings every case to one orientation, the
bundle records it (``preprocessing.orientation``) and inference brings the input there and the output back, the
way MONAI bundles use ``Orientationd`` and FreeSurfer conforms to LIA. Unlike a resampling, a permutation and
flips keep every voxel, so the output lands on exactly the input grid.

Codes are three letters, one per ITK axis (x, y, z), naming the direction that axis *increases towards* (the
convention of nibabel, FreeSurfer, MONAI's ``axcodes`` and ``sitk.DICOMOrient``): ``LPS`` is ITK's identity
direction, ``RAS`` a NIfTI identity affine, ``LIA`` FreeSurfer's conformed space. An oblique grid gets the code of
its nearest axes (as ``DICOMOrient`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

OPPOSITE = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}


def orientation_code(direction: Sequence[float]) -> str:
    """The three-letter code of an ITK direction matrix (``image.GetDirection()``)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines([float(d) for d in direction])


def check_code(code: str) -> str:
    """``code`` upper-cased, or ValueError unless it names each of L/R, P/A, S/I exactly once."""
    upper = str(code).upper()
    axes = sorted("LPS".find(c) if c in "LPS" else "RAI".find(c) for c in upper)
    if len(upper) != 3 or any(c not in OPPOSITE for c in upper) or axes != [0, 1, 2]:
        raise ValueError(f"orientation '{code}' is not a code like LPS, RAS or LIA (one of L/R, P/A, S/I each)")
    return upper


@dataclass(frozen=True)
class Reorientation:
    """Permutation and flips of the last three (``Z, Y, X``) axes of an array, numpy or torch.

    ``axes[j]`` is the source array axis that becomes array axis ``j``; ``flips`` are the array axes (after the
    permutation) that reverse.
    """

    axes: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[int, ...] = ()

    @property
    def identity(self) -> bool:
        return self.axes == (0, 1, 2) and not self.flips

    def source_values(self, values: Sequence[float] | None) -> tuple[float, ...] | None:
        """Per-axis values given in the target's ITK (x, y, z) order (a network spacing) in the source's order."""
        if values is None or self.identity:
            return None if values is None else tuple(values)
        out = [0.0] * 3
        for t, value in enumerate(values):
            out[2 - self.axes[2 - t]] = value
        return tuple(out)

    def apply(self, array: Any) -> Any:
        """``array`` (``(..., Z, Y, X)``) in the target orientation (a view for numpy, a copy for torch)."""
        if self.identity:
            return array
        lead = array.ndim - 3
        order = (*range(lead), *(lead + a for a in self.axes))
        flips = tuple(lead + a for a in self.flips)
        if isinstance(array, np.ndarray):
            out = np.transpose(array, order)
            return np.flip(out, flips) if flips else out
        out = array.permute(order)
        return out.flip(flips) if flips else out

    def undo(self, array: Any) -> Any:
        """The inverse of :meth:`apply`: an array in the target orientation back in the source's."""
        if self.identity:
            return array
        lead = array.ndim - 3
        flips = tuple(lead + a for a in self.flips)
        inverse = tuple(int(i) for i in np.argsort(self.axes))
        order = (*range(lead), *(lead + a for a in inverse))
        if isinstance(array, np.ndarray):
            return np.transpose(np.flip(array, flips) if flips else array, order)
        return (array.flip(flips) if flips else array).permute(order)


def reorientation(direction: Sequence[float], target: str) -> Reorientation:
    """How an array on a grid with ITK ``direction`` becomes ``target`` (a code), matching ``sitk.DICOMOrient``."""
    source, target = orientation_code(direction), check_code(target)
    axes, flips = [], []
    for t, letter in enumerate(target):  # ITK axis t of the target
        i = next(i for i, c in enumerate(source) if c in (letter, OPPOSITE[letter]))
        axes.append(2 - i)  # array axes run z, y, x
        if source[i] != letter:
            flips.append(2 - t)
    axes.reverse()
    return Reorientation(tuple(axes), tuple(sorted(flips)))


def reorient_grid(grid: sitk.Image, target: str | None) -> tuple[sitk.Image, Reorientation]:
    """``grid`` in the ``target`` orientation (same voxel centres, permuted) and the array mapping; ``grid``
    itself and the identity when ``target`` is None or already the grid's."""
    if not target:
        return grid, Reorientation()
    turn = reorientation(grid.GetDirection(), target)
    if turn.identity:
        return grid, turn
    return sitk.DICOMOrient(grid, check_code(target)), turn
