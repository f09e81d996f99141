"""Heart ROI geometry of the whole-heart cascade (METHODS §C.3, §C.6), torch-free (numpy + SimpleITK).

1. :func:`localization_input`: the whole image on a coarse grid (32³ at 10 mm for CT, 12 mm for MR) centred on
   the image, anti-aliased, in the image's own orientation.
2. :func:`centre_from_heatmap`: the localisation network's heatmap -> the heart centre as an LPS point (arg-max,
   refined to sub-voxel by a Gaussian fit). :func:`heatmap_target` and :func:`label_centre` make the
   training targets.
3. :func:`crop_roi`: the ROI (64³ at 3 mm for CT, 4 mm for MR) centred on that point, in the image's orientation.
4. :func:`paste_labels` / :func:`paste_probabilities`: the ROI result back onto the full input grid in physical
   space (labels by nearest neighbour; probabilities linearly interpolated, then arg-max, as Payer's pipeline),
   background outside the ROI. Only the input's sub-box covering the ROI is resampled.

All grids keep the input's direction cosines, so oblique scans stay oblique and no intensity is rotated twice.
Sizes are (x, y, z) voxels and spacings (x, y, z) mm (SimpleITK order); arrays are (z, y, x).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk


class GridSpec(NamedTuple):
    """An isotropic cubic grid: ``size`` voxels per axis at ``spacing`` mm."""

    size: int
    spacing: float


# Payer's MM-WHS settings (METHODS §C.1, §C.3).
LOCALIZATION_GRID = {"ct": GridSpec(32, 10.0), "mr": GridSpec(32, 12.0)}
ROI_GRID = {"ct": GridSpec(64, 3.0), "mr": GridSpec(64, 4.0)}
HEATMAP_SIGMA_VOXELS = 1.5


def _triple(value: float | Sequence[float], name: str) -> np.ndarray:
    out = np.asarray([value] * 3 if np.isscalar(value) else value, dtype=np.float64)
    if out.shape != (3,) or not np.all(np.isfinite(out)) or np.any(out <= 0):
        raise ValueError(f"{name} must be a positive number or three of them, got {value}")
    return out


def _grid_spec(table: dict[str, GridSpec], modality: str | None, size, spacing) -> tuple[np.ndarray, np.ndarray]:
    if size is None or spacing is None:
        if modality is None or modality.lower() not in table:
            raise ValueError(f"give size and spacing, or a modality among {', '.join(table)} (got {modality!r})")
        spec = table[modality.lower()]
        size = spec.size if size is None else size
        spacing = spec.spacing if spacing is None else spacing
    size = _triple(size, "size")
    if np.any(size != np.round(size)):
        raise ValueError(f"size must be whole voxels, got {size}")
    return size.astype(int), _triple(spacing, "spacing")


def _direction(image: sitk.Image) -> np.ndarray:
    return np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)


def image_centre(image: sitk.Image) -> np.ndarray:
    """The physical (LPS, mm) centre of the image's voxel centres."""
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint((np.asarray(image.GetSize()) - 1) / 2.0))


def centred_grid(reference: sitk.Image, centre: Sequence[float], size: Sequence[int] | int,
                 spacing: Sequence[float] | float) -> sitk.Image:
    """A blank grid of ``size`` voxels at ``spacing`` mm with ``reference``'s direction, centred on ``centre``."""
    size_v, spacing_v = _triple(size, "size").astype(int), _triple(spacing, "spacing")
    grid = sitk.Image([int(s) for s in size_v], sitk.sitkUInt8)
    grid.SetSpacing([float(s) for s in spacing_v])
    grid.SetDirection(reference.GetDirection())
    origin = np.asarray(centre, float) - _direction(reference) @ ((size_v - 1) / 2.0 * spacing_v)
    grid.SetOrigin([float(o) for o in origin])
    return grid


