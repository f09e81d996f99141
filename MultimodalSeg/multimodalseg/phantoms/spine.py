"""Lumbar spine phantom (L1-L5): vertebrae with posterior elements and four discs, as CT and sagittal T2 MR.

Anatomy coordinates: mm, x to the patient's left, y posterior, z superior; the spinal canal runs near y = 0.
The spine follows a seeded lordotic curve; each vertebra is drawn in its own tilted frame: a cylindrical body
(cortical shell around cancellous bone), a neural arch (pedicles and laminae) around the canal, transverse
processes, articular facets and a spinous process slanting down. Discs (annulus around a nucleus pulposus) fill
the wedge-shaped spaces. The canal holds CSF and the cauda equina; psoas, paraspinal muscles, aorta, IVC and
fat surround the column. The CT is the reference; the T2 MR is a sagittal thick-slice acquisition on its own
grid, rigidly misregistered, with 9 landmark pairs per vertebra.
"""

from __future__ import annotations

import numpy as np

from multimodalseg.phantoms import contrast as cx
from multimodalseg.phantoms.case import GridDefault, MovingGrid, PhantomModel, RenderRequest, register_model
from multimodalseg.phantoms.geometry import rotation
from multimodalseg.phantoms.shapes import Box, Capsule, Clipped, Cylinder, Difference, Ellipsoid, Scene, tube

CORTICAL, CANCELLOUS, POSTERIOR, ANNULUS, NUCLEUS, NUCLEUS_DRY = 4001, 4002, 4003, 4101, 4102, 4103
CSF, NERVE, FAT, MUSCLE, VISCERA, VESSEL = 4201, 4202, 4301, 4302, 4303, 4304
VERTEBRA_CODES = (CORTICAL, CANCELLOUS, POSTERIOR)
DISC_CODES = (ANNULUS, NUCLEUS, NUCLEUS_DRY)
LEVELS = ("L1", "L2", "L3", "L4", "L5")
BODY_Y = -16.0  # vertebral bodies in front of the canal
CANAL = (11.0, 8.5)  # canal semi-axes (x, y), mm


class _Curve:
    """The lordotic centre line of the bodies: ``y(z) = y0 + depth (z / half)^2``, ends posterior."""

    def __init__(self, depth: float, half: float) -> None:
        self.depth, self.half = depth, half

    def point(self, z: float) -> np.ndarray:
        return np.array([0.0, BODY_Y + self.depth * (z / self.half) ** 2, z])

    def frame(self, z: float) -> np.ndarray:
        """Columns: local x (left), local y (posterior, perpendicular to the curve), local z (along it, up)."""
        slope = 2 * self.depth * z / self.half**2
        ez = np.array([0.0, slope, 1.0]) / np.hypot(slope, 1.0)
        ey = np.array([0.0, 1.0, -slope]) / np.hypot(slope, 1.0)
        return np.column_stack([[1.0, 0.0, 0.0], ey, ez])


def _soft_tissue(scene: Scene, rng: np.random.Generator) -> None:
    body = np.array([150.0, 105.0]) * rng.uniform(0.9, 1.1, 2)
    scene.add(Cylinder((0, 5, 0), body, 400), FAT)
    scene.add(Cylinder((0, -5, 0), body - rng.uniform(12, 25, 2), 400), VISCERA)
    for side in (1.0, -1.0):  # erector spinae and psoas, each in a sheath of fat
        erector = (side * 32, 52, 0), np.array([24 * rng.uniform(0.85, 1.15), 26, 220])
        scene.add(Ellipsoid(erector[0], erector[1] + 4), FAT)
        scene.add(Ellipsoid(*erector), MUSCLE)
        psoas = [(side * 26, -12, 90), (side * 36, -14, 0), (side * 48, -20, -100)]
        scene.add(tube(psoas, (13.0, 21.0)), FAT)
        scene.add(tube(psoas, (9.0, 17.0)), MUSCLE)
    scene.add(Cylinder((12 + rng.uniform(-3, 3), -45, 0), (11, 11), 400), VESSEL)  # aorta
    scene.add(Cylinder((-18 + rng.uniform(-3, 3), -42, 0), (13, 10), 400), VESSEL)  # inferior vena cava


