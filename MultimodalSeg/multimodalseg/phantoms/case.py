"""``make_case``: one seeded phantom case of a task, with every role on its own grid and a known misregistration.

A task's phantom is a :class:`PhantomModel`: default grids, a scene builder (anatomy for a seed) and a renderer
(tissue codes -> one role's image). This module does what is common: grid choice, pose, oblique directions,
misregistration, rasterising the scene on each role's grid, labels and landmarks.

Random streams: ``np.random.default_rng(seed).spawn(8)`` gives independent generators for anatomy (two:
CT and MR heart cases are unpaired), pose, grid, misregistration, contrast and noise. Options such as
``misregister`` or ``oblique`` only decide whether a draw is *used*, never whether it is made, so the same
seed with ``misregister=False`` has the same anatomy and the same scanner contrast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.phantoms.contrast import label_map
from multimodalseg.phantoms.geometry import (
    Grid,
    Pose,
    identity_rigid,
    oblique_direction,
    random_rigid,
    rotation,
)
from multimodalseg.phantoms.shapes import Scene, rasterise
from multimodalseg.tasks import get_task


@dataclass(frozen=True)
class GridDefault:
    """A default grid: ``shape`` (z, y, x) voxels and ``spacing`` (x, y, z) mm."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def fov(self) -> np.ndarray:
        return np.asarray(self.shape[::-1], float) * np.asarray(self.spacing, float)


@dataclass(frozen=True)
class MovingGrid:
    """A moving role's own grid: ``spacing`` (x, y, z) mm and its field of view as a multiple of the
    reference's (per axis x, y, z)."""

    spacing: tuple[float, float, float]
    fov_scale: tuple[float, float, float] = (1.1, 1.1, 1.1)


@dataclass(frozen=True)
class RenderRequest:
    """What a renderer gets for one role: tissue ``codes`` (z, y, x) on ``grid``, the case's contrast
    ``params`` (from the model's ``contrast``), the modality, and a generator for this role's noise."""

    role: str
    codes: np.ndarray
    grid: Grid
    params: Mapping[str, Any]
    modality: str | None
    rng: np.random.Generator


@dataclass(frozen=True)
class PhantomModel:
    """How one task's phantom is made.

    Args:
        task_id: the task specification's id.
        grids: default reference grid per modality key (``""`` for tasks without a modality choice).
        clinical_grids: clinical-size reference grids, same keys.
        moving: roles with their own grid (others share the reference grid), default and clinical.
        build_scene: ``(rng, modality) -> Scene`` in anatomy mm.
        contrast: ``(rng, modality) -> params`` drawn once per case (tissue values, noise levels, ...).
        render: ``RenderRequest -> (z, y, x) image``: float32, or int16 Hounsfield units for CT.
        code_labels: tissue code -> output label value (codes not listed are background).
        misregister_default: whether moving roles are misregistered unless the caller says.
        pose_degrees: range of the anatomy's random rotation per axis.
        anisotropic_factor: slice thickness multiplier (along z) for ``anisotropic=True``.
    """

    task_id: str
    grids: Mapping[str, GridDefault]
    clinical_grids: Mapping[str, GridDefault]
    build_scene: Callable[[np.random.Generator, str | None], Scene]
    contrast: Callable[[np.random.Generator, str | None], dict[str, Any]]
    render: Callable[[RenderRequest], np.ndarray]
    code_labels: Mapping[int, int]
    moving: Mapping[str, MovingGrid] = field(default_factory=dict)
    clinical_moving: Mapping[str, MovingGrid] = field(default_factory=dict)
    misregister_default: bool = True
    pose_degrees: float = 5.0
    anisotropic_factor: float = 3.0
    modalities: tuple[str, ...] = ()


