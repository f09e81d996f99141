"""Input preparation shared by inference and training, so both see exactly the same arrays. No torch.

The pipeline for one case (every step is a public function):

1. :func:`load_inputs` reads the images by role and checks them (known roles, required roles present, 3D, finite).
2. :func:`to_reference_grid` resamples every input onto the reference input's grid **in physical space**
   (``io.resample_to_reference``; never array resizing) and stacks them as ``(C, Z, Y, X)`` float32 in
   ``task.inputs`` order; an input whose extent does not overlap the reference is refused ("register it first"),
   and an input with a registration transform (``transforms``, e.g. ``segment --transform``) is resampled
   through it.
3. :func:`normalize_channels` applies each input's ``normalization`` scheme (:func:`normalize`).
4. :func:`to_spacing` resamples the stack onto a grid with the network's spacing (same physical extent,
   origin corner and direction), anti-aliased where the grid gets coarser (:func:`antialias`);
   :func:`labels_to_grid` brings a label map back by nearest neighbour.
   Inference takes the argmax *before* going back (PERFORMANCE.md: 10-50x cheaper than resampling logits).
5. ``prepare_case(orientation=...)`` permutes and flips the network arrays to the model's orientation
   (``multimodalseg.orientation``; lossless, so inference maps its output back voxel for voxel).
6. :func:`load_label` reads a label map onto the reference grid as contiguous training indices.

Axis order: arrays are ``(z, y, x)`` (SimpleITK's numpy order). Task and bundle ``spacing`` and ``patch_size``
are in ITK ``(x, y, z)`` order like ``image.GetSpacing()`` (spine's ``(256, 256, 1)`` is an axial slice); use
:func:`zyx` to turn them into array order.

Example:
    >>> images = load_inputs(task, {"t1": "t1.nii.gz", "pet": "pet.nii.gz"})
    >>> array, reference = to_reference_grid(task, images)
    >>> array = normalize_channels(task, array)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from multimodalseg import io
from multimodalseg.errors import UserError
from multimodalseg.orientation import Reorientation, reorient_grid, reorientation
from multimodalseg.tasks.spec import TaskSpec

PathLike = str | os.PathLike
# Below this fraction of the reference's box covered, an input "does not overlap" (a few voxels of contact).
MIN_OVERLAP = 1e-3
CT_WINDOW = (-1000.0, 2000.0)  # HU kept by the "ct" scheme: air .. dense cortical bone
CT_BODY_HU = -500.0  # voxels above this are body (foreground) for CT cropping
SPACING_RTOL = 1e-3


def zyx(values: Sequence[float] | Sequence[int]) -> tuple:
    """An ITK-ordered ``(x, y, z)`` tuple (spacing, patch size) in numpy array order ``(z, y, x)``."""
    return tuple(values)[::-1]


def load_inputs(task: TaskSpec, paths: Mapping[str, PathLike | sitk.Image]) -> dict[str, sitk.Image]:
    """Read the input images by role, with all the checks of ``io.read_image``.

    Args:
        task: the task whose ``inputs`` give the roles.
        paths: role -> file (or DICOM folder), or role -> an already-read ``sitk.Image`` (checked the same way).

    Returns:
        role -> 3D image, in ``task.inputs`` order; optional roles not given are absent.

    Raises:
        UserError: an unknown role (listing the task's roles), missing required roles (listing them), or any
            image problem (not found, not 3D, NaN/inf, bad geometry) naming the file.
    """
    check_roles(task, paths)
    roles = [spec.role for spec in task.inputs if spec.role in paths]

    def read(role: str) -> sitk.Image:
        source = paths[role]
        image = _check_image(source, role) if isinstance(source, sitk.Image) else io.read_image(source)
        check_extent(task, image, source if not isinstance(source, sitk.Image) else f"input '{role}'")
        return image

    # Files are read side by side: gzip inflation and SimpleITK release the GIL, and decompressing four BraTS
    # .nii.gz inputs one after the other is a visible part of a segment command's start-up.
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(roles)))) as pool:
        futures = [pool.submit(read, role) for role in roles]
    return {role: future.result() for role, future in zip(roles, futures)}  # the first bad input, in role order


MIN_VOXELS = 4  # fewer along an axis the network's patches span, and its filters fail (whole-heart: < 4 pixels)


def check_extent(task: TaskSpec, image: sitk.Image, where: PathLike) -> None:
    """A UserError naming the file and its size when the image is too thin for the task: fewer than
    :data:`MIN_VOXELS` voxels, or less than that many of the task's voxel spacing in mm, along any axis its
    patches span (an axis with patch size 1, such as the spine's slice axis, may be one voxel thick)."""
    axes = [p > 1 for p in task.patch_size]
    min_voxels = [MIN_VOXELS if a else 1 for a in axes]
    min_mm = [MIN_VOXELS * s if a else 0.0 for a, s in zip(axes, task.spacing)]
    patch = "x".join(map(str, task.patch_size))
    io.check_extent(image, min_voxels, min_mm, where,
                    f"task {task.id} needs at least {MIN_VOXELS} voxels and {min_mm[axes.index(True)]:g} mm along "
                    f"each axis its {patch} patches span")


def check_roles(task: TaskSpec, roles: Iterable[str]) -> None:
    """Raise a UserError for unknown roles (listing the task's) or missing required roles (listing them)."""
    paths = list(roles)
    unknown = [r for r in paths if r not in task.roles]
    if unknown:
        raise UserError(f"unknown input role{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                        f"for task {task.id} (roles: {', '.join(task.roles)})")
    missing = [i.role for i in task.inputs if i.required and i.role not in paths]
    if missing:
        raise UserError(f"task {task.id} needs input{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"(given: {', '.join(paths) or 'none'}); pass --input ROLE=PATH")


def _check_image(image: sitk.Image, role: str) -> sitk.Image:
    where = f"input '{role}'"
    if image.GetDimension() != 3:
        raise UserError(f"image is {image.GetDimension()}D; a 3D volume is needed", where)
    io.check_geometry(image, where)
    arr = sitk.GetArrayViewFromImage(image)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise UserError(f"image holds {int((~np.isfinite(arr)).sum())} NaN or infinite voxels", where)
    return image


def to_reference_grid(
    task: TaskSpec,
    images: Mapping[str, sitk.Image],
    paths: Mapping[str, PathLike] | None = None,
    transforms: Mapping[str, sitk.Transform] | None = None,
) -> tuple[np.ndarray, sitk.Image]:
    """Resample every input onto the reference input's grid in physical space and stack them.

    Args:
        task: gives the channel order (``task.inputs``) and the reference role.
        images: role -> image, as from :func:`load_inputs`.
        paths: role -> file, only to name the file in error messages.
        transforms: role -> transform applied while resampling that input (ITK's resampling direction: it maps
            reference physical points to the input's points, as the ``.tfm`` files of ``multimodalseg register``
            do). Inputs without one are taken as already registered (physical space as stored).

    Returns:
        ``(array, reference)``: ``array`` is ``(C, Z, Y, X)`` float32 with ``C = len(task.inputs)`` (a missing
        optional input is a zero channel); ``reference`` is the reference input's image (its grid is the output's).

    Raises:
        UserError: an input whose physical extent does not overlap the reference (names the file and says to
            register first), a transform for the reference role or for a role not given, or an input that the
            transform maps entirely outside the reference.
    """
    reference = images[task.reference_role]
    transforms = dict(transforms or {})
    check_transform_roles(task, transforms, images)
    size = reference.GetSize()
    array = np.zeros((len(task.inputs), size[2], size[1], size[0]), np.float32)
    for c, spec in enumerate(task.inputs):
        image = images.get(spec.role)
        if image is None:
            continue
        where = os.fspath(paths[spec.role]) if paths and spec.role in paths else f"input '{spec.role}'"
        transform = transforms.get(spec.role)
        if transform is not None:
            if transformed_overlap(image, reference, transform) < MIN_OVERLAP:
                raise UserError(f"after its transform, does not overlap the reference input "
                                f"'{task.reference_role}'; check that the transform belongs to these images", where)
            image = io.resample_to_reference(image, reference, transform=transform)
        elif spec.role != task.reference_role and not io.same_geometry(image, reference):
            if io.overlap_fraction(image, reference) < MIN_OVERLAP:
                raise UserError(
                    f"does not overlap the reference input '{task.reference_role}' in physical space "
                    f"(bounds {_bounds_text(image)} vs {_bounds_text(reference)} mm); register it first "
                    "('multimodalseg register', then pass the registered image or its --transform)", where)
            image = io.resample_to_reference(image, reference)
        array[c] = sitk.GetArrayViewFromImage(image)
    return array, reference


def check_transform_roles(task: TaskSpec, transforms: Mapping[str, object], given: Iterable[str]) -> None:
    """A UserError for a transform given for the reference role, an unknown role or a role without an image."""
    given = set(given)
    for role in transforms:
        if role == task.reference_role:
            raise UserError(f"a transform for the reference input '{role}' makes no sense: the output is on its grid")
        if role not in task.roles:
            raise UserError(f"transform for unknown input role '{role}' (roles: {', '.join(task.roles)})")
        if role not in given:
            raise UserError(f"transform for input '{role}', but no '{role}' image was given")


def transformed_overlap(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform,
                        samples: int = 17) -> float:
    """Fraction of a coarse sample (``samples`` per axis) of ``reference``'s voxel centres that ``transform`` maps
    inside ``image`` (its voxel-centre box grown by half a voxel)."""
    from multimodalseg.registration.grid import voxel_centres

    points = voxel_centres(reference, samples)
    mapped = np.array([transform.TransformPoint([float(v) for v in p]) for p in points])
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    index = np.linalg.solve(direction, (mapped - np.asarray(image.GetOrigin())).T).T / np.asarray(image.GetSpacing())
    inside = np.all((index >= -0.5) & (index <= np.asarray(image.GetSize()) - 0.5), axis=1)
    return float(inside.mean())


def _bounds_text(image: sitk.Image) -> str:
    lo, hi = io.physical_bounds(image)
    return "[" + ", ".join(f"{a:.0f}..{b:.0f}" for a, b in zip(lo, hi)) + "]"


def nonzero(array: np.ndarray) -> np.ndarray:
    """Voxels that are not numerically zero: ``|x| > 1e-6 max|x|``. Linear resampling of a skull-stripped image
    through a near-identity transform leaves a ring of ~1e-12 values around the brain; counted as foreground, they
    would shift the z-score statistics and the crop."""
    x = np.asarray(array)
    peak = float(np.abs(x).max()) if x.size else 0.0
    return np.abs(x) > peak * 1e-6


def normalize(array: np.ndarray, scheme: str, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalise one channel ``(Z, Y, X)``; returns a new float32 array.

    Args:
        array: intensities (MR arbitrary units, CT in HU, PET in Bq/mL or SUV).
        scheme: ``zscore``: mean 0 / std 1 over the foreground (``mask``, default the nonzero voxels, as MONAI's
            ``NormalizeIntensity(nonzero=True)``, up to :func:`nonzero`'s round-off; background stays 0).
            ``ct``: clip to ``CT_WINDOW`` HU and divide
            by 1000 (air -1, water 0, bone 1-2). ``pet``: divide by the 99th percentile of the positive voxels (a
            robust scale that works for Bq/mL and SUV alike). ``zscore_clip``: DMFNet's reference, clip the
            foreground to its 0.2/99.8 percentiles, then ``zscore`` (background stays 0, unlike DMFNet's shift of
            the whole image). ``min_max``: to [0, 1] by the image's minimum and maximum (Dual-UXNet). ``none``:
            unchanged.
        mask: foreground voxels for ``zscore`` and ``zscore_clip``.
    """
    x = np.asarray(array, np.float32)
    if scheme == "none":
        return x.copy()
    if scheme == "ct":
        return np.clip(x, *CT_WINDOW) / np.float32(1000.0)
    if scheme == "pet":
        positive = x[x > 0]
        scale = float(np.percentile(positive, 99)) if positive.size else 0.0
        return x / np.float32(scale if scale > 0 else 1.0)
    if scheme == "min_max":
        low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        return (x - np.float32(low)) / np.float32(high - low if high > low else 1.0)
    if scheme == "zscore_clip":
        fg = nonzero(x) if mask is None else mask
        if fg.sum() >= 2:
            low, high = np.percentile(x[fg], (0.2, 99.8))
            x = x.copy()
            x[fg] = np.clip(x[fg], low, high)
        scheme, mask = "zscore", fg
    if scheme == "zscore":
        fg = nonzero(x) if mask is None else mask
        if fg.sum() < 2:  # an empty image: nothing to estimate from
            return np.zeros_like(x)
        values = x[fg]
        mean, std = float(values.mean()), float(values.std())
        out = np.zeros_like(x)
        out[fg] = (values - mean) / (std if std > 1e-8 else 1.0)
        return out
    raise ValueError(f"unknown normalization scheme '{scheme}'")


def normalize_channels(task: TaskSpec, array: np.ndarray, schemes: Mapping[str, str] | None = None) -> np.ndarray:
    """Apply each input's scheme to its channel of a ``(C, Z, Y, X)`` stack in ``task.inputs`` order (new array).

    Args:
        schemes: role -> scheme overriding the task's ``normalization`` (a bundle's ``preprocessing.normalization``).
    """
    schemes = schemes or {}
    return np.stack([normalize(array[c], schemes.get(spec.role, spec.normalization))
                     for c, spec in enumerate(task.inputs)])


def foreground_mask(task: TaskSpec, array: np.ndarray) -> np.ndarray:
    """Voxels that are not background in any channel of a raw (not yet normalised) ``(C, Z, Y, X)`` stack.

    CT channels: above ``CT_BODY_HU`` (body, not air); other channels: nonzero (skull-stripped MR, PET, and the
    zero fill outside a resampled input). Images without background (noisy MR) give an all-true mask.
    """
    mask = np.zeros(array.shape[1:], bool)
    for c, spec in enumerate(task.inputs):
        mask |= array[c] > CT_BODY_HU if spec.normalization == "ct" else nonzero(array[c])
    return mask


def bounding_box(mask: np.ndarray, margin: int | Sequence[int] = 0) -> tuple[slice, ...] | None:
    """Slices ``(z, y, x)`` of the mask's bounding box grown by ``margin`` voxels; None when the mask is empty."""
    if not mask.any():
        return None
    margins = np.broadcast_to(np.asarray(margin, int), (mask.ndim,))
    out = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(int(max(0, hit[0] - margins[axis])), int(min(mask.shape[axis], hit[-1] + 1 + margins[axis]))))
    return tuple(out)


def crop_image(image: sitk.Image, box: tuple[slice, ...]) -> sitk.Image:
    """The sub-image of ``box`` (array-order slices), with its physical position kept (SimpleITK slicing)."""
    z, y, x = box
    return image[x.start:x.stop, y.start:y.stop, z.start:z.stop]


def grid_with_spacing(reference: sitk.Image, spacing: Sequence[float]) -> sitk.Image:
    """An empty image covering ``reference``'s physical extent with another spacing (ITK order, mm).

    The outer voxel edges stay where they were: the new origin is the old first edge plus half a new voxel,
    along the reference's direction.
    """
    old = np.asarray(reference.GetSpacing(), float)
    new = np.asarray(spacing, float)
    size = np.maximum(1, np.round(np.asarray(reference.GetSize()) * old / new)).astype(int)
    direction = np.asarray(reference.GetDirection(), float).reshape(3, 3)
    origin = np.asarray(reference.GetOrigin(), float) + direction @ ((new - old) / 2)
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing([float(s) for s in new])
    grid.SetOrigin([float(o) for o in origin])
    grid.SetDirection(reference.GetDirection())
    return grid


def same_spacing(image: sitk.Image, spacing: Sequence[float] | None) -> bool:
    return spacing is None or np.allclose(image.GetSpacing(), spacing, rtol=SPACING_RTOL, atol=0)


# Gaussian sigma = FWHM / (2 sqrt(2 ln 2)): a voxel's profile taken as a Gaussian whose FWHM is the voxel width.
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def antialias_sigmas(source: Sequence[float], target: Sequence[float]) -> list[float]:
    """Per-axis Gaussian sigma (mm, ITK order) that takes ``source`` voxels to ``target``'s resolution before
    sampling: ``sqrt(target^2 - source^2) * FWHM_TO_SIGMA`` where the target is coarser, else 0."""
    src, dst = np.asarray(source, float), np.asarray(target, float)
    return [float(v) for v in np.sqrt(np.clip(dst ** 2 - src ** 2, 0.0, None)) * FWHM_TO_SIGMA]


def antialias(image: sitk.Image, sigmas: Sequence[float]) -> sitk.Image:
    """``image`` smoothed along each axis with a nonzero sigma (mm; recursive Gaussian), clamped to its own range
    (the recursive filter overshoots by ~1e-6: a zero background must not turn negative)."""
    axes = [a for a, sigma in enumerate(sigmas) if sigma > 0 and image.GetSize()[a] >= 4]  # the filter needs voxels
    if not axes:
        return image
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    for axis in axes:
        image = sitk.RecursiveGaussian(image, float(sigmas[axis]), False, sitk.RecursiveGaussianImageFilter.ZeroOrder,
                                       axis)
    return sitk.Clamp(image, image.GetPixelID(), stats.GetMinimum(), stats.GetMaximum())


def to_spacing(
    array: np.ndarray, reference: sitk.Image, spacing: Sequence[float] | None
) -> tuple[np.ndarray, sitk.Image]:
    """Resample a ``(C, Z, Y, X)`` stack on ``reference``'s grid to ``spacing`` (linear, physical space).

    Along an axis that gets coarser the channels are first smoothed to the new resolution
    (:func:`antialias_sigmas`), so that the network sees a 1 mm scan at 2 mm as a 2 mm scan rather than as every
    second voxel with its 1 mm noise and aliasing (skimage's ``anti_aliasing``, TorchIO's ``Resample``). This also
    makes the inputs' own grids matter less: a sequence re-gridded on the way in is no blurrier, at the network's
    spacing, than the native reference.

    Returns:
        ``(array, grid)``: the resampled float32 stack and an image carrying its geometry. Unchanged (no copy)
        when ``spacing`` is None or already the reference's.
    """
    if same_spacing(reference, spacing):
        return array, reference
    grid = grid_with_spacing(reference, spacing)
    size = grid.GetSize()
    out = np.empty((array.shape[0], size[2], size[1], size[0]), np.float32)
    sigmas = antialias_sigmas(reference.GetSpacing(), spacing)
    for c in range(array.shape[0]):
        smooth = antialias(io.copy_geometry(array[c], reference), sigmas)
        resampled = io.resample_to_reference(smooth, grid)
        out[c] = sitk.GetArrayViewFromImage(resampled)  # the image must outlive its array view
    return out, grid


def labels_to_grid(labels: np.ndarray, grid: sitk.Image, target: sitk.Image) -> np.ndarray:
    """Nearest-neighbour resampling of an integer ``(Z, Y, X)`` map on ``grid`` onto ``target``'s grid."""
    if io.same_geometry(grid, target):
        return labels
    dtype = np.uint8 if labels.max(initial=0) <= np.iinfo(np.uint8).max else np.uint16
    image = io.copy_geometry(labels.astype(dtype, copy=False), grid)
    return sitk.GetArrayFromImage(io.resample_to_reference(image, target, label=True))


def load_label(
    task: TaskSpec,
    path: PathLike | sitk.Image,
    reference: sitk.Image,
    convention: str | None = None,
) -> np.ndarray:
    """Read a label map onto ``reference``'s grid as contiguous training indices ``(Z, Y, X)`` uint8/uint16.

    Args:
        task: the label table (values, aliases, conventions).
        path: the label file (or an image in memory); its values must be in the task's table (in ``convention``,
            default the task's).
        reference: the grid (a label on another grid is resampled by nearest neighbour in physical space).
        convention: e.g. ``brats2023``, ``msd``; None for the task's own values.

    Raises:
        UserError: unreadable, non-integer or unknown values (naming them), or no overlap with ``reference``.
    """
    image = path if isinstance(path, sitk.Image) else io.read_image(path, label=True)
    where = "label map" if isinstance(path, sitk.Image) else os.fspath(path)
    task.check_label_values(io.label_values(image), where, convention)
    if not io.same_geometry(image, reference):
        if io.overlap_fraction(image, reference) < MIN_OVERLAP:
            raise UserError("label map does not overlap the reference image in physical space", where)
        image = io.resample_to_reference(image, reference, label=True)
    table = task.value_to_index(convention)
    lut = np.zeros(max(table) + 1, np.uint16)
    for value, index in table.items():
        lut[value] = index
    dtype = np.uint8 if len(task.labels) <= np.iinfo(np.uint8).max else np.uint16
    return lut[sitk.GetArrayViewFromImage(image)].astype(dtype)


def indices_to_values(indices: np.ndarray, task: TaskSpec, convention: str | None = None) -> np.ndarray:
    """Map a training-index map ``(Z, Y, X)`` to the task's output values (uint16), e.g. MM-WHS 500, BraTS 4."""
    table = task.index_to_value(convention)
    lut = np.zeros(max(table) + 1, np.uint16)
    for index, value in table.items():
        lut[index] = value
    return lut[indices]


@dataclass
class PreparedCase:
    """One case ready for a network.

    Attributes:
        image: ``(C, Z, Y, X)`` float32, normalised, on ``grid`` (network spacing, cropped if asked).
        grid: image with the geometry of ``image`` (no voxel data needed; in the asked orientation).
        reference: the reference input (the output's geometry).
        box: array-order slices of the crop on the reference grid, or None (no crop).
        label: ``(Z, Y, X)`` training indices on ``grid`` (None without a label path).
    """

    image: np.ndarray
    grid: sitk.Image
    reference: sitk.Image
    box: tuple[slice, ...] | None = None
    label: np.ndarray | None = None


def prepare_case(
    task: TaskSpec,
    paths: Mapping[str, PathLike | sitk.Image],
    *,
    spacing: Sequence[float] | None = None,
    label: PathLike | sitk.Image | None = None,
    convention: str | None = None,
    crop_margin: int | None = None,
    transforms: Mapping[str, sitk.Transform] | None = None,
    schemes: Mapping[str, str] | None = None,
    orientation: str | None = None,
) -> PreparedCase:
    """Everything above in one call: load, reference grid, optional foreground crop, normalise, spacing.

    Args:
        spacing: network spacing (ITK order of the network arrays, after ``orientation``; mm); None keeps the
            reference's.
        label: a label map to prepare alongside (nearest neighbour throughout).
        crop_margin: crop to the foreground bounding box grown by this many voxels (reference grid); None: no crop.
        transforms: role -> transform applied while resampling that input (see :func:`to_reference_grid`).
        schemes: role -> normalisation scheme overriding the task's (a bundle's or training config's
            ``normalization``; see :func:`normalize_channels`).
        orientation: bring the network arrays (image, label, grid) to this orientation code by axis permutation
            and flips (``multimodalseg.orientation``); None: the reference's.
    """
    images = load_inputs(task, paths)
    file_paths = {r: p for r, p in paths.items() if not isinstance(p, sitk.Image)}
    raw, reference = to_reference_grid(task, images, file_paths, transforms)
    lab = load_label(task, label, reference, convention) if label is not None else None
    box = bounding_box(foreground_mask(task, raw), crop_margin) if crop_margin is not None else None
    sub = reference
    if box is not None:
        raw, sub = raw[(slice(None), *box)], crop_image(reference, box)
        lab = lab[box] if lab is not None else None
    turn = reorientation(sub.GetDirection(), orientation) if orientation else Reorientation()
    array, grid = to_spacing(normalize_channels(task, raw, schemes), sub, turn.source_values(spacing))
    if lab is not None:
        lab = labels_to_grid(lab, sub, grid)
    grid, _ = reorient_grid(grid, orientation)
    array = np.ascontiguousarray(turn.apply(array))
    lab = np.ascontiguousarray(turn.apply(lab)) if lab is not None else None
    return PreparedCase(array, grid, reference, box, lab)
