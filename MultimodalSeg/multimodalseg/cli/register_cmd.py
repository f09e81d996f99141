"""``multimodalseg register``: align a moving image to a fixed image from paired landmark files.

Writes into OUTDIR: the transform (``transform.tfm``; tps: ``transform.h5``, a displacement field on the
reference grid), the resampled moving image (``resampled.nii.gz``, when ``--moving`` is given), the moving
landmarks mapped into the fixed frame (``moving_points_registered.mrk.json``, RAS for Slicer) and
``report.json`` with the per-pair errors. All files are written to a temporary folder first and moved into
OUTDIR only when everything succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from multimodalseg.errors import UserError

TRANSFORM_NAMES = {"linear": "transform.tfm", "tps": "transform.h5"}
RESAMPLED_NAME = "resampled.nii.gz"
REGISTERED_POINTS_NAME = "moving_points_registered.mrk.json"
REPORT_NAME = "report.json"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "register",
        help="landmark registration: fit a transform from paired points, resample the moving image",
        description="Fit a rigid, similarity, affine or thin-plate spline transform that maps the moving "
        "landmarks onto the fixed landmarks (paired in file order, or by label). The transform file maps "
        "fixed -> moving in LPS (ITK's resampling direction); loaded in Slicer and applied to the moving "
        "volume, it moves that volume onto the fixed volume.",
    )
    p.add_argument("--fixed-points", required=True, type=Path, help="fixed landmarks (.mrk.json or .fcsv)")
    p.add_argument("--moving-points", required=True, type=Path, help="moving landmarks (.mrk.json or .fcsv)")
    p.add_argument("--mode", choices=("rigid", "similarity", "affine", "tps"), default="rigid",
                   help="transform model (default: rigid)")
    p.add_argument("--regularization", type=float, default=0.0,
                   help="tps smoothing weight in mm (0: exact interpolation of the landmarks)")
    p.add_argument("--pair-by", choices=("order", "label"), default="order",
                   help="pair the landmarks by position in the files (default) or by their labels")
    p.add_argument("--moving", type=Path, help="moving image to resample onto the reference grid")
    p.add_argument("--reference", type=Path, help="fixed image: the grid of the result (required for tps)")
    p.add_argument("--label", action="store_true", help="the moving image is a label map (nearest neighbour)")
    p.add_argument("--transform-name", help="transform file name in OUTDIR; its suffix picks the format "
                   "(.tfm/.txt/.h5; tps: .h5/.nrrd/.nii.gz/.mha). Default transform.tfm, tps transform.h5")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace files of an earlier run in OUTDIR")
    p.set_defaults(func=run)


def _pair(fixed: tuple[np.ndarray, list[str]], moving: tuple[np.ndarray, list[str]], by: str,
          paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    (f, f_names), (m, m_names) = fixed, moving
    if by == "order":
        return f, m, f_names, m_names
    for names, path in ((f_names, paths[0]), (m_names, paths[1])):
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise UserError(f"label {dup[0]!r} is used twice; --pair-by label needs unique labels", path)
    missing = [n for n in f_names if n not in m_names]
    if missing:
        raise UserError(f"fixed label {missing[0]!r} has no partner in {paths[1]}", paths[0])
    extra = [n for n in m_names if n not in f_names]
    if extra:
        raise UserError(f"moving label {extra[0]!r} has no partner in {paths[0]}", paths[1])
    order = [m_names.index(n) for n in f_names]
    return f, m[order], f_names, [m_names[i] for i in order]


def _check_arguments(args: argparse.Namespace, transform_name: str) -> None:
    if args.moving is not None and args.reference is None:
        raise UserError("--moving needs --reference (the fixed image whose grid the result takes)")
    if args.label and args.moving is None:
        raise UserError("--label applies to --moving; no moving image was given")
    if args.mode == "tps" and args.reference is None:
        raise UserError("--mode tps needs --reference: the spline is written as a displacement field on its grid")
    if args.regularization and args.mode != "tps":
        raise UserError("--regularization applies to --mode tps only")
    if Path(transform_name).name != transform_name or transform_name in ("", ".", ".."):
        raise UserError(f"--transform-name must be a file name, not a path: {transform_name!r}")
    if args.output.exists() and not args.output.is_dir():
        raise UserError("output exists and is not a folder", args.output)
    inputs = {p.resolve() for p in (args.fixed_points, args.moving_points, args.moving, args.reference) if p}
    for name in (transform_name, RESAMPLED_NAME, REGISTERED_POINTS_NAME, REPORT_NAME):
        target = args.output / name
        if target.resolve() in inputs:
            raise UserError("output would overwrite an input file; choose another output folder", target)
        if target.exists() and not args.overwrite:
            raise UserError("output file exists; use --overwrite to replace it", target)


def run(args: argparse.Namespace) -> int:
    from multimodalseg.io import read_image, write_image
    from multimodalseg.registration import (
        fit_landmarks,
        overlap_after_transform,
        read_markups,
        resample_moving,
        write_markups,
        write_transform,
    )

    transform_name = args.transform_name or TRANSFORM_NAMES["tps" if args.mode == "tps" else "linear"]
    _check_arguments(args, transform_name)
    fixed, moving, f_names, m_names = _pair(read_markups(args.fixed_points), read_markups(args.moving_points),
                                            args.pair_by, (args.fixed_points, args.moving_points))
    fit = fit_landmarks(fixed, moving, args.mode, regularization=args.regularization,
                        sources=(args.fixed_points, args.moving_points))
    reference = read_image(args.reference) if args.reference else None
    moving_image = read_image(args.moving, label=args.label) if args.moving else None
    overlap = None
    if moving_image is not None:
        overlap = overlap_after_transform(fit, moving_image, reference)
        if overlap == 0.0:
            raise UserError(f"after the landmark transform, {args.moving} does not overlap {args.reference} at all; "
                            "check that the landmark files belong to these images")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-register-", dir=args.output.parent))
    try:
        written = [write_transform(fit, tmp / transform_name, reference).name]
        if moving_image is not None:
            resampled = resample_moving(fit, moving_image, reference, label=args.label)
            written.append(write_image(resampled, tmp / RESAMPLED_NAME).name)
        registered = fit.transform_points(moving)
        if np.isfinite(registered).all():
            write_markups(tmp / REGISTERED_POINTS_NAME, registered, m_names, coordinate_system="RAS")
            written.append(REGISTERED_POINTS_NAME)
        report = _report(fit, args, f_names, m_names, written + [REPORT_NAME], overlap)
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _publish(tmp, args.output, written + [REPORT_NAME])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _print_summary(fit, f_names, args.output, written + [REPORT_NAME])
    return 0


def _publish(tmp: Path, output: Path, names: list[str]) -> None:
    """Move the finished files into ``output``: the whole folder at once when it does not exist yet."""
    if not output.exists():
        os.replace(tmp, output)
        return
    for name in names:
        os.replace(tmp / name, output / name)


def _report(fit, args: argparse.Namespace, f_names: list[str], m_names: list[str], files: list[str],
            overlap: float | None) -> dict:
    report = fit.report()
    for pair, f_name, m_name in zip(report["points"], f_names, m_names):
        pair["fixed_label"], pair["moving_label"] = f_name, m_name
    report.update({
        "fixed_points_file": str(args.fixed_points),
        "moving_points_file": str(args.moving_points),
        "moving_image": None if args.moving is None else str(args.moving),
        "reference_image": None if args.reference is None else str(args.reference),
        "overlap_fraction": overlap,
        "files": files,
        "conventions": {
            "points": "LPS mm (ITK); Slicer shows RAS = (-x, -y, z)",
            "matrix_moving_to_fixed": "maps moving points onto fixed points (Slicer 'to parent' in LPS)",
            "transform_file": "maps fixed points to moving points in LPS (ITK resampling direction)",
            "residual_mm": "distance between the transformed moving landmark and its fixed landmark",
            "loo_error_mm": "same, for the transform fitted without this pair (target error estimate)",
        },
    })
    return report


def _print_summary(fit, names: list[str], output: Path, files: list[str]) -> None:
    worst = int(np.nanargmax(fit.residuals)) if np.isfinite(fit.residuals).any() else 0
    loo = fit.loo_errors
    loo_text = f"{np.sqrt(np.nanmean(loo**2)):.3f} mm" if np.isfinite(loo).any() else "n/a (too few pairs)"
    print(f"{fit.mode}: {len(fit.fixed)} pairs, RMS {fit.rms:.3f} mm, leave-one-out RMS {loo_text}, "
          f"largest residual {fit.residuals[worst]:.3f} mm (pair {worst + 1} {names[worst]!r})")
    print(f"wrote {', '.join(str(output / f) for f in files)}")
