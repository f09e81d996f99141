"""Leave-one-out target registration error, all folds at once (no per-fold refit loop).

For pair i, the transform is fitted on the other N-1 pairs and the distance between moving_i mapped by that fit
and fixed_i is the estimate of the target registration error at i. The closed forms give the same numbers as
refitting (the tests compare them with a plain refit loop):

* rigid, similarity: the centred cross-covariance and spreads without pair i are rank-one downdates of the full
  ones, so the N Kabsch/Umeyama problems are one batched 3x3 SVD;
* affine: least squares with an intercept, whose deleted residual is ``e_i / (1 - h_ii)`` (hat matrix diagonal);
* tps: Rippa's downdate of the spline system, then a batched Newton inversion (see ``tps.py``).

A fold whose N-1 pairs are too few or collinear/coplanar (by the fit's own rules) gives NaN.
"""

from __future__ import annotations

import numpy as np

from multimodalseg.registration.tps import ThinPlateSpline
from multimodalseg.registration.validate import DEGENERACY_TOLERANCE, MIN_PAIRS


def leave_one_out_errors(fixed: np.ndarray, moving: np.ndarray, mode: str,
                         spline: ThinPlateSpline | None = None) -> np.ndarray:
    """(N,) leave-one-out errors (mm) for ``mode``; ``spline`` is the full tps fit (fixed -> moving) for tps."""
    n = len(fixed)
    if n - 1 < MIN_PAIRS[mode]:
        return np.full(n, np.nan)
    ok = _folds_span(fixed, mode) & _folds_span(moving, mode)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if mode == "tps":
            if spline is None:
                spline = ThinPlateSpline(fixed, moving)
            mapped = np.full_like(fixed, np.nan)
            mapped[ok] = spline.leave_one_out_inverse(moving, start=fixed)[ok]
            errors = np.linalg.norm(mapped - fixed, axis=1)
        elif mode == "affine":
            errors = _affine_folds(fixed, moving)
        else:
            errors = _kabsch_folds(fixed, moving, scaled=mode == "similarity")
    errors[~ok] = np.nan
    return errors


def _folds_span(points: np.ndarray, mode: str) -> np.ndarray:
    """(N,) True where the set without point i still spans a plane (rigid, similarity) or a volume (affine, tps)."""
    n = len(points)
    q = points - points.mean(axis=0)
    scatter = q.T @ q
    mean = -q / (n - 1)  # the centroid of the others, in the full set's centred frame
    cov = scatter[None] - np.einsum("ni,nj->nij", q, q) - (n - 1) * np.einsum("ni,nj->nij", mean, mean)
    s = np.sqrt(np.clip(np.linalg.eigvalsh(cov), 0, None))  # ascending singular values of each fold
    thin = s[:, 0] if mode in ("affine", "tps") else s[:, 1]
    return thin > DEGENERACY_TOLERANCE * s[:, 2]


def _kabsch_folds(fixed: np.ndarray, moving: np.ndarray, *, scaled: bool) -> np.ndarray:
    n = len(fixed)
    qm, qf = moving - moving.mean(axis=0), fixed - fixed.mean(axis=0)
    mm, mf = -qm / (n - 1), -qf / (n - 1)
    cross = qm.T @ qf
    h = cross[None] - np.einsum("ni,nj->nij", qm, qf) - (n - 1) * np.einsum("ni,nj->nij", mm, mf)
    u, _, vt = np.linalg.svd(h)
    v = vt.transpose(0, 2, 1)
    d = np.ones((n, 3))
    d[:, 2] = np.where(np.linalg.det(v @ u.transpose(0, 2, 1)) < 0, -1.0, 1.0)
    rotation = v @ (d[:, :, None] * u.transpose(0, 2, 1))
    scale = np.ones(n)
    if scaled:
        # Horn's scale sqrt(fixed spread / moving spread) of the set without pair i.
        spread_m = (qm**2).sum() - (qm**2).sum(axis=1) - (n - 1) * (mm**2).sum(axis=1)
        spread_f = (qf**2).sum() - (qf**2).sum(axis=1) - (n - 1) * (mf**2).sum(axis=1)
        scale = np.sqrt(spread_f / spread_m)
    predicted = scale[:, None] * np.einsum("nij,nj->ni", rotation, qm - mm) + mf
    return np.linalg.norm(predicted - qf, axis=1)


def _affine_folds(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    x = np.hstack([np.ones((len(moving), 1)), moving - moving.mean(axis=0)])
    gram_inv = np.linalg.inv(x.T @ x)
    coef = gram_inv @ x.T @ fixed
    leverage = np.einsum("ni,ij,nj->n", x, gram_inv, x)
    return np.linalg.norm(fixed - x @ coef, axis=1) / (1.0 - leverage)
