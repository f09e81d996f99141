"""Longer spines than the real crops hold: stack copies of a real motion segment (a vertebra between two discs).

The real map is resampled onto an isotropic axis-aligned grid (LPS, z superior). One segment between two
neighbouring disc centres is copied above the top disc 0-4 times, each copy a little smaller (vertebrae shrink
cranially), shifted a few mm (curvature) and joined disc-half to disc-half. Maps with fewer than two discs
(e.g. the tptbox CT crop) are only resampled.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from multimodalseg.phantoms.geometry import Grid
from multimodalseg.synthesis.body import embed


def stack_vertebrae(labels: np.ndarray, grid: Grid, rng: np.random.Generator, spacing: float = 1.5,
                    max_added: int = 4) -> tuple[np.ndarray, Grid, int]:
    """(labels, grid, number of added levels)."""
    n_add = int(rng.integers(0, max_added + 1))
    shrink = rng.uniform(0.93, 1.0, max_added)
    shifts = rng.uniform(-3.0, 3.0, (max_added, 2))
    idx = np.argwhere(labels > 0)[:, ::-1].astype(float)
    pts = np.asarray(grid.origin) + idx @ grid.matrix.T
    lo, hi = pts.min(0) - 6.0, pts.max(0) + 6.0
    discs, n_disc = ndimage.label(labels == 100)
    if n_disc < 2:
        n_add = 0
    hi = hi + np.array([0.0, 0.0, 45.0 * n_add])
    out, g = embed(labels, grid, lo, hi, spacing)
    if n_add == 0:
        return out, g, 0
    comp, n = ndimage.label(out == 100)
    sizes = ndimage.sum(np.ones_like(comp), comp, range(1, n + 1))
    keep = [k + 1 for k in range(n) if sizes[k] >= 20]
    if len(keep) < 2:
        return out, g, 0
    centres = sorted(ndimage.center_of_mass(comp > 0, comp, keep), key=lambda c: c[0])
    pick = int(rng.integers(len(centres) - 1))
    za, zb = int(round(centres[pick][0])), int(round(centres[pick + 1][0]))
    unit = out[za:zb].copy()
    top = np.asarray(centres[-1])
    z_cur = int(round(top[0]))
    out[z_cur + 1:] = 0  # drop the partial vertebra above the top disc
    anchor = top[1:]
    u_centre = np.asarray(ndimage.center_of_mass(unit == 100)[1:]) if (unit == 100).any() else np.array(
        unit.shape[1:]) / 2
    factor = 1.0
    added = 0
    for k in range(n_add):
        factor *= float(shrink[k])
        scaled = ndimage.zoom(unit, factor, order=0)
        c = u_centre * factor
        dy, dx = (anchor - c + shifts[k] / spacing).round().astype(int)
        z1 = z_cur + scaled.shape[0]
        if z1 > out.shape[0]:
            break
        ys, xs = max(dy, 0), max(dx, 0)
        ye, xe = min(dy + scaled.shape[1], out.shape[1]), min(dx + scaled.shape[2], out.shape[2])
        piece = scaled[:, ys - dy: ye - dy, xs - dx: xe - dx]
        region = out[z_cur:z1, ys:ye, xs:xe]
        region[piece > 0] = piece[piece > 0]
        anchor = anchor + shifts[k] / spacing
        z_cur = z1
        added += 1
    return out, g, added
