"""``generate(task, anatomy, rng)``: one synthetic sample of a task from one real label map.

The steps are SynthSeg's: the label map (plus task extras: a pasted tumour, a body model, stacked vertebrae) is
deformed by a random affine + diffeomorphic transform (:mod:`.spatial`), sampled on every role's own grid (a moving
role sees it through a known rigid misregistration), painted with per-sample intensities (:mod:`.priors`,
:mod:`.intensity`) and degraded (resolution, bias, gamma, noise; PET blur and counting noise). The label map keeps
the task's values on the reference grid. A trainer calls :func:`generate` per sample; :func:`make_synth_case`
wraps it into a :class:`~multimodalseg.phantoms.case.PhantomCase` for the dataset writers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from multimodalseg.errors import UserError
from multimodalseg.phantoms.geometry import Grid, identity_rigid, random_rigid, rigid_affine
from multimodalseg.synthesis import intensity as ix
from multimodalseg.synthesis import labels as lt
from multimodalseg.synthesis import priors
from multimodalseg.synthesis.anatomy import Anatomy, load_anatomy
from multimodalseg.synthesis.body import lumbar, thorax
from multimodalseg.synthesis.spatial import SpatialRanges, SpatialTransform
from multimodalseg.synthesis.stack import stack_vertebrae
from multimodalseg.synthesis.tumour import TUMOUR_OUTPUT, add_tumour
from multimodalseg.synthesis.vessels import add_vessels

DEFAULT_SPACING = {"petmr-brain": 2.0, "brain-tumor": 2.0, "whole-heart": 2.0, "spine": 1.5}
_FOV = {"petmr-brain": (160.0, 200.0, 160.0), "brain-tumor": (150.0, 180.0, 140.0),
        "whole-heart": (224.0, 200.0, 170.0)}  # at least this (x, y, z mm)
_MARGIN = {"petmr-brain": 24.0, "brain-tumor": 12.0, "whole-heart": 60.0, "spine": 30.0}
_RANGES = {
    "petmr-brain": SpatialRanges(),
    "brain-tumor": SpatialRanges(),
    # strong deformation for the heart; no mirror (that would be dextrocardia)
    "whole-heart": SpatialRanges(scale=(0.75, 1.25), degrees=20.0, shear=0.05, flip=0.0, max_sigma_mm=8.0),
    "spine": SpatialRanges(degrees=10.0),
}
SPINE_PAIRS = ((43, 44), (45, 46), (47, 48))
WHOLE_HEAD_FRACTION = 0.2  # brain-tumor cases that are not skull-stripped
# Heart cases framed as chest CT/MR are: the body centred in a 280-420 mm field of view, the heart off-centre and
# anywhere in z, sometimes cut by the field's edge. The rest are framed around the heart, as cardiac scans are.
CHEST_FIELD_FRACTION = 0.6
# Of the chest framings, the share whose field stops at the heart (a scan planned on the lungs): the heart's centre
# in the outer 10 % of the length, so up to half the heart is out of view. 0 by default (the shipped demo's bank).
HEART_AT_EDGE_FRACTION = 0.0
# The share of MR images painted with SynthSeg's random contrast (a random Gaussian per label group) instead of the
# modality's own (T1, bSSFP, T2) with jitter. Random contrast makes a model contrast-agnostic but is the slower
# lesson; brain tumour has none (its four sequences keep their own contrasts).
RANDOM_CONTRAST_FRACTION = {"petmr-brain": 0.5, "whole-heart": 0.5, "spine": 0.3}


def random_contrast(task_id: str, fraction: float | None, name: str = "--random-contrast-fraction") -> float:
    """The share of MR images in random contrast: ``fraction`` checked (None: the task's default).

    Raises:
        UserError: a task without random contrast, or a share outside [0, 1] (``name`` is the option's name).
    """
    if fraction is None:
        return RANDOM_CONTRAST_FRACTION.get(task_id, 0.0)
    if task_id not in RANDOM_CONTRAST_FRACTION:
        raise UserError(f"{name} is for tasks {', '.join(RANDOM_CONTRAST_FRACTION)}, not {task_id}")
    value = float(fraction)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise UserError(f"{name} must be between 0 and 1, got {fraction}")
    return value


@dataclass
class SynthSample:
    """One generated sample.

    Args:
        task: task id; modality: ``ct``/``mr`` for whole-heart, else None.
        images: role -> (z, y, x) array on ``grids[role]`` (float32; int16 HU for CT).
        grids: role -> :class:`~multimodalseg.phantoms.geometry.Grid`.
        label: (z, y, x) uint16 task values on the reference role's grid.
        transforms: moving role -> rigid transform mapping reference points to that role's points.
        landmarks: role -> (N, 3) LPS mm, row i the same anatomical point in every role.
        role_labels: role -> painted values on that role's grid (tissues included), e.g. for per-role losses.
    """

    task: str
    modality: str | None
    images: dict[str, np.ndarray]
    grids: dict[str, Grid]
    label: np.ndarray
    transforms: dict[str, sitk.Euler3DTransform]
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    landmark_names: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    role_labels: dict[str, np.ndarray] = field(default_factory=dict)


def generate(task_id: str, anatomy: Anatomy, rng: np.random.Generator, *, spacing: float | None = None,
             modality: str | None = None, misregister: bool = True,
             whole_head_fraction: float | None = None, margin_mm: float | None = None,
             heart_at_edge_fraction: float | None = None,
             random_contrast_fraction: float | None = None) -> SynthSample:
    """One sample of ``task_id`` from ``anatomy``; every draw comes from ``rng``.

    Args:
        spacing: isotropic reference spacing in mm (default per task, :data:`DEFAULT_SPACING`).
        modality: whole-heart ``ct`` or ``mr`` (default ``ct``).
        misregister: moving roles (PET, spine MR) get a known small rigid misregistration.
        whole_head_fraction: brain-tumor only, the share of cases not skull-stripped (default
            :data:`WHOLE_HEAD_FRACTION`); the draw is the same, so a case keeps its other draws.
        margin_mm: field of view beyond the deformed organ's extent (default per task, :data:`_MARGIN`); a wide one
            shows a whole head with air around it (the brain-mask bank), as a real head scan does.
        heart_at_edge_fraction: whole-heart only, the share of chest framings cut through the heart by the field's
            end (default :data:`HEART_AT_EDGE_FRACTION`); drawn last, so the other framings keep their draws.
        random_contrast_fraction: the share of MR images in random contrast (default per task,
            :data:`RANDOM_CONTRAST_FRACTION`); the draw is the same, so a case keeps its other draws.
    """
    if task_id not in DEFAULT_SPACING:
        raise UserError(f"no synthetic-data generator for task {task_id}")
    sp = float(spacing or DEFAULT_SPACING[task_id])
    if not np.isfinite(sp) or sp <= 0.2 or sp > 10:
        raise UserError(f"--spacing must be between 0.2 and 10 mm, got {spacing}")
    head = WHOLE_HEAD_FRACTION if whole_head_fraction is None else float(whole_head_fraction)
    if not 0.0 <= head <= 1.0:
        raise UserError(f"--whole-head-fraction must be between 0 and 1, got {whole_head_fraction}")
    edge = HEART_AT_EDGE_FRACTION if heart_at_edge_fraction is None else float(heart_at_edge_fraction)
    if not 0.0 <= edge <= 1.0:
        raise UserError(f"--heart-at-edge-fraction must be between 0 and 1, got {heart_at_edge_fraction}")
    contrast = random_contrast(task_id, random_contrast_fraction)
    s_extra, s_spatial, s_grid, s_mis, s_paint = rng.spawn(5)
    labels, grid, info = anatomy.labels, anatomy.grid, {"anatomy": anatomy.name}
    if task_id == "brain-tumor":
        labels, facts = add_tumour(labels, grid, s_extra)
        info.update(facts)
        labels, facts = add_vessels(labels, grid, s_extra)
        info.update(facts)
    elif task_id == "whole-heart":
        modality = modality or "ct"
        if modality not in ("ct", "mr"):
            raise UserError(f"whole-heart modality must be ct or mr, got {modality!r}")
        labels, grid, body_centre = thorax(labels, grid, s_extra)
    elif task_id == "spine":
        labels, grid, n_added = stack_vertebrae(labels, grid, s_extra)
        labels, grid = lumbar(labels, grid, s_extra)
        info["stacked_levels"] = n_added
    src = Anatomy(anatomy.name, anatomy.kind, labels, grid)
    organ = {"whole-heart": lt.HEART_VALUES, "spine": lt.SPINE_VERTEBRA + lt.SPINE_DISC}.get(
        task_id, tuple(set(lt.BRAIN_LABELS) - {24}))
    centre = _centre(src, organ)
    spatial = SpatialTransform(s_spatial, centre, src.extent_mm(organ), _RANGES[task_id])
    info["spatial"] = spatial.info

    # the field of view follows the deformed organ (SynthSeg scales each axis independently)
    extent = np.abs(np.linalg.inv(spatial.linear)) @ src.extent_mm(organ)
    fov = np.minimum(extent + (_MARGIN[task_id] if margin_mm is None else float(margin_mm)), 400.0)
    if task_id in _FOV:
        fov = np.maximum(fov, _FOV[task_id])
    ref_centre = centre + s_grid.uniform(-4.0, 4.0, 3)
    if task_id == "whole-heart":
        chest = _chest_field(s_grid.spawn(1)[0], centre, body_centre, spatial, edge)  # its own stream
        if chest is not None:
            ref_centre, fov, info["heart_at_field_edge"] = chest
        info["field_of_view"] = "chest" if chest is not None else "heart"
    shape = tuple(int(v) for v in np.maximum(np.round(fov / sp), 8).astype(int)[::-1])
    ref_grid = Grid.centred(ref_centre, shape, (sp, sp, sp))
    roles = _roles(task_id)
    grids = {roles[0]: ref_grid}
    transforms: dict[str, sitk.Euler3DTransform] = {}
    for role, (mspacing, fov_scale) in _moving(task_id, sp).items():
        drawn = random_rigid(s_mis, ref_centre)
        transforms[role] = drawn if misregister else identity_rigid(ref_centre)
        size = np.maximum(np.ceil(ref_grid.fov * fov_scale / np.asarray(mspacing)).astype(int), 8)
        centre_m = np.asarray(transforms[role].TransformPoint([float(c) for c in ref_centre]))
        grids[role] = Grid.centred(centre_m + s_grid.uniform(-3.0, 3.0, 3), tuple(int(v) for v in size[::-1]),
                                   mspacing)
    for role in roles:  # roles without their own grid share the reference's (BraTS: co-registered)
        grids.setdefault(role, ref_grid)
    swap = lt.swap_table(lt.brain_pairs() if anatomy.kind == "brain" else SPINE_PAIRS, 1024)
    sampled, pres = {}, {}
    for role, g in grids.items():
        pres[role] = None
        if role in transforms:  # moving point q shows the reference point T^-1(q)
            m, b = rigid_affine(transforms[role])
            pres[role] = (m.T, -m.T @ b)
        if g is ref_grid and roles[0] in sampled:
            sampled[role] = sampled[roles[0]]
            continue
        lab = spatial.sample(labels, grid, g, pres[role])
        sampled[role] = swap[lab].astype(np.uint16) if spatial.flipped else lab

    painter = ix.Painter(labels, s_paint)

    def render(role, prior, r, default=(0.0, 0.0)) -> np.ndarray:
        # paint at the anatomy's resolution (pairs share intensities, so the mirror needs no swap here)
        return spatial.sample(painter(prior, default), grid, grids[role], pres[role], linear=True)

    images, facts = _paint(task_id, modality, sampled, grids, s_paint, render, head, contrast)
    info.update(facts)
    label = _output(task_id, sampled[roles[0]])
    sample = SynthSample(task_id, modality, images, grids, label, transforms, info=info, role_labels=sampled)
    if len(roles) > 1:
        names, points = _landmarks(task_id, sampled[roles[0]], ref_grid)
        sample.landmark_names = names
        sample.landmarks = {roles[0]: points}
        for role, t in transforms.items():
            sample.landmarks[role] = np.array([t.TransformPoint([float(v) for v in p]) for p in points])
        for role in roles[1:]:
            sample.landmarks.setdefault(role, points)
    return sample


def _chest_field(rng: np.random.Generator, centre: np.ndarray, body_centre: np.ndarray, spatial: SpatialTransform,
                 edge_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """(grid centre, field of view, heart at the field's end) of a chest framing, output mm, for
    :data:`CHEST_FIELD_FRACTION` of the cases; else None. The heart's centre lands within the middle 80 % of the
    field's length, or for ``edge_fraction`` of them in the outer 10 % at either end."""
    if rng.random() >= CHEST_FIELD_FRACTION:
        return None
    side, length = float(rng.uniform(280.0, 420.0)), float(rng.uniform(160.0, 300.0))
    dz = float(rng.uniform(-0.4, 0.4)) * length
    edge = bool(edge_fraction > 0 and rng.random() < edge_fraction)  # drawn last: other framings keep their draws
    if edge:
        dz = float(np.copysign(rng.uniform(0.4, 0.5), dz)) * length
    # output point p shows source point c + L (p - c - shift): invert it for the body centre at the heart's height
    grid_centre = centre + spatial.shift + np.linalg.inv(spatial.linear) @ (body_centre - centre)
    grid_centre[2] += dz
    return grid_centre, np.array([side, side, length]), edge


def _centre(anatomy: Anatomy, values) -> np.ndarray:
    idx = np.argwhere(np.isin(anatomy.labels, values))[:, ::-1].astype(float)
    lo, hi = idx.min(0), idx.max(0)
    return np.asarray(anatomy.grid.origin) + anatomy.grid.matrix @ ((lo + hi) / 2)


def _roles(task_id: str) -> list[str]:
    from multimodalseg.tasks import get_task

    task = get_task(task_id)
    return [task.reference_role] + [r for r in task.roles if r != task.reference_role]


def _moving(task_id: str, sp: float) -> dict[str, tuple[tuple[float, float, float], float]]:
    """Moving roles with their own grid: (spacing x, y, z mm, field of view scale)."""
    if task_id == "petmr-brain":
        pet = max(2.5, sp * 1.25)  # PET on its own coarser grid
        return {"pet": ((pet, pet, pet), 1.15)}
    if task_id == "spine":  # sagittal T2: thick slices along left-right
        return {"mr": ((max(3.5, sp * 2), sp * 0.87, sp * 0.87), 1.1)}
    return {}


def _paint(task_id, modality, sampled, grids, rng, render, whole_head_fraction,
           random_fraction) -> tuple[dict[str, np.ndarray], dict]:
    """Images per role. ``render(role, prior, rng, default)`` paints the source map and reads it through
    the spatial transform on the role's grid (linear: partial volume at tissue borders); ``random_fraction`` of the
    MR images get a random contrast."""
    images: dict[str, np.ndarray] = {}
    facts: dict[str, Any] = {}
    streams = dict(zip(sorted(sampled), rng.spawn(len(sampled))))
    if task_id == "petmr-brain":
        r = streams["t1"]
        use_random = bool(r.random() < random_fraction)
        groups = priors.brain_groups()
        prior = ix.random_prior(groups, r) if use_random else ix.jittered_prior(priors.t1_brain(), r, groups=groups)
        images["t1"], f = ix.mr_chain(render("t1", prior, r), grids["t1"].spacing, r)
        facts["t1"] = {**f, "contrast": "random" if use_random else "t1"}
        r = streams["pet"]
        scale = float(r.uniform(0.8, 1.25))
        suv = {v: s * scale * float(r.uniform(0.85, 1.15)) for v, s in priors.pet_suv().items()}
        img, f = ix.pet_chain(render("pet", ix.pet_prior(suv), r), grids["pet"].spacing, r)
        dose, weight = float(r.uniform(150.0, 300.0)), float(r.uniform(55.0, 95.0))
        suv_to_bqml = dose * 1e6 / (weight * 1000.0)
        images["pet"] = (img * np.float32(suv_to_bqml)).astype(np.float32)
        facts["pet"] = {**f, "units": "Bq/mL", "injected_dose_mbq": round(dose, 3), "body_weight_kg": round(weight, 3),
                        "suv_factor": 1.0 / suv_to_bqml}
    elif task_id == "brain-tumor":
        table = priors.tumour_sequences()
        keep = set(lt.BRAIN_LABELS) | set(TUMOUR_OUTPUT)
        groups = priors.brain_groups()
        # most BraTS-like data is skull-stripped; some users give whole-head scans: keep scalp, skull, orbits
        whole_head = bool(rng.random() < whole_head_fraction)
        facts["whole_head"] = whole_head
        look = priors.tumour_appearance(rng.spawn(1)[0])  # its own stream: the other draws stay as they were
        facts["tumour_look"] = {role: {str(v): round(m, 1) for v, (m, _) in p.items()} for role, p in look.items()}
        for role in ("flair", "t1", "t1ce", "t2"):
            r = streams[role]
            prior = ix.jittered_prior(table[role], r, rel=0.12, groups=groups)
            prior.update(look[role])
            if whole_head:  # extra-cerebral tissues get any brightness per sequence (fat, marrow, muscle, ...)
                prior.update({v: (float(r.uniform(5.0, 180.0)), float(r.uniform(3.0, 15.0))) for v in priors.EXTRA})
            outside = sampled[role] == 0 if whole_head else ~_stripped_brain(sampled[role], keep)
            images[role], facts[role] = ix.mr_chain(render(role, prior, r), grids[role].spacing, r,
                                                    background_mask=outside)
    elif task_id == "whole-heart":
        r = streams["image"]
        if modality == "ct":
            phase = priors.ct_phase(r.spawn(1)[0])  # its own stream: an arterial case draws as before
            img = render("image", priors.heart_ct(r, phase), r, default=(-1000.0, 5.0))
            images["image"], f = ix.ct_chain(img, grids["image"].spacing, r)
            facts["image"] = {**f, "contrast": phase}
        else:
            use_random = bool(r.random() < random_fraction)
            groups = {v: v for v in (0, *lt.HEART_VALUES, *lt.THORAX.values())}
            prior = ix.random_prior(groups, r) if use_random else ix.jittered_prior(priors.heart_mr(), r, rel=0.2)
            images["image"], f = ix.mr_chain(render("image", prior, r), grids["image"].spacing, r)
            facts["image"] = {**f, "contrast": "random" if use_random else "bssfp"}
    elif task_id == "spine":
        r = streams["ct"]
        img = render("ct", priors.spine_ct(r), r, default=(-1000.0, 5.0))
        images["ct"], facts["ct"] = ix.ct_chain(img, grids["ct"].spacing, r)
        r = streams["mr"]
        use_random = bool(r.random() < random_fraction)
        groups = {v: v for v in (0, *lt.SPINE_OUTPUT, *lt.SPINE_PAINTED_ONLY, *lt.SPINE_BODY.values())}
        prior = ix.random_prior(groups, r) if use_random else ix.jittered_prior(priors.spine_t2(), r, rel=0.15)
        images["mr"], f = ix.mr_chain(render("mr", prior, r), grids["mr"].spacing, r)
        facts["mr"] = {**f, "contrast": "random" if use_random else "t2"}
    return images, facts


def brain_mask(sample: SynthSample) -> np.ndarray:
    """The skull-stripped brain of a brain-tumor sample on its reference grid (bool): what ``whole_head=False``
    cases keep, the target of the brain-mask model (``training.brain_tumor.brain_mask``)."""
    if sample.task != "brain-tumor":
        raise ValueError(f"brain_mask is for brain-tumor samples, not {sample.task}")
    return _stripped_brain(sample.role_labels[_roles("brain-tumor")[0]], set(lt.BRAIN_LABELS) | set(TUMOUR_OUTPUT))


def _stripped_brain(painted: np.ndarray, keep: set[int]) -> np.ndarray:
    """What a skull-stripping tool keeps (BraTS): the brain and the CSF in its sulci and cisterns, i.e. the
    extra-cerebral CSF inside the closed brain outline; not the outer CSF rim beyond it nor the skull."""
    brain = np.isin(painted, list(keep))
    outline = ndimage.binary_fill_holes(ndimage.binary_closing(brain, ndimage.generate_binary_structure(3, 1),
                                                               iterations=3))
    return brain | (outline & (painted == lt.OUTER_CSF))


def _output(task_id: str, painted: np.ndarray) -> np.ndarray:
    if task_id == "petmr-brain":
        return lt.output_labels(painted, lt.brain_output_values())
    if task_id == "brain-tumor":
        return lt.output_labels(painted, TUMOUR_OUTPUT)
    if task_id == "whole-heart":
        return lt.output_labels(painted, lt.HEART_VALUES)
    return lt.output_labels(painted, lt.SPINE_OUTPUT)


def _landmarks(task_id: str, painted: np.ndarray, grid: Grid) -> tuple[list[str], np.ndarray]:
    """Centroids of structures on the reference grid: the brain's paired nuclei and midline structures, or one
    point per vertebral subregion / disc component of the spine."""
    from scipy import ndimage

    names, points = [], []
    if task_id == "spine":
        for value in (41, 42, 45, 46, 47, 48, 49, 100):
            comp, n = ndimage.label(painted == value)
            if n == 0:
                continue
            sizes = ndimage.sum(np.ones_like(comp), comp, range(1, n + 1))
            for k, c in enumerate(ndimage.center_of_mass(comp > 0, comp, range(1, n + 1))):
                if sizes[k] >= 4:
                    names.append(f"subregion-{value}-{len(names)}")
                    points.append(c)
    else:
        for value in (10, 49, 12, 51, 17, 53, 11, 50, 8, 47, 16, 4, 43, 253):
            mask = painted == value
            if mask.sum() >= 4:
                names.append(f"aseg-{value}")
                points.append(ndimage.center_of_mass(mask))
    if len(points) < 4:  # degenerate draw: fall back to the grid's corners of the labelled box
        nz = np.argwhere(painted > 0)
        lo, hi = nz.min(0), nz.max(0)
        points = [lo, hi, (lo[0], hi[1], lo[2]), (hi[0], lo[1], lo[2])]
        names = [f"box-{i}" for i in range(4)]
    zyx = np.asarray(points, float)
    phys = np.asarray(grid.origin) + zyx[:, ::-1] @ grid.matrix.T
    return names, phys


def make_synth_case(task_id: str, seed: int, *, anatomy: tuple[Anatomy, ...] | None = None,
                    anatomy_dir=None, spacing: float | None = None, modality: str | None = None,
                    misregister: bool = True, whole_head_fraction: float | None = None,
                    heart_at_edge_fraction: float | None = None, random_contrast_fraction: float | None = None):
    """A :class:`~multimodalseg.phantoms.case.PhantomCase` from seed ``seed`` (which also picks the anatomy),
    ready for :func:`multimodalseg.phantoms.layouts.write_case`."""
    from multimodalseg.phantoms.case import PhantomCase

    maps = anatomy if anatomy is not None else load_anatomy(task_id, anatomy_dir)
    rng = np.random.default_rng([int(seed), 14])
    choice = int(rng.integers(len(maps)))
    t0 = time.perf_counter()
    s = generate(task_id, maps[choice], rng, spacing=spacing, modality=modality, misregister=misregister,
                 whole_head_fraction=whole_head_fraction, heart_at_edge_fraction=heart_at_edge_fraction,
                 random_contrast_fraction=random_contrast_fraction)
    images = {role: s.grids[role].image(np.ascontiguousarray(a)) for role, a in s.images.items()}
    ref = _roles(task_id)[0]
    label = s.grids[ref].image(np.ascontiguousarray(s.label.astype(np.uint16)))
    info = {"seed": int(seed), "synthetic": True, "misregistered": bool(s.transforms), **s.info,
            "seconds": round(time.perf_counter() - t0, 3)}
    if "pet" in s.info:
        info["pet"] = s.info["pet"]
    case_id = f"{task_id}-synth-{modality}-{seed:04d}" if modality else f"{task_id}-synth-{seed:04d}"
    return PhantomCase(task_id, case_id, modality, images, label, s.landmarks, s.transforms, s.landmark_names, info)
