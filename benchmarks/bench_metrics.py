"""Time ``evaluate_images`` against MONAI's metric functions on a 512x512x200 label map (not run by pytest).

Two synthetic cases, anisotropic 0.5 x 0.5 x 1.0 mm: 45 small ellipsoids (brain-like) and 7 large ones
(heart-like). The prediction is the reference shifted by one voxel with boundary noise. MONAI gets each label as
a one-hot (1, 1, Z, Y, X) pair, the way one would call it per label without running out of memory; its functions
crop to the masks' bounding box themselves. MONAI is also timed on the bounding-box crops multimodalseg uses.

Usage: python benchmarks/bench_metrics.py [--monai-labels N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import SimpleITK as sitk
from multimodalseg.metrics import evaluate_images
from scipy import ndimage as ndi

SHAPE = (200, 512, 512)
SPACING_XYZ = (0.5, 0.5, 1.0)


def make_case(n_labels: int, radius_mm: tuple[float, float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = np.zeros(SHAPE, np.uint16)
    spacing_zyx = np.asarray(SPACING_XYZ[::-1])
    for value in range(1, n_labels + 1):
        radii = rng.uniform(*radius_mm, size=3) / spacing_zyx
        centre = [rng.uniform(r + 2, s - r - 2) for r, s in zip(radii, SHAPE)]
        box = tuple(slice(int(c - r - 1), int(c + r + 2)) for c, r in zip(centre, radii))
        grid = np.ogrid[box]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
        ref[box][inside] = value
    pred = np.roll(ref, 1, axis=2)
    edges = ndi.morphological_gradient(pred, size=3) > 0
    flip = edges & (rng.random(SHAPE) < 0.3)
    pred[flip] = 0
    return pred, ref


def to_image(arr: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(SPACING_XYZ)
    return image


def time_monai(pred: np.ndarray, ref: np.ndarray, labels: list[int], crop: bool = False) -> float:
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_confusion_matrix_metric,
        compute_dice,
        compute_hausdorff_distance,
        compute_iou,
        get_confusion_matrix,
    )

    spacing = SPACING_XYZ[::-1]
    boxes = (ndi.find_objects(pred), ndi.find_objects(ref))
    start = time.perf_counter()
    for v in labels:
        box = (slice(None),) * 3
        if crop:  # the bounding box of both masks, as multimodalseg uses
            found = [b[v - 1] for b in boxes if b[v - 1] is not None]
            box = tuple(slice(min(b[a].start for b in found), max(b[a].stop for b in found)) for a in range(3))
        p = torch.from_numpy(pred[box] == v)[None, None].float()
        r = torch.from_numpy(ref[box] == v)[None, None].float()
        compute_dice(p, r, include_background=True)
        compute_iou(p, r, include_background=True)
        cm = get_confusion_matrix(p, r, include_background=True)
        compute_confusion_matrix_metric("sensitivity", cm)
        compute_confusion_matrix_metric("precision", cm)
        compute_hausdorff_distance(p, r, include_background=True, spacing=spacing)
        compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=spacing)
        compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=spacing)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--monai-labels", type=int, default=5, help="labels MONAI times (extrapolated to all)")
    args = parser.parse_args()
    for name, n, radius in (("45 small (brain-like)", 45, (5.0, 20.0)), ("7 large (heart-like)", 7, (30.0, 60.0))):
        pred, ref = make_case(n, radius, seed=0)
        pred_img, ref_img = to_image(pred), to_image(ref)
        start = time.perf_counter()
        result = evaluate_images(pred_img, ref_img)
        ours = time.perf_counter() - start
        labels = [int(k) for k in result["labels"]]
        k = min(args.monai_labels, len(labels))
        monai_s = time_monai(pred, ref, labels[:k])
        monai_crop_s = time_monai(pred, ref, labels, crop=True)
        print(f"{name}: multimodalseg {ours:.2f} s for {len(labels)} labels "
              f"(mean Dice {result['mean']['dice']:.4f}, HD95 {result['mean']['hd95']:.2f} mm); "
              f"MONAI on whole-volume masks {monai_s:.2f} s for {k} labels -> {monai_s * len(labels) / k:.1f} s "
              f"for all; MONAI on the same bounding-box crops {monai_crop_s:.2f} s")


if __name__ == "__main__":
    main()
