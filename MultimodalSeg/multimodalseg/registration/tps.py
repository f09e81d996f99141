"""3D thin-plate spline with the biharmonic kernel U(r) = r, exact or smoothing, and its numerical inverse.

The spline is ``g(x) = sum_k v_k |x - c_k| + A x + b`` mapping source points ``c_k`` to targets ``y_k``; it is
the same function as ITK's ``ThinPlateSplineKernelTransform`` and VTK's ``vtkThinPlateSplineTransform`` with
``BasisToR`` built on the same landmarks. Its bending energy is ``-trace(V^T K V)`` (up to the constant 8*pi),
non-negative because ``-r`` is conditionally positive definite in 3D.

Smoothing (``regularization = lam > 0``, mm) minimises ``sum |g(c_k) - y_k|^2 + lam * bending energy``; the
solution solves ``(K - lam I) V + P a = Y, P^T V = 0`` (the minus sign is the kernel's: ``K`` is negative on the
space the energy measures). ``lam -> inf`` tends to the least-squares affine fit. A smoothing spline is also
the exact spline through its own values ``g(c_k)``, which is how it is handed to ITK or VTK (:attr:`targets`).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack
from scipy.spatial.distance import cdist

from multimodalseg.errors import UserError

_CHUNK = 4096  # points per block when evaluating: bounds the (P, N, 3) temporaries to ~100 MB for N = 1000


class ThinPlateSpline:
    """A fitted 3D thin-plate spline ``g``: source frame -> target frame.

    Args:
        source: (N, 3) control points ``c_k`` (mm), distinct and not coplanar (checked by the caller).
        target: (N, 3) values ``y_k`` that ``g(c_k)`` interpolates (exactly when ``regularization`` is 0).
        regularization: smoothing weight ``lam`` >= 0 in mm.

    Attributes:
        weights: (N, 3) kernel weights ``v_k``; they sum to zero and are orthogonal to the source coordinates.
        affine: (4, 3) affine part: ``[1, x - centre] @ affine``.
        targets: (N, 3) ``g(c_k)``: equal to ``target`` when exact; the smoothed targets otherwise.
    """

    def __init__(self, source: np.ndarray, target: np.ndarray, regularization: float = 0.0) -> None:
        self.source = np.asarray(source, float)
        self.regularization = float(regularization)
        # Centring the control points keeps the linear system well scaled (the affine part uses x - centre).
        self.centre = self.source.mean(axis=0)
        c = self.source - self.centre
        n = len(c)
        lhs = self._system(c)
        rhs = np.zeros((n + 4, 3))
        rhs[:n] = np.asarray(target, float)
        # Symmetric indefinite (Bunch-Kaufman) factorisation, kept: the leave-one-out errors reuse it (dsytri).
        self._factors, self._pivots, info = lapack.dsytrf(lhs)
        if info != 0:
            raise UserError("the landmarks are too close to degenerate for a thin-plate spline (singular system)")
        solution, _ = lapack.dsytrs(self._factors, self._pivots, rhs)
        self.weights = solution[:n]
        self.affine = solution[n:]
        self.targets = self(self.source)

    @property
    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        """The affine part as ``(A, b)`` with ``A`` (3, 3) and ``b`` (3,): ``x -> A x + b``."""
        a = self.affine[1:].T
        return a, self.affine[0] - a @ self.centre

    @property
    def bending_energy(self) -> float:
        """``-trace(V^T K V)`` (>= 0); zero exactly when ``g`` is affine."""
        c = self.source - self.centre
        return float(-np.einsum("ij,ik,jk->", _distances(c, c), self.weights, self.weights))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """``g(points)``: (P, 3) source-frame points -> (P, 3) target-frame points."""
        pts = np.asarray(points, float).reshape(-1, 3) - self.centre
        out = np.empty_like(pts)
        for s in range(0, len(pts), _CHUNK):
            block = pts[s:s + _CHUNK]
            out[s:s + _CHUNK] = _distances(block, self.source - self.centre) @ self.weights + self._affine(block)
        return out

    def _affine(self, centred: np.ndarray) -> np.ndarray:
        return self.affine[0] + centred @ self.affine[1:]

    def inverse(self, points: np.ndarray, start: np.ndarray | None = None, *, tol: float = 1e-9,
                max_iter: int = 50) -> np.ndarray:
        """Solve ``g(x) = y`` for each row ``y`` of ``points`` by damped Newton iterations.

        Args:
            points: (P, 3) target-frame points.
            start: (P, 3) first guesses (default: the inverse of the affine part applied to ``points``).
            tol: stop when ``|g(x) - y|`` is below this (mm).
            max_iter: Newton steps at most.

        Returns:
            (P, 3) source-frame points; NaN rows where the iteration did not converge (the spline folds there,
            so the inverse is not unique or does not exist).
        """
        y = np.asarray(points, float).reshape(-1, 3)
        if start is None:
            a, b = self.linear
            start = (y - b) @ np.linalg.pinv(a).T  # pinv: a (rare) singular affine part still gives a start
        start = np.asarray(start, float).reshape(-1, 3) - self.centre
        c = self.source - self.centre

        def evaluate(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return evaluate_with_jacobian(x, c, self.weights, self.affine)

        out = np.empty_like(y)
        for s in range(0, len(y), _CHUNK):
            out[s:s + _CHUNK] = newton_solve(evaluate, y[s:s + _CHUNK], start[s:s + _CHUNK], tol, max_iter)
        return out + self.centre

    def leave_one_out_inverse(self, points: np.ndarray, start: np.ndarray, *, tol: float = 1e-9,
                              max_iter: int = 50) -> np.ndarray:
        """For each i, the spline fitted WITHOUT control point i, inverted at ``points[i]``.

        Every leave-one-out spline comes from the full system's inverse (Rippa's downdate: dropping unknown and
        equation i from ``L x = r`` gives ``x - L^-1[:, i] x_i / L^-1[i, i]``), so no system is solved again.

        Args:
            points: (N, 3) target-frame points, one per control point.
            start: (N, 3) first guesses in the source frame.

        Returns:
            (N, 3) source-frame points (NaN where Newton did not converge).
        """
        c = self.source - self.centre
        n = len(c)
        upper, _ = lapack.dsytri(self._factors, self._pivots)  # L^-1, upper triangle only
        columns = (np.triu(upper) + np.triu(upper, 1).T)[:, :n]  # L^-1[:, :n]
        coef = np.vstack([self.weights, self.affine])  # (N + 4, 3) = L^-1 r
        diag = columns[np.arange(n), np.arange(n)]
        # (N folds, N + 4 unknowns, 3): fold i's coefficients; entry i of fold i's weights becomes 0.
        folds = coef[None] - columns.T[:, :, None] * (coef[:n] / diag[:, None])[:, None, :]
        weights, affine = folds[:, :n], folds[:, n:]

        def evaluate(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return evaluate_with_jacobian(x, c, weights[rows], affine[rows])

        y = np.asarray(points, float).reshape(-1, 3)
        x0 = np.asarray(start, float).reshape(-1, 3) - self.centre
        return newton_solve(evaluate, y, x0, tol, max_iter) + self.centre

    def _system(self, c: np.ndarray) -> np.ndarray:
        n = len(c)
        lhs = np.zeros((n + 4, n + 4))
        lhs[:n, :n] = _distances(c, c) - self.regularization * np.eye(n)
        lhs[:n, n] = lhs[n, :n] = 1.0
        lhs[:n, n + 1:] = c
        lhs[n + 1:, :n] = c.T
        return lhs


def evaluate_with_jacobian(x: np.ndarray, centres: np.ndarray, weights: np.ndarray,
                           affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spline values (P, 3) and Jacobians (P, 3, 3) at centred points ``x`` (P, 3).

    ``weights`` is (N, 3) and ``affine`` (4, 3) for one spline, or (P, N, 3) and (P, 4, 3) for one spline per point.
    """
    diff = x[:, None, :] - centres[None, :, :]
    r = np.sqrt(np.einsum("pni,pni->pn", diff, diff))
    # d|x - c|/dx = (x - c)/|x - c|; at a control point the cone has no gradient: take 0 there.
    inv_r = np.divide(1.0, r, out=np.zeros_like(r), where=r > 0)
    if weights.ndim == 2:
        value = r @ weights + affine[0] + x @ affine[1:]
        # J[p] = sum_n w_n (x_p - c_n)^T / r_pn: one (3, N) @ (N, 3) product per point
        jac = np.matmul(weights.T[None] * inv_r[:, None, :], diff) + affine[1:].T
    else:
        value = np.matmul(r[:, None, :], weights)[:, 0] + affine[:, 0] + np.matmul(x[:, None, :], affine[:, 1:])[:, 0]
        jac = np.matmul((weights * inv_r[..., None]).transpose(0, 2, 1), diff) + affine[:, 1:].transpose(0, 2, 1)
    return value, jac


