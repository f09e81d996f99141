"""Checks on paired landmark sets before a fit: shapes, counts, finiteness, duplicates and degenerate geometry.

Tolerances are relative to the spread of the points, so the checks mean the same in mm or in metres.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.spatial.distance import pdist

from multimodalseg.errors import UserError

MODES = ("rigid", "similarity", "affine", "tps")
# Minimum number of pairs and what their geometry must span (1: a line is degenerate, 2: a plane is).
MIN_PAIRS = {"rigid": 3, "similarity": 3, "affine": 4, "tps": 4}
# A set is "collinear" when its second singular value (after centring) is below this fraction of the first,
# "coplanar" when its third is. 1e-3 is 0.1 mm off the line over 100 mm: the fit would then hinge on noise.
DEGENERACY_TOLERANCE = 1e-3
# Two points of one set "coincide" when closer than this fraction of the set's RMS radius.
DUPLICATE_TOLERANCE = 1e-6


def check_mode(mode: str) -> str:
    m = str(mode).lower()
    if m not in MODES:
        raise UserError(f"unknown registration mode {mode!r}; use one of {', '.join(MODES)}")
    return m


def as_points(points: object, what: str, source: str | os.PathLike | None = None) -> np.ndarray:
    """An (N, 3) float64 array, refusing other shapes and NaN/inf."""
    try:
        arr = np.array(points, dtype=float)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{what} points are not numeric", source) from exc
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise UserError(f"{what} points must be an (N, 3) array, got shape {arr.shape}", source)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise UserError(f"{what} point {int(np.argmax(bad)) + 1} has a NaN or infinite coordinate", source)
    return arr


def check_pairs(
    fixed: object,
    moving: object,
    mode: str,
    sources: tuple[str | os.PathLike | None, str | os.PathLike | None] = (None, None),
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a paired landmark set for ``mode``; returns (fixed, moving) as (N, 3) float64 arrays.

    Args:
        fixed, moving: (N, 3) paired points (pair i is row i of each).
        mode: ``rigid``, ``similarity``, ``affine`` or ``tps``.
        sources: where each set came from (a file), named in the error message.

    Raises:
        UserError: counts differ, too few pairs, NaN/inf, two points of one set coincide, or the points of a set
            are collinear (rigid, similarity) or coplanar (affine, tps), within the relative tolerances above.
    """
    mode = check_mode(mode)
    f = as_points(fixed, "fixed", sources[0])
    m = as_points(moving, "moving", sources[1])
    if len(f) != len(m):
        raise UserError(f"{len(f)} fixed points but {len(m)} moving points; landmarks are paired in order")
    need = MIN_PAIRS[mode]
    if len(f) < need:
        raise UserError(f"{mode} registration needs at least {need} landmark pairs, got {len(f)}")
    for what, pts, source in (("fixed", f, sources[0]), ("moving", m, sources[1])):
        _check_duplicates(pts, what, source)
        _check_spread(pts, what, mode, source)
    return f, m


def _check_duplicates(pts: np.ndarray, what: str, source: str | os.PathLike | None) -> None:
    centred = pts - pts.mean(axis=0)
    radius = float(np.sqrt((centred**2).sum(axis=1).mean()))
    d = pdist(pts)
    close = np.flatnonzero(d <= DUPLICATE_TOLERANCE * radius)
    if close.size:
        i, j = _pair_from_condensed(int(close[0]), len(pts))
        raise UserError(f"{what} points {i + 1} and {j + 1} coincide; each landmark must be placed once", source)


def _pair_from_condensed(k: int, n: int) -> tuple[int, int]:
    # Index k of scipy's condensed distance vector -> the pair (i, j), i < j.
    i = 0
    while k >= n - 1 - i:
        k -= n - 1 - i
        i += 1
    return i, i + 1 + k


def _check_spread(pts: np.ndarray, what: str, mode: str, source: str | os.PathLike | None) -> None:
    s = np.linalg.svd(pts - pts.mean(axis=0), compute_uv=False)
    if s[0] == 0:
        raise UserError(f"all {what} points coincide", source)
    if s[1] <= DEGENERACY_TOLERANCE * s[0]:
        raise UserError(
            f"{what} points are collinear (thickness {s[1] / s[0]:.1e} of their extent); "
            f"{mode} registration needs points that span a plane", source
        )
    if mode in ("affine", "tps") and s[2] <= DEGENERACY_TOLERANCE * s[0]:
        raise UserError(
            f"{what} points are coplanar (thickness {s[2] / s[0]:.1e} of their extent); "
            f"{mode} registration needs 4 or more points that span a volume", source
        )
