"""Solid shapes in anatomy coordinates (mm) and a painter that rasterises them onto any voxel grid.

A scene is an ordered list of :class:`Paint` operations; later ones overwrite earlier ones (the painter's
algorithm), optionally only over voxels holding given tissue codes. Each shape knows its bounding box, so it
is evaluated only on the voxels it can touch: a scene of a hundred shapes costs little more than its few big
ones. Coordinates are float32 arrays shaped like the (z, y, x) block being painted.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Shape(Protocol):
    convex: bool  # a convex shape holds a whole box when it holds the box's 8 corners

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned (min, max) corners in anatomy mm."""

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Boolean mask of the points inside."""


def _local(x, y, z, centre, rot):
    """Coordinates in a shape's own frame: ``rot.T @ (p - centre)`` (rot's columns are the local axes)."""
    dx, dy, dz = x - np.float32(centre[0]), y - np.float32(centre[1]), z - np.float32(centre[2])
    if rot is None:
        return dx, dy, dz
    r = np.asarray(rot, np.float32)
    return (r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
            r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
            r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz)


def _box_bounds(centre, half, rot):
    h = np.asarray(half, float)
    ext = h if rot is None else np.abs(np.asarray(rot, float)) @ h
    c = np.asarray(centre, float)
    return c - ext, c + ext


@dataclass(frozen=True)
class Wobble:
    """Smooth radial modulation ``1 + sum_k a_k cos(f_k (u . v_k) + phi_k)`` of a unit direction ``u``:
    irregular tumours, gyral folding, individual shapes."""

    amps: np.ndarray
    freqs: np.ndarray
    dirs: np.ndarray
    phases: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, n: int = 5, amplitude: float = 0.1,
               freq: tuple[float, float] = (2.0, 5.0)) -> Wobble:
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        return cls(rng.uniform(0.3, 1.0, n) * amplitude / np.sqrt(n), rng.uniform(*freq, n), dirs,
                   rng.uniform(0, 2 * np.pi, n))

    @property
    def max(self) -> float:
        return float(np.abs(self.amps).sum())

    def __call__(self, ux, uy, uz):
        m = np.ones_like(ux)
        for a, f, v, ph in zip(self.amps, self.freqs, self.dirs, self.phases):
            m += np.float32(a) * np.cos(np.float32(f) * (np.float32(v[0]) * ux + np.float32(v[1]) * uy
                                                         + np.float32(v[2]) * uz) + np.float32(ph))
        return m


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid with semi-axes ``radii`` (mm) along the columns of ``rot`` (identity: x, y, z), optionally
    with a radial :class:`Wobble`."""

    centre: Sequence[float]
    radii: Sequence[float]
    rot: np.ndarray | None = None
    wobble: Wobble | None = None

    @property
    def convex(self) -> bool:
        return self.wobble is None

    @property
    def core(self) -> Ellipsoid:
        """A convex shape inside this one (the ellipsoid shrunk by the wobble's largest dent)."""
        if self.wobble is None:
            return self
        return Ellipsoid(self.centre, np.asarray(self.radii, float) * max(1.0 - self.wobble.max, 0.0), self.rot)

    def bounds(self):
        grow = 1.0 + (self.wobble.max if self.wobble else 0.0)
        return _box_bounds(self.centre, np.asarray(self.radii, float) * grow, self.rot)

    def inside(self, x, y, z):
        lx, ly, lz = _local(x, y, z, self.centre, self.rot)
        rx, ry, rz = (np.float32(r) for r in self.radii)
        ux, uy, uz = lx / rx, ly / ry, lz / rz
        q2 = ux * ux + uy * uy + uz * uz
        if self.wobble is None:
            return q2 <= 1.0
        lo, hi = 1.0 - self.wobble.max, 1.0 + self.wobble.max
        mask = q2 <= lo * lo
        band = (q2 > lo * lo) & (q2 <= hi * hi)  # only here does the modulation decide
        if band.any():
            q = np.sqrt(q2[band])
            mask[band] = q <= self.wobble(ux[band] / q, uy[band] / q, uz[band] / q)
        return mask