def newton_solve(evaluate, y: np.ndarray, start: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    """Damped Newton for ``f_p(x_p) = y_p``, p = 0..P-1, with ``evaluate(x, rows) -> (values, jacobians)``.

    Rows that do not reach ``|f(x) - y| <= tol`` within ``max_iter`` steps are NaN.
    """
    result = np.full_like(y, np.nan)
    rows = np.arange(len(y))
    x = np.array(start, float)
    value, jac = evaluate(x, rows)
    err = np.linalg.norm(value - y, axis=1)
    for _ in range(max_iter + 1):
        done = err <= tol
        result[rows[done]] = x[done]
        keep = ~done
        rows, x, y, value, jac, err = rows[keep], x[keep], y[keep], value[keep], jac[keep], err[keep]
        if not len(rows):
            break
        try:
            step = np.linalg.solve(jac, (y - value)[..., None])[..., 0]
        except np.linalg.LinAlgError:  # a singular Jacobian somewhere: least squares point by point
            step = np.stack([np.linalg.lstsq(j, r, rcond=None)[0] for j, r in zip(jac, y - value)])
        # Halve the step where it does not reduce the error (the spline is only piecewise smooth).
        t = np.ones(len(x))
        for _ in range(30):
            trial = x + t[:, None] * step
            value, jac = evaluate(trial, rows)
            trial_err = np.linalg.norm(value - y, axis=1)
            worse = trial_err >= err
            if not worse.any():
                break
            t[worse] *= 0.5
        x, err = trial, trial_err
    return result


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P, N) Euclidean distances between rows of ``a`` (P, 3) and ``b`` (N, 3), from exact differences (the
    expansion |a|^2 + |b|^2 - 2ab loses ~1e-4 mm near zero, which would spoil exact interpolation)."""
    return cdist(a, b)