def _antialias(image: sitk.Image, target_spacing: np.ndarray) -> sitk.Image:
    """Gaussian smoothing so that down-sampling to ``target_spacing`` does not alias (σ = half the target step)."""
    source = np.asarray(image.GetSpacing())
    sigma = np.sqrt(np.clip((target_spacing / 2) ** 2 - (source / 2) ** 2, 0, None))
    if not np.any(sigma > 0):
        return sitk.Cast(image, sitk.sitkFloat32)
    # The recursive filter needs σ > 0 on every axis; a hundredth of a voxel changes nothing.
    sigma = np.maximum(sigma, 0.01 * source)
    return sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), [float(s) for s in sigma])


def _minimum(image: sitk.Image) -> float:
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    return float(stats.GetMinimum())


def localization_input(image: sitk.Image, modality: str | None = None, *, size: Sequence[int] | int | None = None,
                       spacing: Sequence[float] | float | None = None,
                       centre: Sequence[float] | None = None) -> sitk.Image:
    """The whole ``image`` on the localisation grid (float32), centred on the image (or on ``centre``, LPS mm:
    training shifts it to augment); outside the image: its minimum."""
    size_v, spacing_v = _grid_spec(LOCALIZATION_GRID, modality, size, spacing)
    grid = centred_grid(image, image_centre(image) if centre is None else centre, size_v, spacing_v)
    smooth = _antialias(image, spacing_v)
    return sitk.Resample(smooth, grid, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkLinear, _minimum(image),
                         sitk.sitkFloat32)


def heatmap_target(grid: sitk.Image, centre: Sequence[float], sigma_voxels: float = HEATMAP_SIGMA_VOXELS) -> np.ndarray:
    """Gaussian heatmap (z, y, x), peak 1 at ``centre`` (LPS mm), σ in voxels of ``grid``: the training target."""
    if sigma_voxels <= 0:
        raise ValueError(f"sigma_voxels must be positive, got {sigma_voxels}")
    c = np.asarray(grid.TransformPhysicalPointToContinuousIndex([float(v) for v in centre]))[::-1]  # (z, y, x)
    axes = [np.arange(n, dtype=np.float64) - ci for n, ci in zip(grid.GetSize()[::-1], c)]
    d2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    return np.exp(-d2 / (2 * sigma_voxels**2)).astype(np.float32)


def centre_from_heatmap(heatmap: np.ndarray, grid: sitk.Image, *, refine: bool = True) -> np.ndarray:
    """The heatmap's peak as an LPS point (mm): arg-max, refined to sub-voxel by a Gaussian fit.

    Args:
        heatmap: (z, y, x) on ``grid`` (a leading channel axis of 1 is dropped).
        grid: the localisation grid the heatmap lives on.
        refine: per axis, fit a parabola to the log of the peak and its two neighbours (exact for a Gaussian
            peak); an axis whose three values are not all positive, or that is at the border, is not refined.
    """
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim == 4 and heatmap.shape[0] == 1:
        heatmap = heatmap[0]
    if heatmap.shape != tuple(grid.GetSize()[::-1]):
        raise ValueError(f"heatmap shape {heatmap.shape} does not match the grid {grid.GetSize()[::-1]}")
    if not np.all(np.isfinite(heatmap)):
        raise ValueError("heatmap has non-finite values")
    index = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    peak = np.asarray(index, dtype=np.float64)
    for axis in range(3) if refine else ():
        if not 0 < index[axis] < heatmap.shape[axis] - 1:
            continue
        around = [list(index) for _ in range(3)]
        for k, d in enumerate((-1, 0, 1)):
            around[k][axis] += d
        values = np.array([heatmap[tuple(i)] for i in around])
        if np.all(values > 0):
            lo, mid, hi = np.log(values)
            curvature = lo - 2 * mid + hi
            if curvature < 0:
                peak[axis] += float(np.clip((lo - hi) / (2 * curvature), -0.5, 0.5))
    return np.asarray(grid.TransformContinuousIndexToPhysicalPoint([float(v) for v in peak[::-1]]))