@dataclass
class PhantomCase:
    """One synthetic case of a task.

    Args:
        task: task id.
        case_id: e.g. ``petmr-brain-0003`` or ``whole-heart-mr-0001``.
        modality: ``ct``/``mr`` for whole-heart, None otherwise.
        images: by role, each on its own grid (moving roles may differ in spacing and origin and are rigidly
            misregistered).
        label: UInt16 label map with the task's output values, on the reference role's grid.
        landmarks: role -> (N, 3) LPS mm; row i is the same anatomical point in every role.
        misregistration: moving role -> rigid ``sitk.Euler3DTransform`` mapping reference physical points to that
            role's physical points (ITK resampling direction): ``landmarks[m] == T(landmarks[reference])``.
            Identity transforms when the case is not misregistered; empty for single-role tasks.
        landmark_names: N names, as written into the ``.mrk.json`` files.
        info: seed, options and facts (PET dose and weight, tumour size, ...), JSON-ready.
    """

    task: str
    case_id: str
    modality: str | None
    images: dict[str, sitk.Image]
    label: sitk.Image
    landmarks: dict[str, np.ndarray]
    misregistration: dict[str, sitk.Transform]
    landmark_names: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def reference_role(self) -> str:
        return get_task(self.task).reference_role


_MODELS: dict[str, PhantomModel] = {}


def register_model(model: PhantomModel) -> PhantomModel:
    _MODELS[model.task_id] = model
    return model


def model_for(task_id: str) -> PhantomModel:
    task = get_task(task_id)  # UserError for an unknown id
    return _MODELS[task.id]


def check_modality(model: PhantomModel, modality: str | None) -> str | None:
    """The modality to use: the model's first when None; a UserError when the task has no choice or it is unknown."""
    if not model.modalities:
        if modality is not None:
            raise UserError(f"task {model.task_id} has no modality choice (got '{modality}')")
        return None
    if modality is None:
        return model.modalities[0]
    if modality not in model.modalities:
        known = ", ".join(model.modalities)
        raise UserError(f"unknown modality '{modality}' for task {model.task_id} (known: {known})")
    return modality


def _reference_geometry(default: GridDefault, shape, spacing, anisotropic: bool, factor: float):
    fov = default.fov
    if shape is not None:
        if len(shape) != 3 or any(int(s) != s or s < 4 for s in shape):
            raise UserError(f"shape {tuple(shape)} must be three integers >= 4 (z, y, x)")
        size = np.asarray(shape[::-1], int)
    if spacing is not None:
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise UserError(f"spacing {tuple(spacing)} must be three positive numbers (x, y, z mm)")
        sp = np.asarray(spacing, float)
    if shape is None and spacing is None:
        size, sp = np.asarray(default.shape[::-1], int), np.asarray(default.spacing, float)
    elif spacing is None:
        sp = fov / size  # keep the anatomy's field of view
    elif shape is None:
        size = np.maximum(np.round(fov / sp).astype(int), 4)
    if anisotropic:
        sp = sp * np.array([1.0, 1.0, factor])
        size = size.copy()
        size[2] = max(4, int(round(size[2] / factor)))
    return tuple(int(s) for s in size[::-1]), tuple(float(s) for s in sp)