def _scene(rng: np.random.Generator, modality: str | None) -> Scene:
    scene = Scene()
    _soft_tissue(scene, rng)
    heights = np.array([25.0, 26.0, 26.5, 27.0, 27.0]) + rng.uniform(-1.5, 1.5, 5)
    discs = np.array([8.5, 9.5, 10.5, 11.0]) + rng.uniform(-1.2, 1.2, 4)
    total = heights.sum() + discs.sum()
    curve = _Curve(rng.uniform(8.0, 18.0), total / 2)
    width = (np.array([20.0, 21.0, 22.0, 23.5, 25.0]) + rng.uniform(-1, 1, 5)) * rng.uniform(0.92, 1.08)
    depth = (np.array([15.0, 15.5, 16.0, 16.5, 17.0]) + rng.uniform(-0.8, 0.8, 5)) * rng.uniform(0.92, 1.08)
    tops = total / 2 - np.concatenate([[0.0], np.cumsum(heights[:-1] + discs)])
    centres_z = tops - heights / 2

    degenerated = bool(rng.random() < 0.35)  # a desiccated (dark on T2) L4-L5 nucleus
    canal_path = []
    for i in range(4):  # discs first, a little high, so the tilted bodies overwrite their edges: no gaps
        z = tops[i] - heights[i] - discs[i] / 2
        c, r = curve.point(z), curve.frame(z)
        a, b = (width[i] + width[i + 1]) / 2 + 1.0, (depth[i] + depth[i + 1]) / 2 + 1.0
        scene.add(Cylinder(c, (a, b), discs[i] / 2 + 2.0, r), ANNULUS)
        nucleus = NUCLEUS_DRY if degenerated and i == 3 else NUCLEUS
        scene.add(Ellipsoid(c + r @ [0, 2.0, 0], (a * 0.68, b * 0.6, discs[i] * 0.42), r), nucleus)
        canal_path.append(c + r @ [0, b - 1.0 + CANAL[1], 0])

    points, names = [], []
    for i, level in enumerate(LEVELS):
        c, r, h = curve.point(centres_z[i]), curve.frame(centres_z[i]), heights[i]
        a, b = width[i], depth[i]
        canal = c + r @ [0, b + CANAL[1] + 0.5, 0]
        canal_path.append(canal)
        ring = Difference(Cylinder(canal + r @ [0, 0, 1.5], (CANAL[0] + 6, CANAL[1] + 6), 8.0, r),
                          Cylinder(canal, CANAL, 20.0, r))
        scene.add(Clipped(ring, ((c + r @ [0, b - 4, 0], -r[:, 1]),)), POSTERIOR)  # pedicles and laminae
        tilt = r @ rotation((-22.0 + rng.uniform(-6, 6), 0, 0))
        spinous_len = 15.0 * rng.uniform(0.9, 1.1)
        spinous_c = canal + r @ [0, CANAL[1] + 4 + spinous_len, 0] + tilt @ [0, 0, -3]
        scene.add(Box(spinous_c, (3.5, spinous_len, 7.5), tilt), POSTERIOR)
        spinous_tip = spinous_c + tilt @ [0, spinous_len - 1, 0]
        transverse = []
        for side in (1.0, -1.0):
            span = 12.0 * rng.uniform(0.85, 1.15)
            rt = r @ rotation((0, 0, side * 12.0))
            tc = canal + r @ [side * (CANAL[0] + 5), 0, 2.0] + rt @ [side * span, 0, 0]
            scene.add(Box(tc, (span, 4.0, 5.0), rt), POSTERIOR)
            transverse.append(tc + rt @ [side * (span - 1), 0, 0])
            for dz in (h / 2 - 1, -h / 2 + 1):  # superior and inferior articular processes
                scene.add(Ellipsoid(canal + r @ [side * 13.0, 6.5, dz], (4.5, 5.0, 6.0), r), POSTERIOR)
        scene.add(Cylinder(c, (a, b), h / 2, r), CORTICAL)
        scene.add(Cylinder(c, (a - 2.2, b - 2.2), h / 2 - 1.6, r), CANCELLOUS)
        local = {"anterior superior": [0, -b + 1, h / 2 - 1], "anterior inferior": [0, -b + 1, -h / 2 + 1],
                 "posterior superior": [0, b - 1, h / 2 - 1], "posterior inferior": [0, b - 1, -h / 2 + 1],
                 "left pedicle": [12.0, b + 4, 1.5], "right pedicle": [-12.0, b + 4, 1.5]}
        for name, offset in local.items():
            points.append(c + r @ offset)
            names.append(f"{level} {name}")
        points += [transverse[0], transverse[1], spinous_tip]
        names += [f"{level} left transverse tip", f"{level} right transverse tip", f"{level} spinous tip"]

    canal_path = sorted(canal_path, key=lambda p: -p[2])
    top, bottom = canal_path[0] + [0, 0, 40], canal_path[-1] - [0, 0, 40]
    path = [top, *canal_path, bottom]
    scene.add(tube(path, 8.0), CSF)
    scene.add(tube(path, 3.6), NERVE)  # cauda equina bundle
    scene.add(Capsule(path[0], path[1], 4.5), NERVE)
    scene.landmarks = np.array(points)
    scene.landmark_names = names
    scene.info = {"spine": {"l45_disc_degenerated": degenerated}}
    return scene


