"""Whole-heart phantom (MM-WHS): the seven substructures inside a thorax, as contrast CT or bSSFP-like MR.

Anatomy coordinates: mm, x to the patient's left, y posterior, z superior, origin near the heart's centre.
The left ventricle is a prolate ellipsoid whose long axis points from the base (right, posterior, superior)
to the apex (left, anterior, inferior), wrapped by its myocardium; the right ventricle is a crescent to its
right-anterior side with an outflow tract up to the pulmonary trunk; the atria sit behind and above the base;
the ascending aorta rises from the LV base and arches back into the descending aorta. Lungs, mediastinal fat,
spine, sternum, ribs and the liver dome surround it. CT and MR cases come from independent anatomy streams
(unpaired, as in MM-WHS).
"""

from __future__ import annotations

import numpy as np

from multimodalseg.phantoms import contrast as cx
from multimodalseg.phantoms.case import GridDefault, PhantomModel, RenderRequest, register_model
from multimodalseg.phantoms.shapes import Box, Clipped, Cylinder, Ellipsoid, Scene, tube

MYO, LA, LV, RA, RV, AA, PA = 205, 420, 500, 550, 600, 820, 850
FAT, MUSCLE, LUNG, MED_FAT, BONE, MARROW, WALL, VESSEL_L, VESSEL_R, IVC, LIVER, CSF = range(3001, 3013)
LEFT_BLOOD = (LV, LA, AA, VESSEL_L)
RIGHT_BLOOD = (RV, RA, PA, VESSEL_R)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _thorax(scene: Scene, rng: np.random.Generator) -> None:
    body = np.array([165.0, 120.0]) * rng.uniform(0.9, 1.1, 2)
    scene.add(Cylinder((0, 15, 0), body, 400), FAT)
    scene.add(Cylinder((0, 15, 0), body - rng.uniform(10, 22), 400), MUSCLE)
    for x in (70.0, -72.0):  # left and right lungs
        scene.add(Ellipsoid((x + rng.uniform(-5, 5), 15, 20), (64 * rng.uniform(0.9, 1.1), 86, 130)), LUNG)
    scene.add(Ellipsoid((-40, 10, -140 + rng.uniform(-10, 10)), (110, 90, 70)), LIVER)  # liver dome, right
    scene.add(Ellipsoid((60, 20, -155 + rng.uniform(-10, 10)), (70, 70, 55)), LIVER)  # spleen/stomach, left
    scene.add(Ellipsoid((0, 8, 10), (52, 72, 140)), MED_FAT)  # mediastinum
    scene.add(Cylinder((0, 95, 0), (20, 17), 400), BONE)  # vertebral column, canal behind it
    scene.add(Cylinder((0, 95, 0), (16.5, 13.5), 400), MARROW)
    scene.add(Cylinder((0, 120, 0), (9, 8), 400), CSF)
    scene.add(Box((0, -body[1] + 30, 0), (16, 7, 90)), BONE)  # sternum
    scene.add(Box((0, -body[1] + 30, 0), (12.5, 4, 88)), MARROW)
    a, b = body[0] - 25, body[1] - 22
    for k in range(7):  # ribs: descending arcs, posterior end higher
        z0 = -95 + 30 * k + rng.uniform(-3, 3)
        for side in (1.0, -1.0):
            phi = np.radians(np.linspace(-60, 80, 9))
            pts = np.stack([side * a * np.cos(phi), 15 + b * np.sin(phi), z0 + 18 * np.sin(phi)], 1)
            scene.add(tube(pts, 5.0), BONE)