def make_case(
    task_id: str,
    seed: int = 0,
    *,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    modality: str | None = None,
    anisotropic: bool = False,
    oblique: bool = False,
    misregister: bool | None = None,
    clinical: bool = False,
) -> PhantomCase:
    """A seeded synthetic case of ``task_id`` (see :class:`PhantomCase`).

    Args:
        task_id: ``petmr-brain``, ``brain-tumor``, ``whole-heart`` or ``spine``.
        seed: the same seed gives the same case, voxel for voxel; other seeds give other anatomy.
        shape: reference grid (z, y, x); with no ``spacing`` the spacing stretches to keep the field of view.
        spacing: reference spacing (x, y, z) mm; with no ``shape`` the shape follows the field of view.
        modality: ``ct`` (default) or ``mr`` for whole-heart; None for the other tasks.
        anisotropic: thick slices (spacing along z times the model's factor, same field of view).
        oblique: tilted direction matrices (12-25 degrees about a random axis), different per role.
        misregister: rigidly misregister the moving roles (default: the task's, True except brain-tumor).
        clinical: clinical-size grids (e.g. 240x240x155 at 1 mm for brain-tumor) instead of the small default.

    Raises:
        UserError: unknown task, a modality for a task without one, bad shape or spacing.
    """
    model = model_for(task_id)
    task = get_task(task_id)
    modality = check_modality(model, modality)
    key = modality or ""
    misregister = model.misregister_default if misregister is None else bool(misregister)
    streams = np.random.default_rng(seed).spawn(8)
    anatomy_rng = streams[1] if modality == "mr" else streams[0]
    pose_rng, grid_rng, mis_rng, contrast_rng, noise_rng = streams[2:7]

    scene = model.build_scene(anatomy_rng, modality)
    default = (model.clinical_grids if clinical else model.grids)[key]
    ref_shape, ref_spacing = _reference_geometry(default, shape, spacing, anisotropic, model.anisotropic_factor)

    pose = Pose(centre=pose_rng.uniform(-40.0, 40.0, 3),
                rotation=rotation(pose_rng.uniform(-model.pose_degrees, model.pose_degrees, 3)))
    grid_centre = pose.centre + pose_rng.uniform(-4.0, 4.0, 3)  # the anatomy is never exactly centred
    directions = {role: oblique_direction(grid_rng) for role in task.roles}
    offsets = {role: grid_rng.uniform(-5.0, 5.0, 3) for role in task.roles}
    reference = task.reference_role
    eye = np.eye(3)
    ref_grid = Grid.centred(grid_centre, ref_shape, ref_spacing, directions[reference] if oblique else eye)

    moving_roles = [r for r in task.roles if r != reference]
    transforms: dict[str, sitk.Euler3DTransform] = {}
    for role in moving_roles:
        drawn = random_rigid(mis_rng, pose.centre)
        transforms[role] = drawn if misregister else identity_rigid(pose.centre)

    moving_specs = model.clinical_moving if clinical else model.moving
    grids = {reference: ref_grid}
    for role in moving_roles:
        spec = moving_specs.get(role)
        if spec is None:
            grids[role] = ref_grid
            continue
        fov = ref_grid.fov * np.asarray(spec.fov_scale)
        size_xyz = np.maximum(np.ceil(fov / np.asarray(spec.spacing)).astype(int), 4)
        centre = np.asarray(transforms[role].TransformPoint([float(c) for c in ref_grid.centre])) + offsets[role]
        grids[role] = Grid.centred(centre, tuple(int(s) for s in size_xyz[::-1]), spec.spacing,
                                   directions[role] if oblique else eye)

    codes: dict[str, np.ndarray] = {}
    cache: dict[tuple, np.ndarray] = {}
    for role in task.roles:
        t = transforms.get(role) if misregister else None  # identity: share the reference's rasterisation
        key_t = (grids[role], None if t is None else (tuple(t.GetParameters()), tuple(t.GetFixedParameters())))
        if key_t not in cache:
            a_mat, b_vec = pose.index_to_anatomy(grids[role], t)
            cache[key_t] = rasterise(scene.ops, grids[role].shape, a_mat, b_vec)
        codes[role] = cache[key_t]

    params = model.contrast(contrast_rng, modality)
    role_rngs = noise_rng.spawn(len(task.roles))
    images = {}
    for role, rng in zip(task.roles, role_rngs):
        array = model.render(RenderRequest(role, codes[role], grids[role], params, modality, rng))
        images[role] = grids[role].image(np.ascontiguousarray(array))  # float32, or int16 for CT
    label = ref_grid.image(label_map(codes[reference], model.code_labels))

    ref_points = pose.to_physical(scene.landmarks)
    landmarks = {reference: ref_points}
    for role in moving_roles:
        t = transforms[role]
        landmarks[role] = np.array([t.TransformPoint([float(v) for v in p]) for p in ref_points])
    case_id = f"{task.id}-{modality}-{seed:04d}" if modality else f"{task.id}-{seed:04d}"
    info = {"seed": int(seed), "anisotropic": bool(anisotropic), "oblique": bool(oblique),
            "misregistered": bool(misregister and moving_roles), "clinical": bool(clinical),
            **scene.info, **params.get("info", {})}
    return PhantomCase(task.id, case_id, modality, images, label, landmarks,
                       {r: transforms[r] for r in moving_roles}, list(scene.landmark_names), info)
