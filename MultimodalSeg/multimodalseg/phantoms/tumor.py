"""Brain tumour (BraTS) phantom: a glioma with necrotic core, enhancing rim and oedema in a skull-stripped brain.

The head is :func:`brain.head_scene`; the tumour is three nested irregular blobs placed in one hemisphere's
white matter (seeded size, position, shape and orientation): oedema (ED, label 2) infiltrating parenchyma,
the tumour core whose rim enhances (ET, label 4) and its necrotic centre (NCR/NET, label 1). Four MR contrasts
on one grid (BraTS is co-registered), skull-stripped: zero outside the brain.
"""

from __future__ import annotations

import numpy as np

from multimodalseg.phantoms import brain
from multimodalseg.phantoms import contrast as cx
from multimodalseg.phantoms.case import GridDefault, PhantomModel, RenderRequest, register_model
from multimodalseg.phantoms.geometry import axis_angle, random_unit
from multimodalseg.phantoms.shapes import Ellipsoid, Scene, Wobble

NCR, ED, ET = 2001, 2002, 2004
_PARENCHYMA = tuple(c for c in brain.BRAIN_CODES if c not in brain.CSF_CODES)
_OUTSIDE = (0, brain.SCALP, brain.SKULL, brain.NECK)


def _scene(rng: np.random.Generator, modality: str | None) -> Scene:
    scene, _keys = brain.head_scene(rng)
    side = rng.choice([-1.0, 1.0])
    centre = np.array([side * rng.uniform(20.0, 36.0), rng.uniform(-40.0, 38.0), rng.uniform(2.0, 34.0)])
    r_whole = rng.uniform(17.0, 28.0)
    r_core = r_whole * rng.uniform(0.45, 0.6)
    r_necrosis = r_core * rng.uniform(0.48, 0.65)

    def blob(c, r, amplitude):
        rot = axis_angle(random_unit(rng), rng.uniform(0.0, 180.0))
        return Ellipsoid(c, r * rng.uniform(0.85, 1.15, 3), rot, Wobble.random(rng, 6, amplitude, (2.0, 4.5)))

    core_centre = centre + random_unit(rng) * r_whole * 0.15  # the core is seldom central in the oedema
    scene.add(blob(centre, r_whole, 0.3), ED, _PARENCHYMA)
    scene.add(blob(core_centre, r_core, 0.15), ET, _PARENCHYMA + brain.CSF_CODES + (ED,))
    scene.add(blob(core_centre + random_unit(rng) * r_core * 0.1, r_necrosis, 0.12), NCR, (ET,))
    scene.info = {"tumor": {"centre_mm": [round(float(v), 2) for v in centre], "radius_whole_mm": round(r_whole, 2),
                            "radius_core_mm": round(r_core, 2), "radius_necrosis_mm": round(r_necrosis, 2)}}
    return scene


def _table(base: dict[int, float], wm: float, gm: float, csf: float, deep: float, tumour: tuple[float, float, float]):
    """A contrast from the T1 table's structure: every code's tissue class gets this sequence's value."""
    out = {}
    for code in base:
        if code in brain.CSF_CODES:
            out[code] = csf
        elif code in (brain.WM_L, brain.WM_R, 7, 46, 16, 28, 60, 85, 251, 252, 253, 254, 255, brain.CORD):
            out[code] = wm
        elif code in (brain.CORTEX_L, brain.CORTEX_R, 8, 47, 17, 53, 18, 54):
            out[code] = gm
        else:
            out[code] = deep
    out[NCR], out[ED], out[ET] = tumour
    return out


_T1 = brain.T1_VALUES
CONTRASTS = {  # (WM, GM, CSF, deep grey, (NCR, ED, ET)); arbitrary MR units like BraTS' int16 files
    "t1": _table(_T1, 112.0, 70.0, 24.0, 84.0, (42.0, 78.0, 76.0)),
    "t1ce": _table(_T1, 110.0, 72.0, 24.0, 84.0, (36.0, 80.0, 170.0)),
    "t2": _table(_T1, 62.0, 95.0, 200.0, 88.0, (185.0, 160.0, 118.0)),
    "flair": _table(_T1, 84.0, 104.0, 18.0, 100.0, (92.0, 185.0, 148.0)),
}
CONTRASTS["t1ce"].update({30: 150.0, 62: 150.0, 31: 135.0, 63: 135.0})  # vessels and choroid plexus enhance


def _contrast(rng: np.random.Generator, modality: str | None) -> dict:
    return {role: {"table": cx.jitter(CONTRASTS[role], rng, 0.03), "gain": float(rng.uniform(0.7, 1.4)),
                   "noise": float(rng.uniform(0.015, 0.035)), "bias": float(rng.uniform(0.05, 0.2))}
            for role in ("flair", "t1", "t1ce", "t2")}


def _render(req: RenderRequest) -> np.ndarray:
    p = req.params[req.role]
    img = brain.render_t1(req, p["table"], p["gain"], p["noise"], p["bias"])
    outside = np.isin(req.codes, _OUTSIDE)  # skull stripping, as BraTS distributes the images
    img[outside] = 0.0
    return img


MODEL = register_model(PhantomModel(
    task_id="brain-tumor",
    grids={"": GridDefault((80, 96, 80), (2.0, 2.0, 2.0))},
    clinical_grids={"": GridDefault((155, 240, 240), (1.0, 1.0, 1.0))},
    build_scene=_scene,
    contrast=_contrast,
    render=_render,
    code_labels={NCR: 1, ED: 2, ET: 4},
    misregister_default=False,
))