def _scene(rng: np.random.Generator, modality: str | None) -> Scene:
    scene = Scene()
    _thorax(scene, rng)
    s = rng.uniform(0.88, 1.12)  # heart size
    u = _unit(np.array([0.5, -0.55, -0.55]) + rng.normal(0, 0.08, 3))  # long axis, base -> apex
    v = _unit(np.array([-1.0, -1.0, 0.0]) - np.dot([-1.0, -1.0, 0.0], u) * u)  # towards the right ventricle
    w = np.cross(u, v)
    frame = np.column_stack([v, w, u])
    c_lv = np.array([18.0, -12.0, -14.0]) + rng.uniform(-5, 5, 3)
    f = rng.uniform(0.9, 1.1, 5)  # LV, RV, LA, RA, vessel calibre
    p_mv = c_lv - 30 * s * u - 8 * s * v
    p_av = c_lv - 30 * s * u + 7 * s * v
    p_pv = p_av + np.array([12.0, -14.0, 16.0]) * s
    c_rv = c_lv + 20 * s * v - 4 * s * u
    c_la = p_mv + np.array([-2.0, 24.0, 12.0]) * s
    c_ra = p_av + np.array([-32.0, 8.0, 4.0]) * s

    scene.add(Ellipsoid(c_lv - 8 * s * u, np.array([44.0, 44.0, 56.0]) * s, frame), FAT, (MED_FAT,))  # epicardial fat
    for dx in (18.0, -18.0):  # pulmonary veins into the left atrium
        for dz in (9.0, -9.0):
            scene.add(tube([c_la, c_la + np.array([dx * 2.3, 14.0, dz * 1.4]) * s], 6.0 * f[4]), VESSEL_L)
    scene.add(tube([c_ra, c_ra + np.array([2.0, 6.0, 30.0]) * s, c_ra + np.array([6.0, 12.0, 100.0])], 9.0 * f[4]),
              VESSEL_R)  # superior vena cava
    scene.add(tube([c_ra, c_ra + np.array([3.0, 8.0, -30.0]) * s, c_ra + np.array([8.0, 18.0, -110.0])],
                   11.0 * f[4]), IVC)
    arch_top = p_av + np.array([0.0, 12.0, 60.0]) * s
    descending = [arch_top, p_av + np.array([16.0, 38.0, 62.0]) * s, p_av + np.array([26.0, 56.0, 38.0]) * s,
                  p_av + np.array([26.0, 60.0, -130.0])]
    scene.add(tube(descending, 11.0 * f[4]), VESSEL_L)

    scene.add(Ellipsoid(c_ra, np.array([21.0, 20.0, 25.0]) * s * f[3]), RA)
    scene.add(Ellipsoid(c_la, np.array([26.0, 17.0, 19.0]) * s * f[2]), LA)
    base_cut = ((c_lv - 30 * s * u, -u),)  # half-space on the apex side of the valve plane
    scene.add(Clipped(Ellipsoid(c_rv, np.array([25.0, 33.0, 43.0]) * s * f[1], frame), base_cut), WALL)
    scene.add(Clipped(Ellipsoid(c_rv, np.array([22.0, 30.0, 40.0]) * s * f[1], frame), base_cut), RV)
    scene.add(tube([c_rv - 18 * s * u, p_pv], 11.0 * s), RV)  # outflow tract
    scene.add(Clipped(Ellipsoid(c_lv + 3 * s * u, np.array([27.0, 27.0, 40.0]) * s * f[0], frame),
                      ((c_lv - 26 * s * u, -u),)), MYO)
    scene.add(Clipped(Ellipsoid(c_lv, np.array([18.0, 18.0, 33.0]) * s * f[0], frame),
                      ((c_lv - 29 * s * u, -u),)), LV)
    ascending = [p_av, p_av + np.array([-6.0, -4.0, 30.0]) * s, arch_top]
    scene.add(tube(ascending, 13.0 * s * f[4]), AA)
    bifurcation = p_pv + np.array([4.0, 12.0, 22.0]) * s
    right_pa = bifurcation + np.array([-42.0, 22.0, 2.0]) * s
    left_pa = bifurcation + np.array([30.0, 26.0, 6.0]) * s
    for end in (right_pa, left_pa):  # branches continue, unlabelled, into the lungs
        scene.add(tube([end, end + (end - bifurcation) * 0.6], 8.0 * s), VESSEL_R)
        scene.add(tube([bifurcation, end], 9.0 * s), PA)
    scene.add(tube([p_pv, bifurcation], 12.0 * s * f[4]), PA)

    names = ["LV apex", "LV centre", "mitral valve", "aortic valve", "pulmonary valve", "RV centre", "LA centre",
             "RA centre", "aortic arch", "PA bifurcation"]
    scene.landmarks = np.array([c_lv + 30 * s * u, c_lv, p_mv, p_av, p_pv, c_rv + 8 * s * v, c_la, c_ra,
                                arch_top, bifurcation])
    scene.landmark_names = names
    return scene


