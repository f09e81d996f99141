"""``multimodalseg evaluate``: Dice, Jaccard, sensitivity, precision, HD, HD95 and ASSD of a label map, and
EN, MI, SF and VIF of a fused CT-MR image against its sources (``--fused --ct --mr``)."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from typing import Any

# More distinct values than this in a label map without --task: an intensity image given by mistake (a CT has
# hundreds or thousands of values); evaluating every one would take hours of surface distances.
MAX_LABELS_WITHOUT_TASK = 255
COLUMNS = (("dice", "Dice"), ("jaccard", "Jaccard"), ("sensitivity", "Sens"), ("precision", "Prec"),
           ("hd", "HD mm"), ("hd95", "HD95 mm"), ("assd", "ASSD mm"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="compare a predicted label map with a reference (metrics in mm)",
        description="Per-label Dice, Jaccard, sensitivity, precision, HD, HD95 and ASSD (mm, from the voxel "
                    "spacing), their means over labels, and the BraTS regions for brain-tumor. Both files must be "
                    "on the same grid. A label empty in both files scores Dice 1 and HD 0 and is left out of the "
                    "means; a label empty in one file scores Dice 0 and has no distances (null).")
    p.add_argument("--pred", help="predicted label map (NIfTI, NRRD, MHA or a DICOM folder)")
    p.add_argument("--ref", help="reference label map on the same grid")
    p.add_argument("--task", help="task id: label names, regions, and values outside its table are refused")
    p.add_argument("--convention", help="label convention of both files, for tasks that have several "
                                        "(brain-tumor: brats2021, brats2023, msd)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (undefined values as null)")
    p.add_argument("--max-labels", type=int, default=MAX_LABELS_WITHOUT_TASK, metavar="N",
                   help="without --task, refuse label maps with more than N distinct values (likely an intensity "
                        f"image; default {MAX_LABELS_WITHOUT_TASK})")
    g = p.add_argument_group(
        "fusion image (spine)", "EN, MI, SF and VIF (mean over slices) of a fused image against its CT and MR, all "
        "on the CT grid (as 'multimodalseg fuse' writes it), with the CT alone and the MR alone for comparison. "
        "The sources are scaled as the fusion model's inputs. With or without --pred/--ref.")
    g.add_argument("--fused", help="fused image on the CT grid (8-bit grey as 'fuse' writes it; else min-max scaled)")
    g.add_argument("--ct", help="the CT the image was fused from (Hounsfield units)")
    g.add_argument("--mr", help="the MR, already resampled onto the CT grid")
    g.add_argument("--ct-window", type=float, nargs=2, metavar=("LO", "HI"),
                   help="CT window in HU for the CT's grey levels (default: the fusion default, -250 1250)")
    g.add_argument("--mr-percentile", type=float,
                   help="MR grey levels: divided by this percentile of its positive voxels (default 99.5)")
    g.add_argument("--slice-axis", type=int, choices=(0, 1, 2), default=0,
                   help="array axis (z, y, x) the metrics are averaged over, as the fusion's slices (default 0: z)")
    p.set_defaults(func=run)


def _cell(value: float, width: int, distance: bool) -> str:
    if value is None or math.isnan(value):
        return "-".rjust(width)
    return f"{value:{width}.2f}" if distance else f"{value:{width}.4f}"


def _rows(per_item: Mapping[str, Mapping[str, Any]], width: int) -> list[str]:
    lines = []
    for name, m in per_item.items():
        cells = " ".join(_cell(m[key], max(len(head), 7), key in ("hd", "hd95", "assd")) for key, head in COLUMNS)
        volumes = f"{m['volume_pred_ml']:10.3f} {m['volume_ref_ml']:10.3f}"
        note = {"both": "  (empty in both)", "pred": "  (empty prediction)", "ref": "  (empty reference)"}
        lines.append(f"{name:<{width}} {cells} {volumes}{note.get(m['empty'], '')}")
    return lines


def format_table(result: Mapping[str, Any]) -> str:
    """The metrics as a readable fixed-width table."""
    names = [*result["labels"], *result.get("regions", {}), "mean over labels"]
    width = max(len(n) for n in names)
    header = " ".join(head.rjust(max(len(head), 7)) for _, head in COLUMNS)
    lines = [f"{'label':<{width}} {header} {'pred ml':>10} {'ref ml':>10}"]
    lines += _rows(result["labels"], width)
    mean_cells = " ".join(_cell(result["mean"][key], max(len(head), 7), key in ("hd", "hd95", "assd"))
                          for key, head in COLUMNS)
    lines.append(f"{'mean over labels':<{width}} {mean_cells}")
    if "regions" in result:
        lines.append("regions")
        lines += _rows(result["regions"], width)
    by_count: dict[int, list[str]] = {}
    for key, head in COLUMNS:
        by_count.setdefault(result["mean_count"][key], []).append(head.removesuffix(" mm"))
    parts = [f"{', '.join(heads)} over {n} label{'s' if n != 1 else ''}" for n, heads in by_count.items()]
    lines.append("means: " + "; ".join(parts) + " (undefined values left out)")
    for side, what in (("both", "empty in both files, left out of the means"),
                       ("pred", "empty in the prediction"), ("ref", "empty in the reference")):
        if result["empty"][side]:
            lines.append(f"{what}: {', '.join(result['empty'][side])}")
    if "whs" in result:
        whs = " ".join(_cell(result["whs"][key], max(len(head), 7), key in ("hd", "hd95", "assd"))
                       for key, head in COLUMNS)
        lines.append(f"{'WHS score':<{width}} {whs}  (MM-WHS: means weighted by reference volume)")
    return "\n".join(lines)


def _check_modes(args: argparse.Namespace) -> tuple[bool, bool]:
    """(label maps given, fusion image given); a half-given pair is a UserError."""
    from multimodalseg.errors import UserError

    labels = args.pred is not None or args.ref is not None
    fusion = any(v is not None for v in (args.fused, args.ct, args.mr))
    if labels and (args.pred is None or args.ref is None):
        raise UserError("--pred and --ref go together: give both label maps")
    if fusion:
        missing = [f"--{k}" for k in ("fused", "ct", "mr") if getattr(args, k) is None]
        if missing:
            raise UserError(f"the fusion metrics need --fused, --ct and --mr (missing {', '.join(missing)})")
    elif args.ct_window is not None or args.mr_percentile is not None:
        raise UserError("--ct-window and --mr-percentile are for the fusion metrics: give --fused, --ct and --mr")
    if not labels and not fusion:
        raise UserError("give --pred and --ref (label maps), or --fused, --ct and --mr (fusion image), or both")
    if not labels and (args.task or args.convention):
        raise UserError("--task and --convention are for label maps: give --pred and --ref")
    return labels, fusion


def _fusion(args: argparse.Namespace) -> dict[str, Any]:
    from multimodalseg import fusion_metrics as fm

    return fm.evaluate_fusion_files(
        args.fused, args.ct, args.mr, ct_window=args.ct_window or fm.CT_WINDOW_HU,
        mr_percentile=fm.MR_PERCENTILE if args.mr_percentile is None else args.mr_percentile, axis=args.slice_axis)


def format_fusion(fusion: Mapping[str, Any]) -> str:
    """The fusion metrics as lines: the fused image, then the CT and the MR taken as the fusion."""
    from multimodalseg.fusion_metrics import format_metrics

    m, s = fusion["metrics"], fusion["settings"]
    lines = [f"fusion metrics (mean over {m['fused']['slices']} slices along axis {s['axis']}; fused grey levels "
             f"{s['fused_levels']})"]
    lines += [f"{title:9s} {format_metrics(m[name])}" for name, title in
              (("fused", "fused"), ("ct", "CT alone"), ("mr", "MR alone"))]
    return "\n".join(lines)


def warn_same_files(files: Mapping[str, Any]) -> None:
    """A warning line on stderr for each file given for several options (each should be its own image)."""
    import sys
    from pathlib import Path

    by_file: dict[Path, list[str]] = {}
    for option, path in files.items():
        if path is not None:
            by_file.setdefault(Path(path).resolve(), []).append(option)
    for path, options in by_file.items():
        if len(options) > 1:
            print(f"warning: {path}: the same file is given for {' and '.join(options)}", file=sys.stderr)


def _evaluate_labels(args: argparse.Namespace, task) -> dict[str, Any]:
    """Both label maps read once; without a task, a map with very many values is refused (an intensity image)."""
    from multimodalseg.errors import UserError
    from multimodalseg.io import read_image
    from multimodalseg.metrics.evaluate import evaluate_images

    if args.max_labels < 1:
        raise UserError(f"--max-labels must be at least 1, got {args.max_labels}")
    ref = read_image(args.ref, label=True)
    pred = read_image(args.pred, label=True)
    if task is None:
        import numpy as np
        import SimpleITK as sitk

        for path, image in ((args.ref, ref), (args.pred, pred)):
            count = int(np.count_nonzero(np.bincount(sitk.GetArrayViewFromImage(image).ravel())[1:]))
            if count > args.max_labels:
                raise UserError(f"holds {count} distinct label values: an intensity image, not a label map? Give "
                                f"--task for a task's labels, or --max-labels {count} to evaluate them all", path)
    return evaluate_images(pred, ref, task=task, convention=args.convention, pred_path=args.pred, ref_path=args.ref)


def run(args: argparse.Namespace) -> int:
    from multimodalseg.metrics import json_ready
    from multimodalseg.tasks import get_task

    labels, fusion = _check_modes(args)
    task = get_task(args.task) if args.task else None
    result: dict[str, Any] = {}
    if labels:
        result = _evaluate_labels(args, task)
    if labels and task is not None and task.id == "whole-heart":
        from multimodalseg.metrics.heart import whs_scores

        scores = whs_scores(result["labels"])  # MM-WHS: volume-weighted means over the 7 structures
        result.update(whs=scores["whs"], whs_weights=scores["weights"])
    if fusion:
        result["fusion"] = _fusion(args)
    # after the checks, so a refused run prints its one error line only
    warn_same_files({"--pred": args.pred, "--ref": args.ref, "--fused": args.fused, "--ct": args.ct, "--mr": args.mr})
    if args.json:
        paths = {"pred": args.pred, "ref": args.ref} if labels else {}
        print(json.dumps(json_ready({**paths, **result}), indent=2, allow_nan=False))
    else:
        print("\n".join(([format_table(result)] if labels else []) + ([format_fusion(result["fusion"])]
                                                                       if fusion else [])))
    return 0
