"""Key boundary points for the boundary shape correction (BSC) loss (METHODS §B.5).

The paper outlines the idea only (boundary of each region, an iterative choice of the key point set that best
recovers the tumour shape with t = 100 iterations, a key-point image with radius R = 2/1/1 for WT/TC/ET). The
algorithm here is the reconstruction of METHODS §B.5 [recon]:

1. boundary B = G minus erode(G) (6-connectivity, one voxel);
2. t runs of farthest-point sampling (FPS) of K = max(min_points, ceil(ratio·|B|)) points on B, each from a
   different random start; a set's score is its covering radius max_b min_s |b - s| (``"coverage"``) or its
   Chamfer distance to B (``"chamfer"``, = mean_b min_s |b - s| since S ⊂ B); the best-scoring set is kept;
3. the key-point image is the union of balls of radius R voxels around the kept points.

Labels are static, so this runs once per training case (e.g. as a cached MONAI transform before random crops,
which then crop the key-point channels together with the label).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from monai.transforms import MapTransform
from scipy import ndimage

if TYPE_CHECKING:
    from multimodalseg.tasks.spec import TaskSpec

    from training.core.config import TrainingConfig

Score = Literal["coverage", "chamfer"]

# Radii per region in BraTS' WT, TC, ET order (paper: R = 2, 1, 1).
BRATS_RADII = (2, 1, 1)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Inner boundary of a binary mask: voxels of the mask with a 6-neighbour outside it (image edges count)."""
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def select_key_points(
    points: np.ndarray,
    *,
    iterations: int = 100,
    ratio: float = 0.015,
    min_points: int = 8,
    score: Score = "coverage",
    rng: np.random.Generator | None = None,
    chunk: int = 16,
) -> np.ndarray:
    """The best of ``iterations`` farthest-point samplings of ``points`` (N, D) in voxel coordinates.

    Returns the selected rows (K, D), K = min(N, max(min_points, ceil(ratio·N))). Runs ``chunk`` samplings at a
    time (memory ~ chunk·N floats).
    """
    if score not in ("coverage", "chamfer"):
        raise ValueError(f"score must be 'coverage' or 'chamfer', got {score!r}")
    if iterations < 1 or not 0 < ratio <= 1 or min_points < 1:
        raise ValueError(f"need iterations >= 1, 0 < ratio <= 1, min_points >= 1 (got {iterations}, {ratio}, "
                         f"{min_points})")
    points = np.asarray(points, dtype=np.float32)
    n = len(points)
    if n == 0:
        return points
    k = min(n, max(min_points, math.ceil(ratio * n)))
    if k == n:
        return points
    rng = rng if rng is not None else np.random.default_rng(0)
    # After the first point FPS is deterministic, so distinct starts are the only source of variety.
    starts = rng.choice(n, size=min(iterations, n), replace=False)
    best, best_score = None, math.inf
    for lo in range(0, len(starts), chunk):
        current = starts[lo:lo + chunk]
        chosen = np.empty((len(current), k), dtype=np.int64)
        min_d2 = np.full((len(current), n), np.inf, dtype=np.float32)
        for j in range(k):
            chosen[:, j] = current
            d2 = ((points[None, :, :] - points[current][:, None, :]) ** 2).sum(-1)
            np.minimum(min_d2, d2, out=min_d2)
            current = min_d2.argmax(axis=1)
        scores = min_d2.max(axis=1) if score == "coverage" else np.sqrt(min_d2).mean(axis=1)
        i = int(scores.argmin())
        if scores[i] < best_score:
            best, best_score = chosen[i], float(scores[i])
    return points[best]


def ball_offsets(radius: int, ndim: int = 3) -> np.ndarray:
    """Integer offsets (M, ndim) of a digital ball of ``radius`` voxels (Euclidean)."""
    r = int(radius)
    grid = np.stack(np.meshgrid(*([np.arange(-r, r + 1)] * ndim), indexing="ij"), -1).reshape(-1, ndim)
    return grid[(grid**2).sum(1) <= r * r]


