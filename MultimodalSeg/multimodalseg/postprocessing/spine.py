"""Spine CT-MR outputs (METHODS §E): the MCF disagreement map, vertebra level names, the fused volume on the CT grid.

Torch-free (numpy + SimpleITK). Physical coordinates are LPS, so the cranio-caudal axis is physical +z (superior)
whatever the image's direction matrix: level naming works on oblique and flipped grids alike.

Example:
    >>> table, instances = name_vertebrae(labels)          # the lowest vertebra is L5 by default
    >>> [row["level"] for row in table]
    ['L5', 'L4', 'L3', 'L2', 'L1']
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from multimodalseg import io

# Vertebral levels from cranial to caudal, and their values in the VerSe instance convention
# (C1-C7 = 1-7, T1-T12 = 8-19, L1-L5 = 20-24, sacrum = 26).
LEVELS: tuple[str, ...] = (*(f"C{i}" for i in range(1, 8)), *(f"T{i}" for i in range(1, 13)),
                           *(f"L{i}" for i in range(1, 6)), "S1")
VERSE_VALUES: dict[str, int] = {**{name: i + 1 for i, name in enumerate(LEVELS[:-1])}, "S1": 26}
PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}  # the physical (LPS) axis normal to each plane


def _array(x: np.ndarray | sitk.Image) -> np.ndarray:
    return sitk.GetArrayViewFromImage(x) if isinstance(x, sitk.Image) else np.asarray(x)


def disagreement_map(labels_a: np.ndarray | sitk.Image, labels_b: np.ndarray | sitk.Image,
                     foreground: Iterable[int] | None = None) -> np.ndarray | sitk.Image:
    """Where the two MCF subnets' binarised outputs differ: 1 there, 0 elsewhere (uint8).

    Each label map is binarised per foreground class and the per-class XORs are joined, which marks exactly
    the voxels where the maps differ. With ``foreground`` (label values), each map is binarised once as
    "in ``foreground``" (e.g. ``[1]``: disagreement about vertebra only).

    Inputs are two arrays of one shape or two images of one geometry; the result is of the same kind (an image
    with the inputs' geometry).

    Raises:
        ValueError: different shapes or geometries.
    """
    a, b = _array(labels_a), _array(labels_b)
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} and {b.shape}")
    if isinstance(labels_a, sitk.Image) and isinstance(labels_b, sitk.Image) and not io.same_geometry(labels_a,
                                                                                                       labels_b):
        raise ValueError("label maps differ in geometry (origin, spacing or direction)")
    if foreground is None:
        diff = a != b
    else:
        values = np.fromiter(foreground, dtype=np.int64)
        diff = np.isin(a, values) ^ np.isin(b, values)
    out = diff.astype(np.uint8)
    if isinstance(labels_a, sitk.Image):
        return io.copy_geometry(out, labels_a)
    return out


def plane_axis(image: sitk.Image, plane: str = "sagittal") -> int:
    """The array axis (of the (z, y, x) array) to slice ``image`` along for ``plane`` slices.

    It is the index axis whose direction is closest to the plane's normal (L-R for sagittal, A-P for coronal,
    S-I for axial), so oblique acquisitions give the nearest plane.
    """
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {tuple(PLANES)}, got '{plane}'")
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    index_axis = int(np.argmax(np.abs(direction[PLANES[plane]])))  # column j: physical direction of index axis j
    return 2 - index_axis


def fused_on_ct_grid(fused: np.ndarray, ct: sitk.Image) -> sitk.Image:
    """The fused volume ((z, y, x) values in [0, 1], on the CT grid) as an 8-bit grey image with the CT's geometry.

    Values are clipped to [0, 1] and scaled to 0-255, the grey levels the fusion metrics use; the scaling is the
    same for every slice, so slices stay comparable (CDDFuse rescales each test image on its own).

    Raises:
        ValueError: the array does not have the CT's size, or has NaN values.
    """
    array = np.asarray(fused, dtype=np.float32)
    if np.isnan(array).any():
        raise ValueError("the fused volume has NaN values")
    return io.copy_geometry(np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8), ct)


def write_fused(fused: np.ndarray, ct: sitk.Image, path: str | os.PathLike) -> Path:
    """Write :func:`fused_on_ct_grid` atomically (``io.write_image``)."""
    return io.write_image(fused_on_ct_grid(fused, ct), path)


def _components(mask: sitk.Image) -> sitk.Image:
    return sitk.ConnectedComponent(mask, True)


def _split_touching(mask: sitk.Image, seed_depth_mm: float, min_seed_fraction: float) -> sitk.Image:
    """Instances of a binary vertebra mask whose neighbours may touch (facet joints, bridging).

    Seeds are the regions deeper than ``seed_depth_mm`` inside the mask (vertebral bodies; posterior elements are
    thinner), at least ``min_seed_fraction`` of the largest seed's size. Each seed grows over the mask by a
    watershed on the inverted distance map; mask components without a seed stay instances of their own.
    """
    dist = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=True, squaredDistance=False, useImageSpacing=True)
    seeds = sitk.RelabelComponent(_components(dist >= seed_depth_mm))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(seeds)
    if not stats.GetLabels():
        return _components(mask)
    largest = max(stats.GetNumberOfPixels(k) for k in stats.GetLabels())
    keep = [k for k in stats.GetLabels() if stats.GetNumberOfPixels(k) >= min_seed_fraction * largest]
    seed_array = sitk.GetArrayFromImage(seeds)
    seed_array[~np.isin(seed_array, keep)] = 0
    markers = io.copy_geometry(seed_array.astype(np.uint32), mask)
    flooded = sitk.MorphologicalWatershedFromMarkers(-dist, markers, markWatershedLine=False, fullyConnected=True)
    labels = sitk.GetArrayFromImage(flooded).astype(np.uint32)
    mask_array = sitk.GetArrayViewFromImage(mask) > 0
    labels[~mask_array] = 0
    # a mask component with no seed (a fragment) would have been flooded from a neighbour across the background
    comps = sitk.GetArrayFromImage(_components(mask))
    seeded = np.unique(comps[seed_array > 0])
    orphan = mask_array & ~np.isin(comps, seeded)
    if orphan.any():
        labels[orphan] = comps[orphan].astype(np.uint32) + labels.max()
    return io.copy_geometry(labels, mask)


def name_vertebrae(
    labels: sitk.Image,
    *,
    vertebra_value: int = 1,
    lowest: str = "L5",
    min_volume_ml: float = 0.5,
    split_touching: bool = True,
    seed_depth_mm: float = 5.0,
    min_seed_fraction: float = 0.1,
    instance_map: bool = True,
) -> tuple[list[dict], sitk.Image | None]:
    """Name the vertebrae of a label map by their order along the cranio-caudal axis.

    The vertebra label's connected components (touching neighbours split, see ``split_touching``) are ordered by
    the physical S coordinate of their centroid; the lowest is ``lowest`` and each one above takes the next level
    up (L5, L4, ... L1, T12, ...). Components below ``min_volume_ml`` are listed but not named.

    Args:
        labels: label map (e.g. the task's output: 1 vertebra, 2 disc).
        vertebra_value: the vertebra label value.
        lowest: the level of the lowest vertebra (``"L5"``; e.g. ``"S1"`` when the sacrum is segmented,
            ``"L4"`` for a field of view that stops above L5).
        min_volume_ml: smaller components are fragments, not vertebrae.
        split_touching: separate vertebrae that touch (posterior elements often do) by seeded watershed;
            False: plain connected components.
        seed_depth_mm: depth inside the mask that only vertebral bodies reach (seeds).
        min_seed_fraction: seeds smaller than this fraction of the largest are ignored.
        instance_map: also return an instance label map (VerSe values: L1 = 20 ... L5 = 24, S1 = 26).

    Returns:
        (table, instances). Table rows from caudal to cranial: ``level`` (None for fragments and for vertebrae
        above C1), ``value`` (VerSe value or 0), ``voxels``, ``volume_ml``, ``centroid_lps`` (mm),
        ``superior_mm`` (the centroid's S coordinate). ``instances`` is None unless ``instance_map``.

    Raises:
        ValueError: unknown ``lowest`` level, non-positive sizes.
    """
    if lowest not in LEVELS:
        raise ValueError(f"unknown vertebral level '{lowest}' (use one of {', '.join(LEVELS)})")
    if seed_depth_mm <= 0 or min_volume_ml < 0 or not 0 < min_seed_fraction <= 1:
        raise ValueError("seed_depth_mm must be positive, min_volume_ml non-negative, min_seed_fraction in (0, 1]")
    mask = sitk.Cast(sitk.Equal(labels, float(vertebra_value)), sitk.sitkUInt8)
    parts = _split_touching(mask, seed_depth_mm, min_seed_fraction) if split_touching else _components(mask)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(parts)
    rows = []
    for k in stats.GetLabels():
        centroid = np.asarray(stats.GetCentroid(k), float)
        rows.append({"component": int(k), "voxels": int(stats.GetNumberOfPixels(k)),
                     "volume_ml": stats.GetPhysicalSize(k) / 1000.0, "centroid_lps": [float(c) for c in centroid],
                     "superior_mm": float(centroid[2])})
    rows.sort(key=lambda r: r["superior_mm"])
    position = LEVELS.index(lowest)
    mapping = np.zeros(max((r["component"] for r in rows), default=0) + 1, np.uint16)
    for row in rows:
        level = None
        if row["volume_ml"] >= min_volume_ml:
            level = LEVELS[position] if position >= 0 else None
            position -= 1
        row["level"] = level
        row["value"] = VERSE_VALUES[level] if level else 0
        mapping[row["component"]] = row["value"]
    table = [{k: r[k] for k in ("level", "value", "voxels", "volume_ml", "centroid_lps", "superior_mm")}
             for r in rows]
    if not instance_map:
        return table, None
    return table, io.copy_geometry(mapping[sitk.GetArrayViewFromImage(parts)], labels)
