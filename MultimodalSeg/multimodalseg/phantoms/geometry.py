"""Phantom geometry: image grids, anatomy poses, oblique directions and known rigid misregistrations.

Three frames are involved. *Anatomy* coordinates (mm) are where a task's scene is drawn: x to the patient's
left, y posterior, z superior (LPS axes), origin at the organ's centre. The *reference* physical frame (LPS,
ITK) holds the anatomy after a pose ``p = centre + R @ a``. A *moving* role sees the same anatomy displaced by
a known rigid transform ``T`` (ITK resampling direction: reference point -> moving point), so its voxel at
moving point ``q`` shows the anatomy at ``pose^-1(T^-1(q))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Grid:
    """A voxel grid in LPS physical space.

    Args:
        shape: (z, y, x) voxels, numpy order.
        spacing: (x, y, z) mm, SimpleITK order.
        origin: (x, y, z) mm, the physical point of voxel (0, 0, 0).
        direction: 3x3 direction cosines (columns are the index axes in LPS).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # row-major 3x3, as SimpleITK stores it

    @classmethod
    def centred(
        cls, centre: np.ndarray, shape: tuple[int, int, int], spacing: tuple[float, float, float],
        direction: np.ndarray | None = None,
    ) -> Grid:
        """A grid whose middle voxel lies at ``centre``."""
        d = np.eye(3) if direction is None else np.asarray(direction, float)
        size_xyz = np.asarray(shape[::-1], float)
        origin = np.asarray(centre, float) - d @ (np.asarray(spacing, float) * (size_xyz - 1) / 2)
        return cls(tuple(int(s) for s in shape), tuple(float(s) for s in spacing),
                   tuple(float(o) for o in origin), tuple(float(v) for v in d.ravel()))

    @property
    def matrix(self) -> np.ndarray:
        """3x3 ``D @ diag(spacing)``: physical = origin + matrix @ index(x, y, z)."""
        return np.asarray(self.direction).reshape(3, 3) * np.asarray(self.spacing)[None, :]

    @property
    def centre(self) -> np.ndarray:
        return np.asarray(self.origin) + self.matrix @ ((np.asarray(self.shape[::-1], float) - 1) / 2)

    @property
    def fov(self) -> np.ndarray:
        """Extent (x, y, z) in mm along the grid's own axes."""
        return np.asarray(self.shape[::-1], float) * np.asarray(self.spacing)

    def image(self, array: np.ndarray) -> sitk.Image:
        """A SimpleITK image of a (z, y, x) array on this grid."""
        if tuple(array.shape) != tuple(self.shape):
            raise ValueError(f"array shape {array.shape} does not match grid shape {self.shape}")
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img


def rotation(angles_deg: np.ndarray) -> np.ndarray:
    """3x3 rotation ``Rz @ Ry @ Rx`` from angles about x, y and z (degrees)."""
    ax, ay, az = np.radians(np.asarray(angles_deg, float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def axis_angle(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """3x3 rotation about a unit ``axis`` by ``angle_deg`` (Rodrigues)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = np.radians(angle_deg)
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


def random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def oblique_direction(rng: np.random.Generator, degrees: tuple[float, float] = (12.0, 25.0)) -> np.ndarray:
    """A direction matrix tilted by a random angle in ``degrees`` about a random axis (an oblique acquisition)."""
    return axis_angle(random_unit(rng), float(rng.uniform(*degrees)))


def random_rigid(
    rng: np.random.Generator, centre: np.ndarray, max_degrees: float = 5.0, mm: tuple[float, float] = (3.0, 8.0)
) -> sitk.Euler3DTransform:
    """A known misregistration: rotations up to ``max_degrees`` per axis (>= 2 degrees in total) about
    ``centre``, and a translation of ``mm[0]``..``mm[1]`` mm in a random direction."""
    angles = rng.uniform(-max_degrees, max_degrees, 3)
    if np.linalg.norm(angles) < 2.0:  # keep it visible: a near-identity draw would test nothing
        angles = angles / max(np.linalg.norm(angles), 1e-9) * 2.0
    shift = random_unit(rng) * rng.uniform(*mm)
    t = sitk.Euler3DTransform()
    t.SetCenter([float(c) for c in centre])
    t.SetRotation(*[float(a) for a in np.radians(angles)])
    t.SetTranslation([float(s) for s in shift])
    return t


def identity_rigid(centre: np.ndarray) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetCenter([float(c) for c in centre])
    return t


def rigid_affine(t: sitk.Euler3DTransform) -> tuple[np.ndarray, np.ndarray]:
    """(M, b) with ``T(p) = M @ p + b`` for a rigid ITK transform."""
    m = np.asarray(t.GetMatrix(), float).reshape(3, 3)
    c = np.asarray(t.GetCenter(), float)
    return m, c + np.asarray(t.GetTranslation(), float) - m @ c


@dataclass(frozen=True)
class Pose:
    """Where the anatomy sits in the reference physical frame: ``p = centre + rotation @ a``."""

    centre: np.ndarray
    rotation: np.ndarray

    def to_physical(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(self.centre) + np.asarray(points, float) @ self.rotation.T

    def index_to_anatomy(
        self, grid: Grid, transform: sitk.Euler3DTransform | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(A, b): anatomy point ``a = A @ index(x, y, z) + b`` for a voxel of ``grid``.

        ``transform`` maps reference points to this grid's physical points (None for the reference role).
        """
        a_mat, b_vec = grid.matrix, np.asarray(grid.origin, float)  # index -> this grid's physical point
        if transform is not None:  # moving physical -> reference physical: T^-1(q) = M^T (q - b)
            m, b = rigid_affine(transform)
            a_mat, b_vec = m.T @ a_mat, m.T @ (b_vec - b)
        rt = self.rotation.T  # reference physical -> anatomy
        return rt @ a_mat, rt @ (b_vec - np.asarray(self.centre))
