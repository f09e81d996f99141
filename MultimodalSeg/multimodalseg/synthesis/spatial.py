"""Random spatial transforms of a label map, SynthSeg-style, in plain torch.

One draw is an affine (scale, rotation, shear, optional left-right mirror about the anatomy's mid-sagittal
plane) plus a smooth non-linear deformation: a Gaussian random velocity field on a coarse control grid,
upsampled and integrated by scaling and squaring (a diffeomorphism). The transform maps points of the
*output* frame (LPS mm) to points of the source map, so any grid (the reference role's, a PET grid, a
misregistered MR grid) samples the same deformed anatomy: ``x_src = c + L (x - c - shift) + u(x)``.

Working in LPS physical coordinates makes the mirror the patient's left-right axis whatever the map's
direction matrix; mirrored label maps then get their paired left/right labels swapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from multimodalseg.phantoms.geometry import Grid, rotation


@dataclass(frozen=True)
class SpatialRanges:
    """SynthSeg's defaults: scale 0.8-1.2, rotation +-15 degrees, shear +-0.012, velocity sd up to ``max_sigma_mm``
    on a control grid of ``control_mm`` spacing; mirror with probability ``flip``."""

    scale: tuple[float, float] = (0.8, 1.2)
    degrees: float = 15.0
    shear: float = 0.012
    shift_mm: float = 5.0
    flip: float = 0.5
    max_sigma_mm: float = 4.0
    control_mm: float = 24.0
    field_mm: float = 4.0
    steps: int = 6


class SpatialTransform:
    """A drawn transform; :meth:`sample` reads a label map through it on any grid.

    Args:
        rng: numpy generator (every draw is made whatever the ranges, so seeds stay aligned).
        centre: the anatomy's centre (LPS mm), the fixed point of the affine and the mirror plane's x.
        extent_mm: (x, y, z) size of the region the deformation must cover.
        ranges: :class:`SpatialRanges`.
    """

    def __init__(self, rng: np.random.Generator, centre: np.ndarray, extent_mm: np.ndarray,
                 ranges: SpatialRanges | None = None) -> None:
        r = ranges or SpatialRanges()
        self.centre = np.asarray(centre, float)
        scale = rng.uniform(*r.scale, 3)
        degrees = rng.uniform(-r.degrees, r.degrees, 3)
        shear = rng.uniform(-r.shear, r.shear, 6)
        shift = rng.uniform(-r.shift_mm, r.shift_mm, 3)
        self.flipped = bool(rng.random() < r.flip)
        sigma = float(rng.uniform(0.0, r.max_sigma_mm))
        sh = np.eye(3)
        sh[0, 1], sh[0, 2], sh[1, 0], sh[1, 2], sh[2, 0], sh[2, 1] = shear
        mirror = np.diag([-1.0, 1.0, 1.0]) if self.flipped else np.eye(3)
        # Output -> source: the inverse of "scale, shear, rotate", so a scale > 1 enlarges the anatomy.
        self.linear = mirror @ np.linalg.inv(rotation(degrees) @ sh @ np.diag(scale))
        self.shift = shift
        self.info = {"scale": scale.round(4).tolist(), "degrees": degrees.round(3).tolist(),
                     "flipped": self.flipped, "velocity_sd_mm": round(sigma, 3)}

        extent = np.asarray(extent_mm, float) * 1.4 + 40.0  # room for moving grids and misregistration
        self.lo, self.hi = self.centre - extent / 2, self.centre + extent / 2
        n_ctrl = np.maximum(np.round(extent / r.control_mm).astype(int), 3)
        velocity = rng.normal(0.0, 1.0, (3, *n_ctrl[::-1])) * sigma  # (3, z, y, x), mm
        n_field = np.maximum(np.round(extent / r.field_mm).astype(int), 4)
        self.field = self._integrate(velocity, tuple(int(v) for v in n_field[::-1]), r.steps) if sigma > 0 else None

    def _integrate(self, velocity: np.ndarray, shape: tuple[int, int, int], steps: int) -> torch.Tensor:
        """Scaling and squaring of the velocity field, in normalised box units; returns (1, 3, z, y, x)."""
        v = torch.from_numpy(velocity[None].astype(np.float32))
        v = F.interpolate(v, size=shape, mode="trilinear", align_corners=True)
        half = torch.from_numpy(((self.hi - self.lo) / 2).astype(np.float32)).view(1, 3, 1, 1, 1)
        u = v / half / (2 ** steps)  # channels (x, y, z) in grid_sample's normalised units
        base = _identity_grid(shape)
        for _ in range(steps):
            warped = F.grid_sample(u, base + u.permute(0, 2, 3, 4, 1), mode="bilinear", padding_mode="border",
                                   align_corners=True)
            u = u + warped
        return u * half  # mm

    def displacement(self, points: torch.Tensor) -> torch.Tensor:
        """u(x) in mm at (N, 3) output-frame points."""
        if self.field is None:
            return torch.zeros_like(points)
        lo = torch.from_numpy(self.lo.astype(np.float32))
        hi = torch.from_numpy(self.hi.astype(np.float32))
        g = (2 * (points - lo) / (hi - lo) - 1).view(1, 1, 1, -1, 3)
        return F.grid_sample(self.field, g, mode="bilinear", padding_mode="border", align_corners=True)[0, :, 0, 0].T

    def to_source(self, points: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Output-frame points (N, 3) -> source-map points (N, 3), LPS mm."""
        p = torch.as_tensor(points, dtype=torch.float32)
        c = torch.from_numpy(self.centre.astype(np.float32))
        lin = torch.from_numpy(self.linear.astype(np.float32))
        s = torch.from_numpy(self.shift.astype(np.float32))
        return c + (p - c - s) @ lin.T + self.displacement(p)

    def sample(self, values: np.ndarray, source: Grid, grid: Grid, pre: tuple[np.ndarray, np.ndarray] | None = None,
               *, linear: bool = False) -> np.ndarray:
        """``values`` (on ``source``) seen through the transform on ``grid``: nearest neighbour (labels, 0 outside)
        or ``linear`` (intensities, edge values outside).

        Args:
            pre: (M, b) applied to ``grid``'s physical points first (a moving role's ``T^-1``), or None.
        """
        pts = grid_points(grid)
        if pre is not None:
            pts = pts @ pre[0].T.astype(np.float32) + pre[1].astype(np.float32)
        src = self.to_source(pts)
        if linear:
            return sample_linear(values, source, src).reshape(grid.shape)
        return sample_nearest(values, source, src).reshape(grid.shape)


