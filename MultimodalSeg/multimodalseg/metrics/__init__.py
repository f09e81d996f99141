"""Spacing-aware segmentation metrics: Dice, Jaccard, sensitivity, precision, HD, HD95 and ASSD in mm.

Definitions (P = predicted mask, R = reference mask, TP = |P and R|):
    Dice = 2 TP / (|P| + |R|); Jaccard = TP / |P or R|; sensitivity = TP / |R|; precision = TP / |P|.
    Surfaces are the voxels with a background face-neighbour; a directed distance is the Euclidean distance (mm,
    using the voxel spacing, anisotropic allowed) from each surface voxel of one mask to the nearest surface voxel
    of the other. HD is the largest distance either way; HD95 is the larger of the two directed 95th percentiles;
    ASSD is the mean of all distances of both directions pooled. These are MONAI's ``compute_hausdorff_distance``
    (``percentile=None`` / ``95``) and ``compute_average_surface_distance(symmetric=True)``, checked in the tests.

Empty masks (per label):
    - both empty (the structure is absent and none was predicted): Dice, Jaccard, sensitivity and precision 1,
      HD, HD95 and ASSD 0, as the BraTS challenges score it. These labels are listed under ``empty.both`` and left
      out of the means over labels (they say nothing about the segmentation, as in nnU-Net and MONAI's default).
    - one empty: Dice and Jaccard 0; the distances are undefined: NaN in Python, ``null`` in JSON, left out of the
      distance means. Sensitivity is 0 when only the prediction is empty, and undefined (NaN) when only the
      reference is empty; precision is 0 when only the reference is empty, and NaN when only the prediction is.
    - ``mean_count`` says how many labels each mean averages, so excluded labels are visible.
    MONAI instead returns NaN Dice for an empty reference (``ignore_empty=True``), NaN distances when both are
    empty and infinite ones when one is; nnU-Net gives NaN Dice when both are empty.

Example:
    >>> import numpy as np
    >>> a = np.zeros((8, 8, 8), bool); a[2:6, 2:6, 2:6] = True
    >>> b = np.roll(a, 1, axis=0)
    >>> m = segmentation_metrics(a, b, spacing=(2.0, 1.0, 1.0))
    >>> round(m["dice"], 3), m["hd"]
    (0.75, 2.0)
"""

from __future__ import annotations

from multimodalseg.metrics.binary import (
    BOTH_EMPTY,
    DISTANCE_KEYS,
    METRIC_KEYS,
    bounding_box,
    segmentation_metrics,
    surface,
    surface_distances,
)
from multimodalseg.metrics.evaluate import (
    check_same_grid,
    evaluate_files,
    evaluate_images,
    json_ready,
    mean_over_labels,
)

__all__ = [
    "BOTH_EMPTY",
    "DISTANCE_KEYS",
    "METRIC_KEYS",
    "bounding_box",
    "check_same_grid",
    "evaluate_files",
    "evaluate_images",
    "json_ready",
    "mean_over_labels",
    "segmentation_metrics",
    "surface",
    "surface_distances",
]
