"""Benchmark: one landmark-registration update (fit + residuals + RMS), as the Slicer panel does per point move.

Usage:
    python benchmarks/bench_registration.py [--pairs 100] [--runs 200] [--blas-threads 1]

Prints the median and 90th percentile per mode (rigid, similarity, affine, tps exact and smoothed), and the
same for the leave-one-out errors, which are computed on first access of ``fit.loo_errors``. Target: an update
<= 10 ms with 100 pairs. ``--blas-threads`` sets OPENBLAS/OMP/MKL thread counts before numpy loads: on a busy
machine, multi-threaded BLAS on these small (~100 x 100) systems costs more than it gives.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--blas-threads", type=int, help="BLAS threads (default: the library's own choice)")
    args = parser.parse_args()
    if args.blas_threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.blas_threads)

    import numpy as np  # after the environment is set
    from multimodalseg.registration import fit_landmarks
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    moving = rng.normal(size=(args.pairs, 3)) * [40, 35, 60] + [-10, 120, 250]
    rotation = Rotation.from_euler("xyz", [5, -8, 12], degrees=True).as_matrix()
    fixed = moving @ rotation.T + [4, -6, 9] + rng.normal(size=moving.shape) * 1.5
    cases = [("rigid", 0.0), ("similarity", 0.0), ("affine", 0.0), ("tps", 0.0), ("tps", 5.0)]
    print(f"{args.pairs} pairs, {args.runs} runs, BLAS threads: {args.blas_threads or 'default'}, "
          f"python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"{'mode':18s} {'update median':>14s} {'p90':>8s} {'LOO median':>11s} {'p90':>8s}  rms / loo rms (mm)")
    for mode, lam in cases:
        _ = fit_landmarks(fixed, moving, mode, regularization=lam).loo_errors  # warm-up
        update, loo = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            fit = fit_landmarks(fixed, moving, mode, regularization=lam)
            _ = fit.residuals, fit.rms
            t1 = time.perf_counter()
            errors = fit.loo_errors
            t2 = time.perf_counter()
            update.append(t1 - t0)
            loo.append(t2 - t1)
        u, v = np.array(update) * 1e3, np.array(loo) * 1e3
        name = mode if not lam else f"{mode} (lam={lam:g})"
        print(f"{name:18s} {np.median(u):11.2f} ms {np.percentile(u, 90):5.2f} ms {np.median(v):8.2f} ms "
              f"{np.percentile(v, 90):5.2f} ms  {fit.rms:.3f} / {np.sqrt(np.nanmean(errors**2)):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