def key_point_mask(
    mask: np.ndarray,
    radius: int,
    *,
    iterations: int = 100,
    ratio: float = 0.015,
    min_points: int = 8,
    score: Score = "coverage",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Key-point image of one region: union of balls of ``radius`` voxels around its key boundary points (bool)."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    pts = np.argwhere(boundary(mask))
    if len(pts) == 0:
        return out
    keys = select_key_points(pts, iterations=iterations, ratio=ratio, min_points=min_points, score=score, rng=rng)
    voxels = (keys.astype(np.int64)[:, None, :] + ball_offsets(radius, mask.ndim)[None]).reshape(-1, mask.ndim)
    inside = np.all((voxels >= 0) & (voxels < np.array(mask.shape)), axis=1)
    out[tuple(voxels[inside].T)] = True
    return out


def key_point_image(
    regions: np.ndarray,
    radii: Sequence[int] = BRATS_RADII,
    *,
    iterations: int = 100,
    ratio: float = 0.015,
    min_points: int = 8,
    score: Score = "coverage",
    seed: int = 0,
) -> np.ndarray:
    """Key-point images (R, *S) float32 in {0, 1} for region masks ``regions`` (R, *S), one radius per region."""
    regions = np.asarray(regions)
    if regions.ndim < 2 or len(radii) != regions.shape[0]:
        raise ValueError(f"need one radius per region channel: {len(radii)} radii for shape {regions.shape}")
    rng = np.random.default_rng(seed)
    return np.stack([
        key_point_mask(regions[r] > 0, radii[r], iterations=iterations, ratio=ratio, min_points=min_points,
                       score=score, rng=rng)
        for r in range(regions.shape[0])
    ]).astype(np.float32)


class BoundaryKeyPointsd(MapTransform):
    """MONAI dictionary transform adding the BSC key-point image of a region label.

    Deterministic (fixed ``seed``), so ``CacheDataset`` computes it once per case; put it before the random crops
    so that they crop ``output_key`` together with the label.

    Args:
        keys: the region label key, an array (R, *S) of region masks (e.g. WT, TC, ET channels).
        output_key: where to store the key-point image (R, *S) float32. Default ``"keypoints"``.
        radii: ball radius per region in voxels. Default (2, 1, 1) for WT, TC, ET.
        iterations, ratio, min_points, score, seed: see :func:`key_point_image`.
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        output_key: str = "keypoints",
        radii: Sequence[int] = BRATS_RADII,
        *,
        iterations: int = 100,
        ratio: float = 0.015,
        min_points: int = 8,
        score: Score = "coverage",
        seed: int = 0,
    ) -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError("BoundaryKeyPointsd takes exactly one label key")
        self.output_key = output_key
        self.options = {"iterations": iterations, "ratio": ratio, "min_points": min_points, "score": score,
                        "seed": seed}
        self.radii = tuple(radii)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        label = d[self.keys[0]]
        array = label.detach().cpu().numpy() if hasattr(label, "detach") else np.asarray(label)
        image = key_point_image(array, self.radii, **self.options)
        if hasattr(label, "detach"):
            import torch

            image = torch.as_tensor(image)
            if hasattr(label, "copy_meta_from"):  # keep a MetaTensor's affine so spatial transforms treat it alike
                from monai.data import MetaTensor

                image = MetaTensor(image, meta=label.meta)
        d[self.output_key] = image
        return d


class RegionMasksd(MapTransform):
    """Training indices ``label`` (1, *S) -> region masks (R, *S) uint8 under ``output_key`` (``task.regions``)."""

    def __init__(self, keys: str, task_id: str, output_key: str) -> None:
        super().__init__(keys)
        self.task_id, self.output_key = task_id, output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        from multimodalseg.inference.postprocess import labels_to_regions
        from multimodalseg.tasks import get_task

        d = dict(data)
        label = d[self.keys[0]]
        array = label.detach().cpu().numpy() if hasattr(label, "detach") else np.asarray(label)
        d[self.output_key] = labels_to_regions(array[0], get_task(self.task_id)).astype(np.uint8)
        return d


KEY_POINT_OPTIONS = ("radii", "iterations", "ratio", "min_points", "score", "seed")


def bsc_target_transforms(config: TrainingConfig, task: TaskSpec) -> tuple[list, list[str]]:
    """Per-case steps for the BraTS loss with BSC (``training.core.losses.loss_factory`` hook): the key-point images.

    Reads ``loss.config.use_bsc`` (default true) and ``loss.config.key_points`` (:data:`KEY_POINT_OPTIONS`;
    ``radii`` one per region, default 2/1/1 voxels for WT/TC/ET). Computed once per case on the whole prepared
    label (cached), then cropped and flipped with it; the trainer's target becomes (2R, *S) = regions, key points.

    Raises:
        UserError: unknown ``key_points`` options or a radius count that differs from the task's regions.
    """
    from monai.transforms import DeleteItemsd
    from multimodalseg.errors import UserError

    options = dict(config.loss.config.get("key_points") or {})
    if not config.loss.config.get("use_bsc", True):
        return [], []
    unknown = sorted(set(options) - set(KEY_POINT_OPTIONS))
    if unknown:
        raise UserError(f"unknown config key 'loss.config.key_points.{unknown[0]}' (known: "
                        f"{', '.join(KEY_POINT_OPTIONS)})")
    radii = options.pop("radii", BRATS_RADII)
    if task.output_kind != "regions" or len(radii) != len(task.regions):
        raise UserError(f"loss.config.key_points.radii needs one radius per region of task {task.id} "
                        f"({len(task.regions)}), got {list(radii)}")
    try:
        keypoints = BoundaryKeyPointsd("bsc_regions", "keypoints", radii, **options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"loss.config.key_points: {exc}") from None
    steps = [RegionMasksd("label", task.id, "bsc_regions"), keypoints, DeleteItemsd(keys="bsc_regions")]
    return steps, ["keypoints"]
