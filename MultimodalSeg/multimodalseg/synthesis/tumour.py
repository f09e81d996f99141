"""Glioma-like tumours pasted into a healthy painted brain map, with mass effect.

A tumour is three nested, irregular regions drawn from thresholded smooth noise around anisotropic, rotated
ellipsoids (never spheres): oedema spreading through white matter around a core; the core an enhancing rim
around necrosis (or, for some tumours, a non-enhancing core, or an enhancing core without necrosis). The
surrounding tissue is pushed outward first (volume conservation near the core, decaying with distance).
Centres fall in cerebral white matter 80 % of the time, else anywhere in the cerebrum.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from multimodalseg.phantoms.geometry import Grid, rotation

NCR, ED, ET = 201, 202, 204  # painted values; output 1, 2, 4
TUMOUR_OUTPUT = {NCR: 1, ED: 2, ET: 4}
WM = (2, 41)
CEREBRUM = (2, 3, 41, 42, 10, 11, 12, 13, 17, 18, 26, 28, 49, 50, 51, 52, 53, 54, 58, 60, 77)
NO_OEDEMA = (0, 4, 5, 14, 15, 24, 124, 43, 44, 72, 31, 63, 30, 62)  # fluid spaces and vessels stay themselves


def _smooth_noise(rng: np.random.Generator, shape, sigma_vox: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return n / max(float(n.std()), 1e-6)


def add_tumour(painted: np.ndarray, grid: Grid, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A copy of ``painted`` with one tumour (values :data:`NCR`, :data:`ED`, :data:`ET`); returns it and facts."""
    sp = np.asarray(grid.spacing, float)[::-1]  # (z, y, x) mm per voxel (the packaged maps are near isotropic)
    kind = rng.choice(["necrotic", "non-enhancing", "solid"], p=[0.7, 0.15, 0.15])
    r_wt = float(rng.uniform(18.0, 38.0))  # oedema extent (mm)
    r_core = r_wt * float(rng.uniform(0.35, 0.7))
    in_wm = rng.random() < 0.8
    brain = np.isin(painted, CEREBRUM)
    pool = np.isin(painted, WM) if in_wm else brain
    # keep the core inside the brain: candidates at least the core radius from its outside
    depth = ndimage.distance_transform_edt(brain, sampling=sp)
    cand = np.argwhere(pool & (depth > min(r_core, 20.0)))
    if len(cand) == 0:
        cand = np.argwhere(pool)
    centre = cand[rng.integers(len(cand))]
    half = np.ceil((r_wt * 1.8 + 10.0) / sp).astype(int)
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, painted.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = painted[box]
    zz, yy, xx = np.meshgrid(*[(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, centre, sp)], indexing="ij")
    offs = np.stack([zz, yy, xx], -1)  # mm from the centre, (z, y, x) components

    # Mass effect: tissue at radius r came from r0 = cbrt(r^3 - a^3) near the core, fading out by ~3a.
    a = r_core * float(rng.uniform(0.5, 0.9))
    r = np.linalg.norm(offs, axis=-1)
    w = np.exp(-((r / (3.0 * a)) ** 2))
    r0 = w * np.cbrt(np.maximum(r ** 3 - a ** 3, 0.0)) + (1 - w) * r
    ratio = np.where(r > 1e-6, r0 / np.maximum(r, 1e-6), 0.0)
    src = (offs * ratio[..., None]) / sp + (centre - lo)
    warped = ndimage.map_coordinates(sub, np.moveaxis(src, -1, 0), order=0, mode="nearest").astype(painted.dtype)

    def blob(radius: float, roughness: float, sigma_mm: float) -> np.ndarray:
        radii = radius * rng.uniform(0.7, 1.3, 3)
        rot = rotation(rng.uniform(-180, 180, 3))
        local = offs @ rot / radii
        dist = np.linalg.norm(local, axis=-1)
        return dist + roughness * _smooth_noise(rng, dist.shape, sigma_mm / float(sp.mean())) * 0.3 < 1.0

    oedema = blob(r_wt, 1.0, 6.0)
    core = blob(r_core, 0.8, 4.0) & oedema | blob(r_core * 0.6, 0.2, 3.0)
    core = ndimage.binary_opening(core) if core.sum() > 50 else core
    necrosis = blob(r_core * float(rng.uniform(0.55, 0.85)), 0.6, 3.0) & ndimage.binary_erosion(core, iterations=1)
    tissue = ~np.isin(warped, NO_OEDEMA) & np.isin(warped, CEREBRUM + (7, 46, 16))
    # oedema follows white matter; it enters grey matter only near the core
    gm_ok = r < r_core * 1.6
    oedema &= tissue & (np.isin(warped, WM + (77,)) | gm_ok)
    core &= (warped > 0) & (depth[box] > 0)
    out_sub = warped.copy()
    out_sub[oedema] = ED
    if kind == "necrotic":
        out_sub[core] = ET
        out_sub[core & necrosis] = NCR
    elif kind == "non-enhancing":
        out_sub[core] = NCR
    else:
        out_sub[core] = ET
    out = painted.copy()
    out[box] = out_sub
    vox_ml = float(np.prod(sp)) / 1000.0
    names = (("ncr", NCR), ("ed", ED), ("et", ET))
    counts = {name: round(float((out_sub == v).sum()) * vox_ml, 2) for name, v in names}
    return out, {"tumour_kind": str(kind), "tumour_in_wm": bool(in_wm), "tumour_ml": counts,
                 "mass_effect_mm": round(a, 1)}
