"""Coarse body models around a real organ map, so a synthetic CT or MR looks like a thorax or a lumbar region.

Both embed the organ map into a larger axis-aligned grid (LPS, identity direction) and paint tissues in
physical mm around it, with random sizes per sample:

- thorax (heart): body ellipse with subcutaneous fat and a chest-wall muscle layer, two lungs, mediastinal
  soft tissue, epicardial fat, a vertebral column with discs and canal behind the heart, the descending
  aorta, a sternum, the diaphragm with the liver below it on the right;
- lumbar (spine): paraspinal muscle near the column, abdominal soft tissue in front, subcutaneous fat, air.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from multimodalseg.phantoms.geometry import Grid
from multimodalseg.synthesis import labels as lt
from multimodalseg.synthesis.spatial import grid_points, sample_nearest

T = lt.THORAX


def embed(labels: np.ndarray, grid: Grid, lo: np.ndarray, hi: np.ndarray, spacing: float) -> tuple[np.ndarray, Grid]:
    """``labels`` resampled (nearest) onto an identity-direction grid spanning ``lo``..``hi`` (LPS mm)."""
    size = np.maximum(np.ceil((hi - lo) / spacing).astype(int), 4)
    out_grid = Grid(tuple(int(s) for s in size[::-1]), (spacing,) * 3, tuple(float(v) for v in lo),
                    tuple(np.eye(3).ravel()))
    import torch

    pts = torch.from_numpy(grid_points(out_grid))
    return sample_nearest(labels, grid, pts).reshape(out_grid.shape), out_grid


def _coords(grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, y, x = (np.asarray(grid.origin)[i] + np.arange(n) * grid.spacing[i] for i, n in zip((2, 1, 0), grid.shape))
    return np.meshgrid(z, y, x, indexing="ij", sparse=True)


def thorax(heart: np.ndarray, grid: Grid, rng: np.random.Generator, spacing: float = 2.0,
           ) -> tuple[np.ndarray, Grid, np.ndarray]:
    """The heart map (task values) inside a painted thorax; returns (uint16 map, its grid, the body's centre: x and
    y of the body ellipse's centre, z of the heart's, LPS mm)."""
    mask0 = np.isin(heart, lt.HEART_VALUES)
    idx = np.argwhere(mask0)[:, ::-1].astype(float)
    pts = np.asarray(grid.origin) + idx @ grid.matrix.T
    hlo, hhi = pts.min(0), pts.max(0)
    hc = (hlo + hhi) / 2
    lo = hc - np.array([190.0, 150.0, 130.0])
    hi = hc + np.array([190.0, 150.0, 130.0])
    lab, g = embed(heart, grid, lo, hi, spacing)
    heart_mask = np.isin(lab, lt.HEART_VALUES)
    z, y, x = _coords(g)

    x_mid = hc[0] - rng.uniform(10.0, 25.0)  # the heart sits left of the midline
    y_front = hlo[1] - rng.uniform(15.0, 35.0)  # anterior chest wall in front of the RV
    y_spine = hhi[1] + rng.uniform(12.0, 25.0) + 18.0  # vertebral body centre behind the LA
    y_back = y_spine + rng.uniform(55.0, 80.0)
    ax, ay = rng.uniform(130.0, 175.0), (y_back - y_front) / 2
    yc = (y_back + y_front) / 2
    ell = ((x - x_mid) / ax) ** 2 + ((y - yc) / ay) ** 2
    fat_mm, muscle_mm = rng.uniform(5.0, 30.0), rng.uniform(8.0, 20.0)

    def inside(margin: float) -> np.ndarray:
        return ((x - x_mid) / (ax - margin)) ** 2 + ((y - yc) / (ay - margin)) ** 2 < 1.0

    shape = lab.shape
    out = np.zeros(shape, np.uint16)
    body = np.broadcast_to(ell < 1.0, shape)
    out[body] = T["fat"]
    out[np.broadcast_to(inside(fat_mm), shape)] = T["muscle"]
    cavity = np.broadcast_to(inside(fat_mm + muscle_mm), shape)
    out[cavity] = T["soft"]

    z_dia = hlo[2] + rng.uniform(-10.0, 15.0)  # diaphragm dome height, under the heart
    dome = z_dia - 0.004 * ((x - x_mid) ** 2 + (y - yc) ** 2) ** 1.0 * rng.uniform(0.5, 1.5)
    above = np.broadcast_to(z > dome, shape)
    medi_half = rng.uniform(20.0, 35.0)
    mediastinum = ndimage.binary_dilation(heart_mask, iterations=int(round(rng.uniform(4.0, 10.0) / spacing)))
    mediastinum |= np.broadcast_to((np.abs(x - x_mid) < medi_half) & (y < y_spine + 25.0), shape)
    lungs = cavity & above & ~mediastinum
    out[lungs] = T["lung"]
    airway = np.broadcast_to(((x - x_mid) ** 2 + (y - (hc[1] + 10)) ** 2 < rng.uniform(6, 9) ** 2)
                             & (z > hhi[2] - 10), shape)
    out[airway & cavity] = T["airway"]
    liver = cavity & ~above & np.broadcast_to(x < x_mid + rng.uniform(0.0, 40.0), shape)
    out[liver] = T["liver"]

    # vertebral column: cortical shell, marrow, discs every ~30 mm, canal and posterior arch behind
    r_vb = rng.uniform(15.0, 21.0)
    rr = np.sqrt((x - x_mid) ** 2 + (y - y_spine) ** 2)
    period, phase = rng.uniform(26.0, 34.0), rng.uniform(0.0, 30.0)
    disc = np.broadcast_to(np.mod(z - phase, period) < rng.uniform(5.0, 9.0), shape)
    column = np.broadcast_to(rr < r_vb, shape)
    out[column] = T["bone"]
    out[column & np.broadcast_to(rr < r_vb - 2.5, shape)] = T["marrow"]
    out[column & disc] = T["soft"]
    rc = np.sqrt((x - x_mid) ** 2 + (y - y_spine - r_vb - 9.0) ** 2)
    out[np.broadcast_to((rc < 15.0) & (rc >= 8.0), shape) & ~disc] = T["bone"]
    out[np.broadcast_to(rc < 8.0, shape)] = T["csf"]
    r_ao = rng.uniform(9.0, 14.0)
    aorta = np.broadcast_to((x - x_mid - 25.0) ** 2 + (y - y_spine + r_vb) ** 2 < r_ao ** 2, shape)
    out[aorta & cavity] = T["blood"]
    sternum = np.broadcast_to((np.abs(x - x_mid) < 16.0) & (np.abs(y - y_front - fat_mm - muscle_mm + 4) < 6.0),
                              shape)
    out[sternum & above] = T["bone"]
    epi = ndimage.binary_dilation(heart_mask, iterations=max(1, int(round(rng.uniform(2.0, 6.0) / spacing))))
    out[epi & ~heart_mask & (out != T["lung"])] = T["fat"]
    out[heart_mask] = lab[heart_mask]
    return out, g, np.array([x_mid, yc, hc[2]])


def lumbar(spine: np.ndarray, grid: Grid, rng: np.random.Generator, spacing: float = 1.5,
           ) -> tuple[np.ndarray, Grid]:
    """The spine map (subregion values) inside painted muscle, abdomen and fat; returns (map, its grid)."""
    mask0 = spine > 0
    idx = np.argwhere(mask0)[:, ::-1].astype(float)
    pts = np.asarray(grid.origin) + idx @ grid.matrix.T
    slo, shi = pts.min(0), pts.max(0)
    lo = slo - np.array([50.0, 80.0, 10.0])
    hi = shi + np.array([50.0, 60.0, 10.0])
    lab, g = embed(spine, grid, lo, hi, spacing)
    z, y, x = _coords(g)
    col = np.isin(lab, lt.SPINE_VERTEBRA + lt.SPINE_DISC + lt.SPINE_PAINTED_ONLY)
    c = np.argwhere(col).mean(0) if col.any() else np.array(lab.shape) / 2
    xc = float(g.origin[0] + c[2] * spacing)
    yc = float(g.origin[1] + c[1] * spacing)
    shape = lab.shape
    out = np.zeros(shape, np.uint16)
    ax, ay = rng.uniform(130.0, 170.0), rng.uniform(100.0, 130.0)
    y_body = yc - ay + rng.uniform(40.0, 70.0)  # the column lies in the back of the body
    body = np.broadcast_to(((x - xc) / ax) ** 2 + ((y - y_body) / ay) ** 2 < 1.0, shape)
    out[body] = lt.SPINE_BODY["fat"]
    fat = rng.uniform(8.0, 30.0)
    inner = np.broadcast_to(((x - xc) / (ax - fat)) ** 2 + ((y - y_body) / (ay - fat)) ** 2 < 1.0, shape)
    out[inner] = lt.SPINE_BODY["soft"]
    dist = ndimage.distance_transform_edt(~col, sampling=spacing) if col.any() else np.full(shape, 1e3)
    muscle = inner & (dist < rng.uniform(25.0, 45.0)) & np.broadcast_to(y > yc - 25.0, shape)
    out[muscle] = lt.SPINE_BODY["muscle"]
    out[lab > 0] = lab[lab > 0]
    return out, g