@dataclass(frozen=True)
class Capsule:
    """All points within ``radius`` mm of the segment ``p0``-``p1`` (a tube piece with round ends)."""

    p0: Sequence[float]
    p1: Sequence[float]
    radius: float
    convex = True

    def bounds(self):
        pts = np.stack([self.p0, self.p1]).astype(float)
        return pts.min(0) - self.radius, pts.max(0) + self.radius

    def inside(self, x, y, z):
        p0 = np.asarray(self.p0, np.float32)
        d = np.asarray(self.p1, np.float32) - p0
        dx, dy, dz = x - p0[0], y - p0[1], z - p0[2]
        t = np.clip((dx * d[0] + dy * d[1] + dz * d[2]) / max(float(d @ d), 1e-9), 0, 1)
        ex, ey, ez = dx - t * d[0], dy - t * d[1], dz - t * d[2]
        return ex * ex + ey * ey + ez * ez <= np.float32(self.radius) ** 2


@dataclass(frozen=True)
class Box:
    """Rectangular box with half sizes ``half`` (mm) along the columns of ``rot``."""

    centre: Sequence[float]
    half: Sequence[float]
    rot: np.ndarray | None = None
    convex = True

    def bounds(self):
        return _box_bounds(self.centre, self.half, self.rot)

    def inside(self, x, y, z):
        lx, ly, lz = _local(x, y, z, self.centre, self.rot)
        hx, hy, hz = (np.float32(h) for h in self.half)
        return (np.abs(lx) <= hx) & (np.abs(ly) <= hy) & (np.abs(lz) <= hz)


@dataclass(frozen=True)
class Cylinder:
    """Elliptic cylinder: semi-axes ``radii`` (x, y) and half height ``half_height`` along its local z."""

    centre: Sequence[float]
    radii: Sequence[float]
    half_height: float
    rot: np.ndarray | None = None
    convex = True

    def bounds(self):
        return _box_bounds(self.centre, (self.radii[0], self.radii[1], self.half_height), self.rot)

    def inside(self, x, y, z):
        lx, ly, lz = _local(x, y, z, self.centre, self.rot)
        rx, ry = np.float32(self.radii[0]), np.float32(self.radii[1])
        return ((lx / rx) ** 2 + (ly / ry) ** 2 <= 1.0) & (np.abs(lz) <= np.float32(self.half_height))


@dataclass(frozen=True)
class Clipped:
    """``shape`` restricted to the half-spaces ``normal . (p - point) <= 0``, one per (point, normal) pair."""

    shape: Shape
    planes: tuple[tuple[Sequence[float], Sequence[float]], ...]

    @property
    def convex(self) -> bool:
        return self.shape.convex  # an intersection with half-spaces stays convex

    @property
    def core(self) -> Clipped | None:
        inner = getattr(self.shape, "core", self.shape if self.shape.convex else None)
        return None if inner is None else Clipped(inner, self.planes)

    def bounds(self):
        lo, hi = (np.array(v, float) for v in self.shape.bounds())
        for point, normal in self.planes:  # an axis-aligned plane also trims the box (halves for hemispheres)
            n = np.asarray(normal, float)
            axes = np.flatnonzero(n)
            if len(axes) == 1:
                k = axes[0]
                if n[k] > 0:
                    hi[k] = min(hi[k], point[k])
                else:
                    lo[k] = max(lo[k], point[k])
        return lo, np.maximum(hi, lo)

    def inside(self, x, y, z):
        mask = self.shape.inside(x, y, z)
        for point, normal in self.planes:
            n = np.asarray(normal, np.float32)
            p = np.asarray(point, np.float32)
            mask &= n[0] * (x - p[0]) + n[1] * (y - p[1]) + n[2] * (z - p[2]) <= 0
        return mask


@dataclass(frozen=True)
class Difference:
    """Points inside ``shape`` and outside ``minus``."""

    shape: Shape
    minus: Shape
    convex = False

    def bounds(self):
        return self.shape.bounds()

    def inside(self, x, y, z):
        return self.shape.inside(x, y, z) & ~self.minus.inside(x, y, z)


def tube(points: Sequence[Sequence[float]], radius: float | Sequence[float]) -> list[Capsule]:
    """A tube along a polyline as capsules (one per segment; ``radius`` per segment or one for all)."""
    radii = [radius] * (len(points) - 1) if np.isscalar(radius) else list(radius)
    return [Capsule(tuple(points[i]), tuple(points[i + 1]), float(radii[i])) for i in range(len(points) - 1)]