def label_centre(label: sitk.Image) -> np.ndarray:
    """The LPS centre of the foreground's bounding box (the heart centre a localisation target is built from)."""
    arr = sitk.GetArrayViewFromImage(label)
    nonzero = np.nonzero(arr)
    if nonzero[0].size == 0:
        raise ValueError("the label map has no foreground")
    centre = np.array([(ax.min() + ax.max()) / 2.0 for ax in nonzero])[::-1]  # (x, y, z) index
    return np.asarray(label.TransformContinuousIndexToPhysicalPoint([float(c) for c in centre]))


def body_centre(image: sitk.Image) -> np.ndarray:
    """The LPS centre of the body's bounding box: the voxels above an Otsu threshold (air and lung below it in CT,
    the noisy background in MR), in the largest connected component; the image centre for a flat image. The
    cascade's heart centre when it runs without the localisation network."""
    arr = sitk.GetArrayViewFromImage(image)
    if float(arr.max()) <= float(arr.min()):
        return image_centre(image)
    mask = sitk.OtsuThreshold(sitk.Cast(image, sitk.sitkFloat32), 0, 1)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    return label_centre(components == 1)


def grid_spec(value: GridSpec | Sequence[float] | dict | None, default: GridSpec) -> GridSpec:
    """A :class:`GridSpec` from bundle metadata, ``{"size": 64, "spacing": 3.0}``; None: ``default``."""
    if value is None:
        return default
    size, spacing = (value["size"], value["spacing"]) if isinstance(value, dict) else value
    if int(size) != size or int(size) < 1 or not float(spacing) > 0:
        raise ValueError(f"a grid needs a whole size >= 1 and a positive spacing, got {value}")
    return GridSpec(int(size), float(spacing))


def roi_grid(image: sitk.Image, centre: Sequence[float], modality: str | None = None, *,
             size: Sequence[int] | int | None = None, spacing: Sequence[float] | float | None = None) -> sitk.Image:
    """The blank ROI grid around ``centre`` (ROI_GRID of the modality unless ``size``/``spacing`` are given)."""
    size_v, spacing_v = _grid_spec(ROI_GRID, modality, size, spacing)
    return centred_grid(image, centre, size_v, spacing_v)


def crop_roi(image: sitk.Image, centre: Sequence[float], modality: str | None = None, *,
             size: Sequence[int] | int | None = None, spacing: Sequence[float] | float | None = None,
             label: bool = False, default_value: float | None = None) -> sitk.Image:
    """``image`` resampled on the ROI grid around ``centre``.

    Intensities: linear, float32, anti-aliased when the ROI is coarser, the image minimum outside the image (air
    for CT) unless ``default_value``; labels (``label=True``): nearest neighbour, own pixel type, 0 outside.
    """
    grid = roi_grid(image, centre, modality, size=size, spacing=spacing)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    if label:
        return sitk.Resample(image, grid, identity, sitk.sitkNearestNeighbor, default_value or 0, image.GetPixelID())
    fill = _minimum(image) if default_value is None else default_value
    smooth = _antialias(image, np.asarray(grid.GetSpacing()))
    return sitk.Resample(smooth, grid, identity, sitk.sitkLinear, fill, sitk.sitkFloat32)


def _covering_box(roi: sitk.Image, reference: sitk.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """Start index and size (x, y, z) of the smallest box of ``reference`` voxels covering ``roi``; None if none."""
    size = np.asarray(roi.GetSize(), float)
    corners = np.stack(np.meshgrid(*[[-0.5, s - 0.5] for s in size], indexing="ij"), -1).reshape(-1, 3)
    idx = np.array([reference.TransformPhysicalPointToContinuousIndex(
        roi.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])) for corner in corners])
    lo = np.maximum(np.floor(idx.min(0)).astype(int), 0)
    hi = np.minimum(np.ceil(idx.max(0)).astype(int), np.asarray(reference.GetSize()) - 1)
    if np.any(hi < lo):
        return None
    return lo, hi - lo + 1