def _identity_grid(shape: tuple[int, int, int]) -> torch.Tensor:
    axes = [torch.linspace(-1, 1, n) for n in shape]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    return torch.stack((x, y, z), -1)[None]


def grid_points(grid: Grid) -> np.ndarray:
    """Physical points (N, 3) of every voxel, in (z, y, x) C order."""
    z, y, x = (np.arange(n, dtype=np.float32) for n in grid.shape)
    idx = np.stack(np.meshgrid(x, y, z, indexing="xy"), -1)  # (y, x, z, 3): reorder to (z, y, x)
    idx = idx.transpose(2, 0, 1, 3).reshape(-1, 3)
    return idx @ grid.matrix.T.astype(np.float32) + np.asarray(grid.origin, np.float32)


def _normalised(source: Grid, shape, points: torch.Tensor) -> torch.Tensor:
    inv = np.linalg.inv(source.matrix).astype(np.float32)
    idx = (points - torch.from_numpy(np.asarray(source.origin, np.float32))) @ torch.from_numpy(inv).T
    size = torch.tensor(shape[::-1], dtype=torch.float32)
    return (2 * idx / (size - 1) - 1).view(1, 1, 1, -1, 3)


def sample_nearest(labels: np.ndarray, source: Grid, points: torch.Tensor) -> np.ndarray:
    """Nearest-neighbour values of ``labels`` at physical ``points`` (N, 3); 0 outside."""
    vol = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))[None, None]
    out = F.grid_sample(vol, _normalised(source, labels.shape, points), mode="nearest", padding_mode="zeros",
                        align_corners=True)
    return out.view(-1).round().to(torch.int64).numpy().astype(labels.dtype)


def sample_linear(image: np.ndarray, source: Grid, points: torch.Tensor) -> np.ndarray:
    """Trilinear values of a float ``image`` at physical ``points`` (N, 3); edge values outside."""
    vol = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    out = F.grid_sample(vol, _normalised(source, image.shape, points), mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out.view(-1).numpy()
