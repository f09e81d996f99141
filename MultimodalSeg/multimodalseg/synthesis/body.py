"""Coarse body models around a real organ map, so a synthetic CT or MR looks like a thorax or a lumbar region.

Both embed the organ map into a larger axis-aligned grid (LPS, identity direction) and paint tissues in
physical mm around it, with random sizes per sample:

- thorax (heart): body ellipse with subcutaneous fat and a chest-wall muscle layer, two lungs, mediastinal
  soft tissue, epicardial fat, a vertebral column with discs and canal behind the heart, the descending
  aorta, a sternum, the diaphragm with the liver below it on the right; ribs in the chest wall; above the heart
  what a chest scan's upper field shows (:func:`_upper_thorax`): the lung apices, the great vessels, trachea
  and oesophagus, clavicles, scapulae, the shoulders (humeral heads in some) and the neck;
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
    # A chest scan's field reaches up to 270 mm above the heart's centre (generate._chest_field): paint up to the
    # neck. Left, right and behind, the grid ends in air: images are sampled with edge values outside it, and an
    # edge through the body (back or shoulders) would be repeated into a band of tissue beyond the body.
    lo = hc - np.array([240.0, 150.0, 130.0])
    hi = hc + np.array([240.0, 200.0, 280.0])
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
    aorta = np.broadcast_to(((x - x_mid - 25.0) ** 2 + (y - y_spine + r_vb) ** 2 < r_ao ** 2)
                            & (z < hhi[2] - rng.uniform(5.0, 20.0)), shape)  # it ends at the arch
    out[aorta & cavity] = T["blood"]
    sternum = np.broadcast_to((np.abs(x - x_mid) < 16.0) & (np.abs(y - y_front - fat_mm - muscle_mm + 4) < 6.0),
                              shape)
    out[sternum & above] = T["bone"]
    wall = fat_mm + muscle_mm
    _upper_thorax(out, (z, y, x), rng, x_mid=x_mid, yc=yc, ax=ax, ay=ay, fat=fat_mm, wall=wall, y_front=y_front,
                  y_spine=y_spine, r_vb=r_vb, heart_top=hhi[2], z_dia=z_dia, airway_y=hc[1] + 10)
    epi = ndimage.binary_dilation(heart_mask, iterations=max(1, int(round(rng.uniform(2.0, 6.0) / spacing))))
    out[epi & ~heart_mask & (out != T["lung"])] = T["fat"]
    out[heart_mask] = lab[heart_mask]
    return out, g, np.array([x_mid, yc, hc[2]])


def _tube(coords, a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Voxels within ``radius`` mm of the segment a-b (x, y, z mm)."""
    z, y, x = coords
    d = b - a
    t = np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1] + (z - a[2]) * d[2]) / float(d @ d), 0.0, 1.0)
    return (x - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 + (z - a[2] - t * d[2]) ** 2 < radius ** 2


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """The axial ellipse's level (< 1 inside) centred at (cx, cy) with half-axes ax, ay (mm)."""
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2


def _upper_thorax(out: np.ndarray, coords, rng: np.random.Generator, *, x_mid: float, yc: float, ax: float,
                  ay: float, fat: float, wall: float, y_front: float, y_spine: float, r_vb: float, heart_top: float,
                  z_dia: float, airway_y: float) -> None:
    """Paint, in place, what surrounds and lies above a real heart in a chest scan, so that a localiser learns
    that mediastinal soft tissue, bright vessels and bone between the lungs are not all heart. Sizes are adult
    ranges in mm, drawn per sample; nothing here is labelled (all of it is background to the task)."""
    z, y, x = coords
    shape = out.shape
    u = rng.uniform

    def put(mask, tissue, where=None):
        m = np.broadcast_to(mask, shape)
        out[m if where is None else m & where] = T[tissue]

    body = out > 0
    z_apex = heart_top + u(25.0, 60.0)  # lung apices above the aortic arch
    z_shoulder = z_apex - u(0.0, 30.0)
    z_neck = z_apex + u(35.0, 70.0)
    # lungs taper to their apices: above z_taper each lung shrinks to a point, the rest becomes muscle
    z_taper = z_apex - u(50.0, 90.0)
    f = np.sqrt(np.clip(1.0 - ((z - z_taper) / (z_apex - z_taper)) ** 2, 0.0, 1.0)) * (z > z_taper) + (z <= z_taper)
    lung_cx, lung_cy = u(0.45, 0.6) * ax, yc + u(0.0, 0.2) * ay
    apex_kept = np.zeros(shape, bool)
    for side in (-1.0, 1.0):
        apex_kept |= np.broadcast_to(((x - x_mid - side * lung_cx) / (0.5 * ax * f + 1e-3)) ** 2
                                     + ((y - lung_cy) / (0.75 * ay * f + 1e-3)) ** 2 < 1.0, shape)
    out[(out == T["lung"]) & ~apex_kept & np.broadcast_to(z > z_taper, shape)] = T["muscle"]
    # ribs: bands across the cavity's edge, sloping down to the front, from below the diaphragm to the apex
    rib_in, rib_out = wall - u(3.0, 6.0), wall + u(2.0, 5.0)
    e_in = _ellipse(x, y, x_mid, yc, ax - rib_out, ay - rib_out)
    e_out = _ellipse(x, y, x_mid, yc, ax - rib_in, ay - rib_in)
    period, thick, slope, phase = u(20.0, 28.0), u(7.0, 11.0), u(0.2, 0.45), u(0.0, 28.0)
    rib_band = np.mod(z - slope * (y - y_front) - phase, period) < thick
    ribs = (e_in >= 1.0) & (e_out < 1.0) & rib_band & (z > z_dia - u(40.0, 90.0)) & (z < z_apex + 5.0)
    ribs &= ~((np.abs(x - x_mid) < u(20.0, 35.0)) & (y < yc))  # costal cartilage beside the sternum
    put(ribs, "bone", body)
    # manubrium: the sternum's wide top
    put((np.abs(x - x_mid) < u(22.0, 30.0)) & (np.abs(y - y_front - wall + 4.0) < 7.0)
        & (z > heart_top - 15.0) & (z < z_apex + 15.0), "bone", body)
    # trachea continues (painted by the caller) with the oesophagus behind it; great vessels beside them
    y_oe = y_spine - r_vb - u(6.0, 10.0)
    r_oe = u(6.0, 9.0)
    put(((x - x_mid - u(0.0, 8.0)) ** 2 + (y - y_oe) ** 2 < r_oe ** 2) & (z > z_dia), "soft", body)
    if u() < 0.5:
        put(((x - x_mid) ** 2 + (y - y_oe) ** 2 < u(1.5, 3.5) ** 2) & (z > z_dia), "airway", body)
    top = float(z.max())
    vessels = [  # (x offset, y offset from the trachea, radius, lateral drift per mm above the apex)
        (-u(18.0, 30.0), -u(10.0, 25.0), u(7.0, 11.0), 0.0),   # superior vena cava / right brachiocephalic vein
        (-u(5.0, 14.0), -u(12.0, 22.0), u(5.0, 7.0), -u(0.0, 0.4)),  # brachiocephalic trunk, then right carotid
        (u(5.0, 14.0), -u(5.0, 15.0), u(4.0, 6.0), u(0.0, 0.3)),  # left common carotid
        (u(15.0, 26.0), u(-5.0, 5.0), u(5.0, 7.0), u(0.8, 1.5)),  # left subclavian, to the shoulder
        (-u(15.0, 26.0), u(-5.0, 5.0), u(5.0, 7.0), -u(0.8, 1.5)),  # right subclavian
    ]
    z0 = heart_top - u(25.0, 40.0)
    for dx, dy, r, drift in vessels:
        a = np.array([x_mid + dx, airway_y + dy, z0])
        b = np.array([x_mid + dx, airway_y + dy, z_apex])
        c = np.array([x_mid + dx + drift * (top - z_apex), airway_y + dy, top])
        put(_tube(coords, a, b, r) | _tube(coords, b, c, r), "blood", body)
    z_vein = heart_top + u(0.0, 20.0)  # left brachiocephalic vein crosses in front of the arteries
    put(_tube(coords, np.array([x_mid + u(35.0, 50.0), airway_y - 30.0, z_vein + 15.0]),
              np.array([x_mid - 22.0, airway_y - 20.0, z_vein]), u(4.0, 7.0)), "blood", body)
    # clavicles from the manubrium's top out to the shoulders; scapulae on the back of the rib cage
    z_cl = z_apex + u(-5.0, 20.0)
    for side in (-1.0, 1.0):
        a = np.array([x_mid + side * u(18.0, 28.0), y_front + wall - 6.0, z_cl])
        b = np.array([x_mid + side * (ax - u(15.0, 35.0)), yc - u(0.1, 0.4) * ay, z_cl + u(10.0, 30.0)])
        r = u(5.0, 8.0)
        put(_tube(coords, a, b, r), "bone", body)
        put(_tube(coords, a, b, r - 2.5), "marrow", body)
        e_sc = _ellipse(x, y, x_mid, yc, ax - fat - u(3.0, 6.0), ay - fat - u(3.0, 6.0))
        scap = (np.abs(np.sqrt(e_sc) - 1.0) < u(2.0, 3.0) / ay) & (y > yc + u(0.2, 0.4) * ay)
        scap &= (side * (x - x_mid) > u(35.0, 50.0)) & (side * (x - x_mid) < u(95.0, 125.0))
        put(scap & (z > z_apex - u(100.0, 150.0)) & (z < z_apex + u(10.0, 30.0)), "bone", body)
    # shoulders widen the body above z_shoulder (muscle under the fat), humeral heads when the arms are down
    ax_sh = ax + u(15.0, 55.0)
    shoulder = (_ellipse(x, y, x_mid, yc, ax_sh, ay) < 1.0) & (z > z_shoulder) & (z < z_neck)
    shoulder_in = _ellipse(x, y, x_mid, yc, ax_sh - fat, ay - fat) < 1.0
    new = np.broadcast_to(shoulder, shape) & ~body
    out[new] = T["fat"]
    out[new & np.broadcast_to(shoulder_in, shape)] = T["muscle"]
    if u() < 0.5:
        for side in (-1.0, 1.0):
            rh = u(20.0, 26.0)
            cx = x_mid + side * (ax_sh - fat - rh - u(0.0, 10.0))
            head = (x - cx) ** 2 + (y - yc - u(-10.0, 15.0)) ** 2 + (z - z_shoulder - u(10.0, 30.0)) ** 2
            put(head < rh ** 2, "bone")
            put(head < (rh - 3.0) ** 2, "marrow")
    # the neck above the shoulders: a smaller ellipse around the column, trachea and vessels kept
    yn = (airway_y + y_spine) / 2 + u(-5.0, 5.0)  # the trachea in front, the column behind
    ax_n, ay_n = u(55.0, 75.0), max(u(50.0, 70.0), (y_spine + r_vb + 30.0 - airway_y) / 2)
    en = _ellipse(x, y, x_mid, yn, ax_n, ay_n)
    neck_fat = min(fat, 12.0)
    above_neck = np.broadcast_to(z >= z_neck, shape)
    keep = np.isin(out, (T["bone"], T["marrow"], T["csf"], T["airway"], T["blood"], T["soft"]))
    neck = np.broadcast_to(en < 1.0, shape)
    out[above_neck & ~neck] = 0
    out[above_neck & neck & ~keep] = T["muscle"]
    out[above_neck & neck & np.broadcast_to(en > (1.0 - neck_fat / ay_n) ** 2, shape)] = T["fat"]


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