def _sub_grid(reference: sitk.Image, start: np.ndarray, size: np.ndarray) -> sitk.Image:
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing(reference.GetSpacing())
    grid.SetDirection(reference.GetDirection())
    grid.SetOrigin(reference.TransformIndexToPhysicalPoint([int(s) for s in start]))
    return grid


def _box_slices(start: np.ndarray, size: np.ndarray) -> tuple[slice, slice, slice]:
    return tuple(slice(int(a), int(a + n)) for a, n in zip(start[::-1], size[::-1]))


def paste_labels(roi_labels: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """ROI labels onto ``reference``'s grid by nearest neighbour in physical space; 0 outside the ROI."""
    out = np.zeros(reference.GetSize()[::-1], dtype=sitk.GetArrayViewFromImage(roi_labels).dtype)
    box = _covering_box(roi_labels, reference)
    if box is not None:
        sub = sitk.Resample(roi_labels, _sub_grid(reference, *box), sitk.Transform(3, sitk.sitkIdentity),
                            sitk.sitkNearestNeighbor, 0, roi_labels.GetPixelID())
        out[_box_slices(*box)] = sitk.GetArrayViewFromImage(sub)
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(reference)
    return image


def paste_probabilities(probabilities: np.ndarray, roi: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Class probabilities on the ROI grid -> a label-index map (UInt8) on ``reference``'s grid.

    Each class's probability is interpolated linearly at the reference voxels inside the ROI, then the arg-max is
    taken (Payer resamples the probabilities, not the labels, so boundaries stay smooth at a coarser ROI spacing).
    Outside the ROI every probability is 0, which gives index 0, the background.

    Args:
        probabilities: (C, z, y, x) on ``roi``'s grid, C <= 256.
        roi: the ROI grid (from :func:`roi_grid` / :func:`crop_roi`).
        reference: the full input image's grid.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim != 4 or probabilities.shape[1:] != tuple(roi.GetSize()[::-1]):
        raise ValueError(f"probabilities {probabilities.shape} must be (C, *{roi.GetSize()[::-1]})")
    if probabilities.shape[0] > 256:
        raise ValueError(f"at most 256 classes fit a UInt8 label map, got {probabilities.shape[0]}")
    out = np.zeros(reference.GetSize()[::-1], dtype=np.uint8)
    box = _covering_box(roi, reference)
    if box is not None:
        vector = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(probabilities, 0, -1)), isVector=True)
        vector.CopyInformation(roi)
        sub = sitk.Resample(vector, _sub_grid(reference, *box), sitk.Transform(3, sitk.sitkIdentity),
                            sitk.sitkLinear, 0.0)
        values = sitk.GetArrayViewFromImage(sub)  # (z, y, x, C)
        out[_box_slices(*box)] = np.argmax(values, axis=-1).astype(np.uint8)
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(reference)
    return image


def network_array(image: sitk.Image, scheme: str) -> np.ndarray:
    """A resampled grid's intensities as the networks read them: ``(Z, Y, X)`` float32, normalised with ``scheme``
    (``preprocessing.normalize``, the bundle's normalisation of the image role)."""
    from multimodalseg.preprocessing import normalize

    return normalize(sitk.GetArrayFromImage(image), scheme)


def localization_array(image: sitk.Image, grid: GridSpec, scheme: str,
                       centre: Sequence[float] | None = None) -> tuple[np.ndarray, sitk.Image]:
    """The localisation network's input: :func:`localization_input` on ``grid``, normalised; and its grid image."""
    coarse = localization_input(image, size=grid.size, spacing=grid.spacing, centre=centre)
    return network_array(coarse, scheme), coarse


def roi_array(image: sitk.Image, centre: Sequence[float], grid: GridSpec, scheme: str) -> tuple[np.ndarray, sitk.Image]:
    """The ROI stage's input: :func:`crop_roi` around ``centre`` on ``grid``, normalised; and the ROI image."""
    roi = crop_roi(image, centre, size=grid.size, spacing=grid.spacing)
    return network_array(roi, scheme), roi
