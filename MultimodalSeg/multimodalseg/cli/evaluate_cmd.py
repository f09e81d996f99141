"""``multimodalseg evaluate``: Dice, Jaccard, sensitivity, precision, HD, HD95 and ASSD of a label map."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from typing import Any

COLUMNS = (("dice", "Dice"), ("jaccard", "Jaccard"), ("sensitivity", "Sens"), ("precision", "Prec"),
           ("hd", "HD mm"), ("hd95", "HD95 mm"), ("assd", "ASSD mm"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="compare a predicted label map with a reference (metrics in mm)",
        description="Per-label Dice, Jaccard, sensitivity, precision, HD, HD95 and ASSD (mm, from the voxel "
                    "spacing), their means over labels, and the BraTS regions for brain-tumor. Both files must be "
                    "on the same grid. A label empty in both files scores Dice 1 and HD 0 and is left out of the "
                    "means; a label empty in one file scores Dice 0 and has no distances (null).")
    p.add_argument("--pred", required=True, help="predicted label map (NIfTI, NRRD, MHA or a DICOM folder)")
    p.add_argument("--ref", required=True, help="reference label map on the same grid")
    p.add_argument("--task", help="task id: label names, regions, and values outside its table are refused")
    p.add_argument("--convention", help="label convention of both files, for tasks that have several "
                                        "(brain-tumor: brats2021, brats2023, msd)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (undefined values as null)")
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


def run(args: argparse.Namespace) -> int:
    from multimodalseg.metrics import evaluate_files, json_ready
    from multimodalseg.tasks import get_task

    task = get_task(args.task) if args.task else None
    result = evaluate_files(args.pred, args.ref, task=task, convention=args.convention)
    if task is not None and task.id == "whole-heart":
        from multimodalseg.metrics.heart import whs_scores

        scores = whs_scores(result["labels"])  # MM-WHS: volume-weighted means over the 7 structures
        result.update(whs=scores["whs"], whs_weights=scores["weights"])
    if args.json:
        print(json.dumps(json_ready({"pred": args.pred, "ref": args.ref, **result}), indent=2, allow_nan=False))
    else:
        print(format_table(result))
    return 0
