"""A head phantom with all 45 labels of FreeSurfer's aseg.mgz, and the PET/MR brain task (T1 + FDG PET).

Anatomy coordinates: mm, x to the patient's left, y posterior, z superior, origin near the thalami (roughly
MNI with x and y negated). Structures sit where an atlas puts them (left/right symmetric, ventricles medial,
basal ganglia lateral, brainstem below, cerebellum posterior-inferior, the corpus callosum arching over the
ventricles). Small structures (vessels, choroid plexus, hypointensities, optic chiasm) are drawn larger than
life so each has >= ~40 voxels at the default 1.75 mm grid and a Dice score can be measured.
Cortex and cerebral white matter are labelled with their aseg values (3/42 and 2/41), as recon-all writes them;
skull, scalp, extra-cerebral CSF, neck and cord are drawn but not labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multimodalseg.phantoms import contrast as cx
from multimodalseg.phantoms.case import GridDefault, MovingGrid, PhantomModel, RenderRequest, register_model
from multimodalseg.phantoms.geometry import rotation
from multimodalseg.phantoms.shapes import Capsule, Clipped, Ellipsoid, Scene, Wobble, tube
from multimodalseg.tasks.freesurfer import ASEG_STRUCTURES

# Cerebral white matter and cortex: aseg labels. The other codes are unlabelled tissue.
WM_L, CORTEX_L, WM_R, CORTEX_R = 2, 3, 41, 42
SKULL, SCALP, CSF_OUTER, NECK, CORD = 1000, 1001, 1002, 1003, 1004
CSF_CODES = (4, 5, 14, 15, 24, 43, 44, 72, CSF_OUTER)
ASEG_VALUES = tuple(v for v, _, _ in ASEG_STRUCTURES)
BRAIN_CODES = ASEG_VALUES

_LEFT = ((0.0, 0.0, 0.0), (-1.0, 0.0, 0.0))  # half-space x >= 0: the patient's left in LPS
_RIGHT = ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0))
_MIRROR = np.diag([-1.0, 1.0, 1.0])


@dataclass
class _Builder:
    """Applies one subject's variation: global scale per axis, small asymmetric shifts, size changes."""

    rng: np.random.Generator
    scale: np.ndarray
    scene: Scene

    def point(self, c, shift: float = 1.5) -> np.ndarray:
        return np.asarray(c, float) * self.scale + self.rng.uniform(-shift, shift, 3)

    def radii(self, r, vary: float = 0.08) -> np.ndarray:
        return np.asarray(r, float) * self.scale * self.rng.uniform(1 - vary, 1 + vary)

    def pair(self, code_left: int, code_right: int, centre, radii, angles=(0.0, 0.0, 0.0), *, wobble=0.0,
             vary: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
        """A left/right pair of ellipsoids, mirrored across x = 0, each with its own small variation."""
        rot = rotation(angles)
        centres = []
        for code, mirror in ((code_left, np.eye(3)), (code_right, _MIRROR)):
            c = self.point(mirror @ np.asarray(centre, float))
            w = Wobble.random(self.rng, 4, wobble, (2.0, 4.0)) if wobble else None
            self.scene.add(Ellipsoid(c, self.radii(radii, vary), mirror @ rot @ mirror, w), code)
            centres.append(c)
        return centres[0], centres[1]


def head_scene(rng: np.random.Generator) -> tuple[Scene, dict[str, np.ndarray]]:
    """The head for one subject: paint operations for all 45 aseg.mgz labels (cortex and white matter included)
    plus extra-cerebral CSF, skull and scalp; returns the scene (with landmarks) and named key points."""
    scene = Scene()
    b = _Builder(rng, rng.uniform(0.94, 1.06, 3), scene)
    vent = rng.uniform(0.85, 1.3)  # ventricle size: young to atrophic
    keys: dict[str, np.ndarray] = {}

    c_brain = b.point((0.0, 14.0, 12.0), 1.0)
    r_brain = np.array([64.0, 82.0, 58.0]) * b.scale
    scene.add(Capsule(b.point((0, 28, -60)), b.point((0, 40, -170)), 44.0), NECK)
    scene.add(Ellipsoid(c_brain + [0, -2, -8], r_brain + [13, 13, 16]), SCALP)
    scene.add(Ellipsoid(c_brain + [0, -1, -6], r_brain + [8, 8, 11]), SKULL)
    scene.add(Ellipsoid(c_brain + [0, 0, -4], r_brain + [2.5, 2.5, 6]), CSF_OUTER)
    outer = Ellipsoid(c_brain, r_brain, None, Wobble.random(rng, 6, 0.05, (3.0, 6.0)))
    scene.add(Clipped(outer, (_LEFT,)), CORTEX_L)
    scene.add(Clipped(outer, (_RIGHT,)), CORTEX_R)
    inner = Ellipsoid(c_brain, r_brain - 7.5, None, Wobble.random(rng, 10, 0.05, (5.0, 10.0)))
    scene.add(Clipped(inner, (((3.0, 0, 0), (-1.0, 0, 0)),)), WM_L, (CORTEX_L,))
    scene.add(Clipped(inner, (((-3.0, 0, 0), (1.0, 0, 0)),)), WM_R, (CORTEX_R,))
    deep = Ellipsoid(b.point((0, 6, 3)), np.array([34.0, 40.0, 22.0]) * b.scale)  # deep white matter, both sides
    scene.add(Clipped(deep, (_LEFT,)), WM_L, (CORTEX_L, CORTEX_R))
    scene.add(Clipped(deep, (_RIGHT,)), WM_R, (CORTEX_L, CORTEX_R))
    fissure = Ellipsoid(c_brain + [0, 0, 30], [1.6, r_brain[1] + 4, r_brain[2] * 0.75])
    scene.add(fissure, CSF_OUTER, (CORTEX_L, CORTEX_R, WM_L, WM_R))

    keys["L cerebellum"], keys["R cerebellum"] = b.pair(8, 47, (24, 58, -36), (26, 22, 17), wobble=0.06)
    b.pair(7, 46, (21, 55, -33), (11, 9, 7.5), wobble=0.1)
    stem_top, stem_bottom = b.point((0, 20, -8)), b.point((0, 32, -70))
    cord_bottom = stem_bottom + [0, 10, -100]
    scene.add(Capsule(stem_bottom, cord_bottom, 9.0), CSF_OUTER)  # the cord below the FreeSurfer brainstem
    scene.add(Capsule(stem_bottom, cord_bottom, 5.5), CORD)
    scene.add(Capsule(stem_top, stem_bottom, 10.0 * b.scale[0]), 16)
    keys["pons"] = b.point((0, 26, -34))
    scene.add(Ellipsoid(keys["pons"], b.radii((14, 12, 13))), 16)
    keys["4th ventricle"] = b.point((0, 42, -31))
    scene.add(Ellipsoid(keys["4th ventricle"], b.radii((5.5, 4.2, 7.5)), rotation((20, 0, 0))), 15)
    b.pair(28, 60, (11, 14, -9), (5.5, 8, 5))  # ventral diencephalon
    scene.add(Ellipsoid(b.point((0, -2, -20)), b.radii((8, 7, 5.5))), 24)  # basal cisterns
    keys["optic chiasm"] = b.point((0, -9, -16))
    scene.add(Ellipsoid(keys["optic chiasm"], b.radii((8.5, 4.5, 3.2))), 85)

    keys["L putamen"], keys["R putamen"] = b.pair(12, 51, (25, -2, 1), (5.5, 14, 9), (0, 0, -8))
    b.pair(13, 52, (18.5, 3, -1), (3.8, 7, 5.2))  # pallidum
    b.pair(26, 58, (10, -11, -7), (5, 5.5, 5))  # accumbens
    keys["L caudate"], keys["R caudate"] = b.pair(11, 50, (14, -14, 9), (5.5, 9, 8))
    for code, mirror in ((11, 1.0), (50, -1.0)):
        scene.add(Capsule(b.point((14 * mirror, -6, 14)), b.point((15 * mirror, 14, 19)), 3.6), code)
    keys["L thalamus"], keys["R thalamus"] = b.pair(10, 49, (11, 17, 6), (7, 12, 8), (0, 0, 18))
    keys["L hippocampus"], keys["R hippocampus"] = b.pair(17, 53, (28, 22, -12), (5.5, 18, 5.5), (25, 0, 0))
    keys["L amygdala"], keys["R amygdala"] = b.pair(18, 54, (23, 4, -18), (6.5, 6.5, 6.5))
    b.pair(5, 44, (32.5, 16, -7), (3.4, 10, 3.4), (25, 0, 0), vary=0.05)  # temporal horns

    for code, m in ((4, 1.0), (43, -1.0)):  # lateral ventricles: frontal horn, body, atrium, occipital horn
        scene.add(Ellipsoid(b.point((8 * m, -14, 12)), np.array([5.0, 12.0, 7.0]) * vent * b.scale), code)
        path = [b.point(p) for p in ((9 * m, -4, 16), (11 * m, 22, 17), (17 * m, 40, 9), (16 * m, 54, 6))]
        scene.add(tube(path, np.array([4.5, 5.0, 3.2]) * vent), code)
    scene.add(Ellipsoid(b.point((0, 12, 2)), np.array([2.7 * vent, 13, 8]) * b.scale), 14)
    scene.add(Ellipsoid(b.point((0, -12, 12)), b.radii((2.6, 9, 5.5), 0.05)), 72)  # cavum septi pellucidi
    b.pair(31, 63, (14, 28, 14), (4.0, 6.5, 4.0), vary=0.05)  # choroid plexus in the atria

    arch = [b.point(p, 1.0) for p in ((0, -22, 2), (0, -31, 12), (0, -25, 23), (0, -8, 27), (0, 10, 27),
                                      (0, 27, 23), (0, 37, 14), (0, 31, 7))]
    radii = np.array([4.0, 5.0, 4.5, 4.0, 4.0, 4.5, 5.5])
    keys["CC genu"], keys["CC splenium"] = arch[1], arch[6]
    _corpus_callosum(scene, arch, radii, half_width=7.0)

    for code, m in ((30, 1.0), (62, -1.0)):  # vessels: middle cerebral artery stems
        scene.add(Capsule(b.point((18 * m, -8, -13)), b.point((32 * m, -6, -9)), 2.7), code)
    # aseg.mgz has one unlateralised WM-hypointensities (77) and non-WM-hypointensities (80) label.
    for c in ((17, -22, 24), (-17, -22, 24), (18, 33, 22), (26, 10, 30), (-26, 10, 30)):
        scene.add(Ellipsoid(b.point(c), b.radii((4.6, 4.6, 4.6), 0.05)), 77)
    for c in ((-13, 24, 7), (26, -3, -5), (-26, -3, -5)):
        scene.add(Ellipsoid(b.point(c), b.radii((4.6, 4.6, 4.6), 0.05)), 80)

    keys["vertex"] = c_brain + [0, 0, r_brain[2] - 6]
    keys["frontal pole"] = c_brain + [0, -r_brain[1] + 8, -10]
    keys["occipital pole"] = c_brain + [0, r_brain[1] - 8, -5]
    names = ["L thalamus", "R thalamus", "L putamen", "R putamen", "L caudate", "R caudate", "L hippocampus",
             "R hippocampus", "L amygdala", "R amygdala", "CC genu", "CC splenium", "4th ventricle", "optic chiasm",
             "pons", "L cerebellum", "R cerebellum", "vertex", "frontal pole", "occipital pole"]
    scene.landmarks = np.array([keys[n] for n in names])
    scene.landmark_names = names
    return scene, keys


def _corpus_callosum(scene: Scene, arch: list[np.ndarray], radii: np.ndarray, half_width: float) -> None:
    """The CC as a midline slab of a tube along ``arch``, cut into FreeSurfer's five parts along y (anterior
    255 ... posterior 251), each an equal fifth of the CC's antero-posterior extent."""
    pieces = tube(arch, radii)
    lo = min(min(p.p0[1], p.p1[1]) - p.radius for p in pieces)
    hi = max(max(p.p0[1], p.p1[1]) + p.radius for p in pieces)
    edges = np.linspace(lo, hi, 6)
    sides = (((half_width, 0, 0), (1.0, 0, 0)), ((-half_width, 0, 0), (-1.0, 0, 0)))
    for k in range(5):
        planes = sides + (((0, edges[k], 0), (0, -1.0, 0)), ((0, edges[k + 1], 0), (0, 1.0, 0)))
        for p in pieces:
            if min(p.p0[1], p.p1[1]) - p.radius <= edges[k + 1] and max(p.p0[1], p.p1[1]) + p.radius >= edges[k]:
                scene.add(Clipped(p, planes), 255 - k)


# --- PET/MR brain task ---------------------------------------------------------------------------------------

# T1-weighted MPRAGE-like values (arbitrary units): WM bright, GM mid, CSF dark, fat bright, bone dark.
T1_VALUES = {
    0: 0.0, SCALP: 125.0, SKULL: 18.0, NECK: 62.0, CORD: 100.0, CSF_OUTER: 24.0,
    WM_L: 112.0, WM_R: 112.0, CORTEX_L: 68.0, CORTEX_R: 68.0,
    4: 22.0, 43: 22.0, 5: 24.0, 44: 24.0, 14: 22.0, 15: 22.0, 72: 24.0, 24: 26.0,
    7: 104.0, 46: 104.0, 8: 70.0, 47: 70.0, 10: 90.0, 49: 90.0, 11: 78.0, 50: 78.0, 12: 82.0, 51: 82.0,
    13: 96.0, 52: 96.0, 16: 100.0, 17: 70.0, 53: 70.0, 18: 72.0, 54: 72.0, 26: 76.0, 58: 76.0, 28: 96.0,
    60: 96.0, 30: 48.0, 62: 48.0, 31: 58.0, 63: 58.0, 77: 80.0, 80: 52.0, 85: 100.0,
    251: 116.0, 252: 116.0, 253: 116.0, 254: 116.0, 255: 116.0,
}
# FDG SUV: grey matter high (cortex, striatum, thalamus), white matter lower, CSF near zero.
PET_SUV = {
    0: 0.0, SCALP: 1.1, SKULL: 0.7, NECK: 1.3, CORD: 3.0, CSF_OUTER: 0.5,
    WM_L: 3.1, WM_R: 3.1, CORTEX_L: 9.0, CORTEX_R: 9.0,
    4: 0.45, 43: 0.45, 5: 0.5, 44: 0.5, 14: 0.45, 15: 0.45, 72: 0.5, 24: 0.6,
    7: 3.0, 46: 3.0, 8: 7.6, 47: 7.6, 10: 9.6, 49: 9.6, 11: 9.0, 50: 9.0, 12: 10.2, 51: 10.2,
    13: 7.2, 52: 7.2, 16: 4.6, 17: 6.4, 53: 6.4, 18: 6.6, 54: 6.6, 26: 8.6, 58: 8.6, 28: 5.2, 60: 5.2,
    30: 1.8, 62: 1.8, 31: 2.2, 63: 2.2, 77: 2.2, 80: 4.0, 85: 3.0,
    251: 2.8, 252: 2.8, 253: 2.8, 254: 2.8, 255: 2.8,
}


def _scene(rng: np.random.Generator, modality: str | None) -> Scene:
    return head_scene(rng)[0]


def _contrast(rng: np.random.Generator, modality: str | None) -> dict:
    dose_mbq = float(rng.uniform(150.0, 300.0))  # injected 18F-FDG, decay-corrected to scan start
    weight_kg = float(rng.uniform(55.0, 95.0))
    suv_to_bqml = dose_mbq * 1e6 / (weight_kg * 1000.0)  # SUV 1 = dose spread evenly over body mass (1 g/mL)
    return {
        "t1": cx.jitter(T1_VALUES, rng, 0.03), "t1_gain": float(rng.uniform(0.8, 1.25)),
        "t1_noise": float(rng.uniform(0.02, 0.04)), "t1_bias": float(rng.uniform(0.1, 0.25)),
        "suv": cx.jitter(PET_SUV, rng, 0.05), "suv_scale": float(rng.uniform(0.85, 1.15)),
        "pet_fwhm": float(rng.uniform(5.0, 6.0)), "pet_noise": float(rng.uniform(0.04, 0.08)),
        "suv_to_bqml": suv_to_bqml,
        "info": {"pet": {"units": "Bq/mL", "injected_dose_mbq": round(dose_mbq, 3),
                         "body_weight_kg": round(weight_kg, 3), "suv_factor": 1.0 / suv_to_bqml}},
    }


def render_t1(req: RenderRequest, table: dict, gain: float, noise: float, bias: float) -> np.ndarray:
    """MR magnitude image: tissue values, partial volume, receive-coil bias field, Rician noise."""
    img = cx.partial_volume(cx.lookup(req.codes, table)) * np.float32(gain)
    img *= cx.bias_field(req.codes.shape, req.rng, bias)
    return cx.rician(img, noise * table[WM_L] * gain, req.rng)


def _render(req: RenderRequest) -> np.ndarray:
    p = req.params
    if req.role == "t1":
        return render_t1(req, p["t1"], p["t1_gain"], p["t1_noise"], p["t1_bias"])
    suv = cx.lookup(req.codes, p["suv"]) * np.float32(p["suv_scale"])
    img = cx.psf_blur(cx.partial_volume(suv), p["pet_fwhm"], req.grid.spacing)  # scanner resolution
    level = float(p["suv"][CORTEX_L]) * p["suv_scale"]
    sigma = p["pet_noise"] * np.sqrt(level * np.maximum(img, 0.0))  # counting noise grows with activity
    img = np.maximum(cx.gaussian(img, sigma, req.rng, correlation_voxels=1.0), 0.0)
    return img * np.float32(p["suv_to_bqml"])


MODEL = register_model(PhantomModel(
    task_id="petmr-brain",
    grids={"": GridDefault((96, 120, 96), (1.75, 1.75, 1.75))},
    clinical_grids={"": GridDefault((176, 208, 176), (1.0, 1.0, 1.0))},
    moving={"pet": MovingGrid((2.5, 2.5, 2.5), (1.15, 1.15, 1.15))},
    clinical_moving={"pet": MovingGrid((2.0, 2.0, 2.0), (1.2, 1.2, 1.2))},
    build_scene=_scene,
    contrast=_contrast,
    render=_render,
    code_labels={v: v for v in ASEG_VALUES},
    misregister_default=True,
))
