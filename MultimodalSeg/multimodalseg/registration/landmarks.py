"""Paired-landmark registration: rigid, similarity, affine (closed forms) and thin-plate spline, with errors.

Frames and directions (the one place that defines them):

* The maths is frame-agnostic: give fixed and moving points in ONE physical frame, both LPS (ITK, files of this
  package) or both RAS (Slicer's markups and matrices). Tell :func:`fit_landmarks` which (``frame=``) only so
  that :meth:`LandmarkFit.to_sitk` and the transform files, which are always LPS, convert correctly.
* :attr:`LandmarkFit.matrix` and :meth:`LandmarkFit.transform_points` map MOVING points onto FIXED points
  (``fixed ~ matrix @ moving``): what a Slicer linear transform node's "to parent" matrix must be to move the
  moving volume onto the fixed volume.
* :meth:`LandmarkFit.inverse_points` and :meth:`LandmarkFit.to_sitk` map FIXED points to MOVING points: the
  resampling direction ITK uses (for each output voxel on the fixed grid, where to read the moving image).

The thin-plate spline is fitted in the resampling direction (source = fixed, target = moving), as Slicer's
Landmark Registration and ITK's kernel transforms define it, so files and resampling are exact; its forward
map (moving -> fixed) is the numerical inverse (damped Newton).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.registration.grid import voxel_centres
from multimodalseg.registration.loo import leave_one_out_errors
from multimodalseg.registration.tps import ThinPlateSpline
from multimodalseg.registration.validate import check_mode, check_pairs

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS for homogeneous points and matrices (its own inverse)


def fit_landmarks(
    fixed: np.ndarray,
    moving: np.ndarray,
    mode: str = "rigid",
    *,
    regularization: float = 0.0,
    frame: str = "LPS",
    sources: tuple[str | os.PathLike | None, str | os.PathLike | None] = (None, None),
) -> LandmarkFit:
    """Fit the transform that maps each moving landmark onto its fixed partner.

    Args:
        fixed: (N, 3) fixed-image landmarks (mm), pair i is row i.
        moving: (N, 3) moving-image landmarks, same frame as ``fixed``.
        mode: ``rigid`` (Kabsch/Horn, reflection excluded), ``similarity`` (Horn: the rigid rotation and the
            isotropic scale sqrt(spread ratio), as VTK, ITK and Slicer's Landmark Registration compute it; unlike
            Umeyama's least-squares scale it is symmetric, so the fixed -> moving fit is exactly the inverse),
            ``affine`` (least squares) or ``tps`` (thin-plate
            spline, U(r) = r, exact interpolation when ``regularization`` is 0).
        regularization: thin-plate smoothing weight (mm), >= 0; ignored by the linear modes.
        frame: ``"LPS"`` or ``"RAS"``, the frame of the points; only :meth:`LandmarkFit.to_sitk` uses it.
        sources: the files the two sets came from, named in error messages.

    Returns:
        The :class:`LandmarkFit`.

    Raises:
        UserError: counts differ, fewer than 3 pairs (rigid, similarity) or 4 (affine, tps), NaN/inf, duplicate
            points, collinear (rigid, similarity) or coplanar (affine, tps) points, bad mode or regularization.
    """
    mode = check_mode(mode)
    f, m = check_pairs(fixed, moving, mode, sources)
    if not np.isfinite(regularization) or regularization < 0:
        raise UserError(f"regularization must be a finite number >= 0, got {regularization}")
    if str(frame).upper() not in ("LPS", "RAS"):
        raise UserError(f"frame must be LPS or RAS, got {frame!r}")
    return LandmarkFit(f, m, mode, float(regularization), str(frame).upper())


class LandmarkFit:
    """A fitted landmark transform and its errors. Build with :func:`fit_landmarks`.

    Attributes:
        mode: ``rigid``, ``similarity``, ``affine`` or ``tps``.
        fixed, moving: (N, 3) the landmarks fitted (mm, in ``frame``).
        regularization: thin-plate smoothing weight (mm); 0 for the linear modes.
        frame: ``LPS`` or ``RAS``, the frame of the points and of :attr:`matrix`.
        matrix: (4, 4) homogeneous map MOVING -> FIXED for the linear modes; None for tps.
        residuals: (N,) fiducial registration error per pair: ``|transform_points(moving_i) - fixed_i|`` (mm);
            for tps, NaN where the spline folds so that moving_i has no inverse image.
        rms: root mean square of ``residuals`` (mm).
        spline: the :class:`ThinPlateSpline` FIXED -> MOVING for tps; None otherwise.
    """

    def __init__(self, fixed: np.ndarray, moving: np.ndarray, mode: str, regularization: float = 0.0,
                 frame: str = "LPS") -> None:
        self.mode = mode
        self.fixed = fixed
        self.moving = moving
        self.regularization = regularization if mode == "tps" else 0.0
        self.frame = frame
        self.matrix: np.ndarray | None = None
        self.spline: ThinPlateSpline | None = None
        if mode == "tps":
            self.spline = ThinPlateSpline(fixed, moving, self.regularization)
            # Start Newton at the fixed landmark: the spline maps it onto (or, smoothed, next to) moving_i.
            mapped = self.spline.inverse(moving, start=fixed)
        else:
            self.matrix = _fit_linear(fixed, moving, mode)
            mapped = self.transform_points(moving)
        self.residuals = np.linalg.norm(mapped - fixed, axis=1)
        self.rms = float(np.sqrt(np.mean(self.residuals**2)))

    def __repr__(self) -> str:
        return f"LandmarkFit(mode={self.mode!r}, pairs={len(self.fixed)}, rms={self.rms:.4g} mm, frame={self.frame})"

    def transform_points(self, moving_points: np.ndarray) -> np.ndarray:
        """Map (P, 3) moving-frame points into the fixed frame (a fitted landmark pair: moving_i -> ~fixed_i).

        For tps this is the numerical inverse of the spline; rows where it does not converge (the spline folds
        there) are NaN.
        """
        pts = np.asarray(moving_points, float).reshape(-1, 3)
        if self.spline is not None:
            return self.spline.inverse(pts)
        return pts @ self.matrix[:3, :3].T + self.matrix[:3, 3]

    def inverse_points(self, fixed_points: np.ndarray) -> np.ndarray:
        """Map (P, 3) fixed-frame points into the moving frame: the resampling direction (fixed_i -> ~moving_i)."""
        pts = np.asarray(fixed_points, float).reshape(-1, 3)
        if self.spline is not None:
            return self.spline(pts)
        inv = np.linalg.inv(self.matrix)
        return pts @ inv[:3, :3].T + inv[:3, 3]

    @property
    def bending_energy(self) -> float:
        """Thin-plate bending energy (0 for the linear modes, which do not bend)."""
        return 0.0 if self.spline is None else self.spline.bending_energy

    @property
    def tps_landmarks(self) -> tuple[np.ndarray, np.ndarray]:
        """For tps: ``(source, target)`` to build the same spline as VTK's ``vtkThinPlateSplineTransform``
        (``SetBasisToR``) or ITK's ``ThinPlateSplineKernelTransform``: source = fixed landmarks, target = the
        spline's values there (the moving landmarks when exact, smoothed ones otherwise). Use it as the resampling
        ("from parent") transform, in this fit's frame."""
        if self.spline is None:
            raise ValueError(f"{self.mode} fit has no thin-plate landmarks; use .matrix")
        return self.fixed.copy(), self.spline.targets.copy()

    @functools.cached_property
    def loo_errors(self) -> np.ndarray:
        """(N,) leave-one-out target registration error estimate (mm), computed on first access, then cached.

        For each pair i: the fit without pair i maps moving_i; the error is its distance to fixed_i. All folds are
        computed together in closed form (see ``loo.py``). NaN where the remaining N-1 pairs cannot define the
        transform: fewer than 3 (rigid, similarity) or 4 (affine, tps) pairs, or collinear/coplanar points left;
        for tps, also where the spline without pair i folds at that point.
        """
        return leave_one_out_errors(self.fixed, self.moving, self.mode, self.spline)

    def matrix_in(self, frame: str) -> np.ndarray:
        """:attr:`matrix` (moving -> fixed) expressed in ``frame`` (``LPS`` or ``RAS``)."""
        if self.matrix is None:
            raise ValueError("tps has no matrix")
        return self.matrix.copy() if frame.upper() == self.frame else _LPS_RAS @ self.matrix @ _LPS_RAS

    def to_sitk(self, reference: sitk.Image | None = None) -> sitk.Transform:
        """The ITK transform in LPS mapping FIXED points to MOVING points (ITK's resampling direction).

        Pass it to ``sitk.Resample(moving, fixed_grid, transform)`` or ``multimodalseg.io.resample_to_reference``
        to bring the moving image onto the fixed grid, or write it with ``sitk.WriteTransform``.

        Args:
            reference: for tps only: the grid (normally the fixed image) on which the displacement field is
                sampled; outside it the field is zero (identity). The linear modes ignore it.

        Returns:
            ``VersorRigid3DTransform`` (rigid), ``Similarity3DTransform`` (similarity), ``AffineTransform``
            (affine) or ``DisplacementFieldTransform`` (tps).
        """
        if self.spline is not None:
            if reference is None:
                raise ValueError("a tps transform needs a reference grid; pass the fixed image")
            return sitk.DisplacementFieldTransform(self.to_displacement_field(reference))
        inv = np.linalg.inv(self.matrix_in("LPS"))
        linear, offset = inv[:3, :3], inv[:3, 3]
        if self.mode == "rigid":
            t = sitk.VersorRigid3DTransform()
        elif self.mode == "similarity":
            t = sitk.Similarity3DTransform()
        else:
            t = sitk.AffineTransform(3)
        t.SetMatrix([float(v) for v in linear.ravel()])
        t.SetTranslation([float(v) for v in offset])
        return t

    def to_displacement_field(self, reference: sitk.Image) -> sitk.Image:
        """The map FIXED -> MOVING sampled on ``reference``'s voxel centres as an ITK displacement field.

        Returns:
            A 3-component ``sitkVectorFloat64`` image with ``reference``'s geometry holding, at each voxel centre
            x (LPS), the LPS displacement ``T(x) - x`` where T maps fixed to moving. Slicer loads such a file as a
            grid transform in the resampling direction, like an ITK transform file.
        """
        size = reference.GetSize()
        field = np.empty((*size[::-1], 3))
        step = max(1, 2_000_000 // (size[0] * size[1]))  # slabs of ~2 M voxels bound the temporaries
        for z in range(0, size[2], step):
            slab = range(z, min(z + step, size[2]))
            lps = voxel_centres(reference, slices=slab)
            field[z:z + len(slab)] = (self.inverse_points_lps(lps) - lps).reshape(len(slab), size[1], size[0], 3)
        image = sitk.GetImageFromArray(field, isVector=True)
        image.CopyInformation(reference)
        return image

    def inverse_points_lps(self, lps: np.ndarray) -> np.ndarray:
        """:meth:`inverse_points` for (P, 3) LPS points, whatever this fit's frame (fixed -> moving, LPS)."""
        if self.frame == "LPS":
            return self.inverse_points(lps)
        flip = _LPS_RAS[:3, :3].diagonal()
        return self.inverse_points(lps * flip) * flip

    def report(self) -> dict:
        """A JSON-ready summary: mode, frame, RMS, the matrix, and per pair the points and both errors."""
        loo = self.loo_errors
        return {
            "mode": self.mode,
            "frame": self.frame,
            "regularization": self.regularization,
            "pairs": len(self.fixed),
            "rms_mm": self.rms,
            "loo_rms_mm": _nan_to_none(np.sqrt(np.nanmean(loo**2))) if np.isfinite(loo).any() else None,
            "matrix_moving_to_fixed": None if self.matrix is None else self.matrix.tolist(),
            "bending_energy": self.bending_energy,
            "points": [
                {
                    "index": i + 1,
                    "fixed": self.fixed[i].tolist(),
                    "moving": self.moving[i].tolist(),
                    "residual_mm": _nan_to_none(self.residuals[i]),
                    "loo_error_mm": _nan_to_none(loo[i]),
                }
                for i in range(len(self.fixed))
            ],
        }


def _nan_to_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _fit_linear(fixed: np.ndarray, moving: np.ndarray, mode: str) -> np.ndarray:
    """(4, 4) matrix mapping moving onto fixed: Kabsch (rigid), Horn (similarity), least squares (affine)."""
    mc, fc = moving.mean(axis=0), fixed.mean(axis=0)
    mo, fo = moving - mc, fixed - fc
    out = np.eye(4)
    if mode == "affine":
        # Least squares on centred points: fo ~ mo @ A.T (the centroids map onto each other exactly).
        a_t, *_ = np.linalg.lstsq(mo, fo, rcond=None)
        linear = a_t.T
    else:
        u, _, vt = np.linalg.svd(mo.T @ fo)  # cross-covariance H = sum mo_i fo_i^T
        d = np.ones(3)
        d[2] = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0  # flip the weakest axis rather than reflect
        rotation = vt.T @ np.diag(d) @ u.T
        scale = float(np.sqrt((fo**2).sum() / (mo**2).sum())) if mode == "similarity" else 1.0
        linear = scale * rotation
    out[:3, :3] = linear
    out[:3, 3] = fc - linear @ mc
    return out