@dataclass(frozen=True)
class Paint:
    """Set voxels inside ``shape`` to tissue ``code``; with ``within``, only voxels now holding one of those codes."""

    shape: Shape
    code: int
    within: tuple[int, ...] | None = None


@dataclass
class Scene:
    """A task's anatomy for one seed: paint operations plus named landmarks, all in anatomy mm.

    Args:
        ops: paint operations, in order.
        landmarks: (N, 3) anatomy points, row i the same anatomical point in every role.
        landmark_names: N names.
        info: facts about this anatomy (e.g. tumour radii) for the case's ``info``.
    """

    ops: list[Paint] = field(default_factory=list)
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    landmark_names: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def add(self, shape: Shape | Sequence[Shape], code: int, within: Sequence[int] | None = None) -> None:
        for s in ([shape] if not isinstance(shape, (list, tuple)) else shape):
            self.ops.append(Paint(s, int(code), None if within is None else tuple(int(w) for w in within)))


TILE = 32  # voxels per tile side: a tile inside a convex shape is filled without evaluating its voxels


def rasterise(ops: Sequence[Paint], shape_zyx: tuple[int, int, int], a_mat: np.ndarray, b_vec: np.ndarray,
              ) -> np.ndarray:
    """Paint ``ops`` onto a (z, y, x) uint16 code array whose voxel index (x, y, z) maps to anatomy
    ``a_mat @ index + b_vec``. Voxel centres are sampled (partial volume comes later, in the contrast).

    Work is done in tiles of the shape's index box: tiles whose anatomy box misses the shape's bounds are
    skipped, and tiles whose 8 corners lie inside a convex shape are filled at once, so big shapes (a body
    outline, a lung) cost little more than their surface.
    """
    codes = np.zeros(shape_zyx, np.uint16)
    size = np.asarray(shape_zyx[::-1])
    inv = np.linalg.inv(a_mat)
    for op in ops:
        lo, hi = (np.asarray(v, float) for v in op.shape.bounds())
        idx = (_corners(lo, hi) - b_vec) @ inv.T
        i0 = np.clip(np.floor(idx.min(0)).astype(int) - 1, 0, size)
        i1 = np.clip(np.ceil(idx.max(0)).astype(int) + 2, 0, size)
        if np.any(i1 <= i0):
            continue
        for t0 in itertools.product(*(range(i0[k], i1[k], TILE) for k in range(3))):
            t0 = np.asarray(t0)
            _paint_tile(codes, op, t0, np.minimum(t0 + TILE, i1), a_mat, b_vec, lo, hi)
    return codes


def _corners(lo, hi) -> np.ndarray:
    return np.array(list(itertools.product(*zip(lo, hi))), float)


def _paint_tile(codes, op: Paint, t0, t1, a_mat, b_vec, lo, hi) -> None:
    region = codes[t0[2]:t1[2], t0[1]:t1[1], t0[0]:t1[0]]
    corners = _corners(t0, t1 - 1) @ a_mat.T + b_vec  # tile corner voxels in anatomy mm
    if np.any(corners.max(0) < lo) or np.any(corners.min(0) > hi):
        return
    c32 = corners.astype(np.float32)
    core = getattr(op.shape, "core", op.shape if op.shape.convex else None)
    if core is not None and core.inside(c32[:, 0], c32[:, 1], c32[:, 2]).all():
        mask = np.ones(region.shape, bool)
    else:
        a32, b32 = a_mat.astype(np.float32), b_vec.astype(np.float32)
        ix = np.arange(t0[0], t1[0], dtype=np.float32)[None, None, :]
        iy = np.arange(t0[1], t1[1], dtype=np.float32)[None, :, None]
        iz = np.arange(t0[2], t1[2], dtype=np.float32)[:, None, None]
        x, y, z = (a32[k, 0] * ix + a32[k, 1] * iy + a32[k, 2] * iz + b32[k] for k in range(3))
        mask = op.shape.inside(x, y, z)
    if op.within is not None:
        allowed = np.zeros(max(max(op.within), int(region.max(initial=0))) + 1, bool)
        allowed[list(op.within)] = True
        mask &= allowed[region]
    region[mask] = op.code