CT_HU = {0: -1000.0, LUNG: -840.0, FAT: -100.0, MED_FAT: -90.0, MUSCLE: 45.0, LIVER: 60.0, BONE: 700.0,
         MARROW: 230.0, WALL: 100.0, MYO: 110.0, CSF: 10.0}
MR_BSSFP = {0: 4.0, LUNG: 20.0, FAT: 300.0, MED_FAT: 300.0, MUSCLE: 85.0, LIVER: 110.0, BONE: 15.0, MARROW: 250.0,
            WALL: 80.0, MYO: 75.0, CSF: 430.0, IVC: 380.0, **{c: 420.0 for c in LEFT_BLOOD + RIGHT_BLOOD}}


def _contrast(rng: np.random.Generator, modality: str | None) -> dict:
    if modality == "ct":
        table = dict(CT_HU)
        left = float(rng.uniform(280.0, 450.0))  # contrast timing: left heart peak, right heart earlier/later
        right = left * float(rng.uniform(0.55, 1.05))
        table.update({c: left for c in LEFT_BLOOD})
        table.update({c: right for c in RIGHT_BLOOD})
        table[IVC] = float(rng.uniform(60.0, 150.0))  # unopacified return from below
        table = cx.jitter(table, rng, 0.02)
        return {"table": table, "noise_hu": float(rng.uniform(12.0, 30.0)),
                "info": {"ct": {"blood_left_hu": round(left, 1), "blood_right_hu": round(right, 1)}}}
    return {"table": cx.jitter(MR_BSSFP, rng, 0.04), "gain": float(rng.uniform(0.6, 1.6)),
            "noise": float(rng.uniform(0.015, 0.035)), "bias": float(rng.uniform(0.2, 0.4))}


def _render(req: RenderRequest) -> np.ndarray:
    p = req.params
    img = cx.partial_volume(cx.lookup(req.codes, p["table"]))
    if req.modality == "ct":
        img = cx.gaussian(img, p["noise_hu"], req.rng, correlation_voxels=0.7)  # filtered back-projection noise
        return np.round(np.clip(img, -1024.0, 3071.0)).astype(np.int16)  # HU as CT scanners store them
    img *= np.float32(p["gain"]) * cx.bias_field(req.codes.shape, req.rng, p["bias"])  # surface-coil shading
    return cx.rician(img, p["noise"] * p["table"][LV] * p["gain"], req.rng)


MODEL = register_model(PhantomModel(
    task_id="whole-heart",
    grids={"ct": GridDefault((80, 100, 112), (2.0, 2.0, 2.0)), "mr": GridDefault((64, 100, 112), (2.0, 2.0, 2.5))},
    clinical_grids={"ct": GridDefault((200, 288, 288), (0.78, 0.78, 0.8)),
                    "mr": GridDefault((128, 224, 224), (1.0, 1.0, 1.25))},
    build_scene=_scene,
    contrast=_contrast,
    render=_render,
    code_labels={c: c for c in (MYO, LA, LV, RA, RV, AA, PA)},
    misregister_default=False,
    pose_degrees=8.0,
    modalities=("ct", "mr"),
))