CT_HU = {0: -1000.0, CORTICAL: 1100.0, CANCELLOUS: 230.0, POSTERIOR: 520.0, ANNULUS: 95.0, NUCLEUS: 80.0,
         NUCLEUS_DRY: 88.0, CSF: 8.0, NERVE: 35.0, FAT: -100.0, MUSCLE: 50.0, VISCERA: 35.0, VESSEL: 45.0}
T2 = {0: 0.0, CORTICAL: 12.0, CANCELLOUS: 110.0, POSTERIOR: 95.0, ANNULUS: 95.0, NUCLEUS: 280.0, CSF: 300.0,
      NERVE: 110.0, FAT: 230.0, MUSCLE: 50.0, VISCERA: 130.0, VESSEL: 20.0}


def _contrast(rng: np.random.Generator, modality: str | None) -> dict:
    ct = cx.jitter(CT_HU, rng, 0.02)
    ct[CANCELLOUS] = float(rng.uniform(150.0, 300.0))  # bone density varies between patients
    t2 = cx.jitter(T2, rng, 0.04)
    t2[NUCLEUS_DRY] = t2[NUCLEUS] * float(rng.uniform(0.45, 0.7))
    return {"ct": ct, "ct_noise": float(rng.uniform(12.0, 30.0)), "t2": t2, "t2_gain": float(rng.uniform(0.7, 1.4)),
            "t2_noise": float(rng.uniform(0.015, 0.035)), "t2_bias": float(rng.uniform(0.15, 0.3))}


def _render(req: RenderRequest) -> np.ndarray:
    p = req.params
    if req.role == "ct":
        img = cx.partial_volume(cx.lookup(req.codes, p["ct"]))
        img = cx.gaussian(img, p["ct_noise"], req.rng, correlation_voxels=0.7)
        return np.round(np.clip(img, -1024.0, 3071.0)).astype(np.int16)  # HU as CT scanners store them
    img = cx.partial_volume(cx.lookup(req.codes, p["t2"]))
    img *= np.float32(p["t2_gain"]) * cx.bias_field(req.codes.shape, req.rng, p["t2_bias"])
    return cx.rician(img, p["t2_noise"] * p["t2"][CSF] * p["t2_gain"], req.rng)


MODEL = register_model(PhantomModel(
    task_id="spine",
    grids={"": GridDefault((125, 100, 96), (1.6, 1.6, 1.6))},
    clinical_grids={"": GridDefault((250, 200, 192), (0.8, 0.8, 0.8))},
    moving={"mr": MovingGrid((3.5, 1.3, 1.3), (0.9, 1.1, 1.12))},
    clinical_moving={"mr": MovingGrid((3.5, 0.65, 0.65), (0.9, 1.1, 1.12))},
    build_scene=_scene,
    contrast=_contrast,
    render=_render,
    code_labels={**{c: 1 for c in VERTEBRA_CODES}, **{c: 2 for c in DISC_CODES}},
))
