"""``multimodalseg demo``: segment a synthetic case of every task that has a model, and score it.

For each task (or ``--task T``) with a catalog model: make a seeded case (``synth`` from an anatomy held out of the
model's training for models trained on synthetic data, else a geometric phantom), write its inputs and ground truth,
segment it with the task's default model, write the label map and an overlay PNG, and compute Dice per label against
the case's truth. Prints a table of mean Dice and time per task (``--json`` for a machine-readable summary).

Exit codes: 0 when at least one task ran (tasks without a model, or whose model the catalog marks ``incompatible``,
are listed as such); 2 when no requested task has a usable model (the message says how to get one, or why it is
refused), as for any user error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from multimodalseg.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment a synthetic case per task with its model; print Dice and time")
    p.add_argument("--task", help="only this task (default: every task with a model)")
    p.add_argument("--out", default="multimodalseg-demo", help="output folder (default ./multimodalseg-demo)")
    p.add_argument("--seed", type=int, default=1, help="case seed (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodalseg import catalog
    from multimodalseg.tasks import all_tasks, get_task

    tasks = [get_task(args.task)] if args.task else all_tasks()
    models = {t.id: catalog.entries(t.id) for t in tasks}
    if not any(models.values()):
        missing = ", ".join(t.id for t in tasks)
        raise UserError(f"no model for task{'s' if len(tasks) > 1 else ''} {missing}; train one with 'python -m "
                        "training fit ...' and 'python -m training export ...', then 'multimodalseg models import "
                        "BUNDLE.pt' (see 'multimodalseg models list')")
    defaults = {t.id: catalog.default_for(t.id) for t in tasks if models[t.id]}
    if defaults and all(e.incompatible for e in defaults.values()):  # nothing can run: say why
        e = next(iter(defaults.values()))
        raise UserError(f"model {e.id} {e.version} for task {e.task} is refused: {e.incompatible}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder ({exc.strerror or exc})", out) from exc

    from multimodalseg.inference.devices import configure_threads

    configure_threads(None)
    rows = []
    for task in tasks:
        if not models[task.id]:
            rows.append({"task": task.id, "model": None, "status": "no model"})
            continue
        entry = defaults[task.id]
        if entry.incompatible:  # the bundle would refuse to load (bundles.check_label_table): list it, go on
            rows.append({"task": task.id, "model": entry.id, "version": entry.version, "status": "refused",
                         "reason": entry.incompatible})
            continue
        rows.append(_run_task(task, entry, out / task.id, args))
    if args.json:
        print(json.dumps({"out": str(out), "tasks": rows}, indent=2))
    else:
        _print_table(rows, out)
    return 0


def _run_task(task, entry, folder: Path, args: argparse.Namespace) -> dict:
    from multimodalseg import io
    from multimodalseg.inference.predictor import Predictor, load_model
    from multimodalseg.phantoms import make_case

    t0 = time.perf_counter()
    modality = task.modalities[0] if task.modalities else None
    case = _demo_case(task, entry, args.seed, modality, make_case)
    inputs = {role: io.write_image(image, folder / "inputs" / f"{role}.nii.gz") for role, image in case.images.items()}
    truth_path = io.write_image(case.label, folder / "truth.nii.gz")
    predictor = Predictor(load_model(task.id, entry.id), args.device, modality=case.modality)
    result = predictor.predict(inputs, output=folder / "labels.nii.gz")
    dice, how = _dice(result.labels, case.label, task)
    outputs = {"labels": str(folder / "labels.nii.gz"), "truth": str(truth_path)}
    overlay = _overlay(case.images[task.reference_role], result.labels, case.label, folder, task)
    outputs.update(overlay)
    row = {"task": task.id, "model": entry.id, "version": entry.version, "demo_model": entry.demo,
           "case": case.case_id, "mean_dice": dice["mean"], "dice": dice["labels"], "dice_from": how,
           "seconds": round(time.perf_counter() - t0, 2), "inference_seconds": result.timings["total"],
           "device": result.report["device"], "outputs": outputs, "status": "ok"}
    if "regions" in dice:  # BraTS is scored on its regions (WT, TC, ET): the table's mean is theirs
        row.update({"mean_dice": dice["regions_mean"], "mean_dice_over": "regions", "region_dice": dice["regions"],
                    "label_mean_dice": dice["mean"]})
    return row


def _demo_case(task, entry, seed: int, modality, make_case):
    """A model trained on synthetic data from real anatomy (catalog ``training_data: synthetic``) is shown a
    ``synth`` case from an anatomy held out of its training; other models their geometric phantom. Inputs are
    registered: the demo shows segmentation (registration has its own command)."""
    if entry.training_data == "synthetic":
        from multimodalseg.synthesis.anatomy import split_anatomy
        from multimodalseg.synthesis.generate import make_synth_case

        held = split_anatomy(task.id)[1]
        if held:
            return make_synth_case(task.id, seed, anatomy=held, modality=modality, misregister=False)
    return make_case(task.id, seed, modality=modality, misregister=False)


def _dice(pred, truth, task) -> tuple[dict, str]:
    """Dice per label (and per region) through ``multimodalseg.metrics`` (absent from both maps: left out)."""
    from multimodalseg.metrics import evaluate_images

    result = evaluate_images(pred, truth, task=task)
    labels = {name: m["dice"] for name, m in result["labels"].items() if m.get("empty") != "both"}
    out = {"mean": result["mean"].get("dice"), "labels": labels}
    if "regions" in result:
        out["regions"] = {name: m["dice"] for name, m in result["regions"].items() if m.get("empty") != "both"}
        out["regions_mean"] = result["regions_mean"].get("dice")
    return out, "multimodalseg.metrics"


def _overlay(image, labels, truth, folder: Path, task) -> dict:
    try:
        from multimodalseg.overlay import save_overlay_png
    except ImportError:
        return {}
    return {"overlay": str(save_overlay_png(image, labels, folder / "overlay.png", task=task, title="prediction")),
            "overlay_truth": str(save_overlay_png(image, truth, folder / "overlay_truth.png", task=task,
                                                  title="truth"))}


def _print_table(rows: list[dict], out: Path) -> None:
    print(f"{'task':12s} {'model':26s} {'mean Dice':>9s} {'time s':>7s}  device")
    for r in rows:
        if r["status"] != "ok":
            what = "(no model)" if r["status"] == "no model" else f"{r['model']} (refused)"
            print(f"{r['task']:12s} {what:26s} {'-':>9s} {'-':>7s}  {r.get('reason', '')}".rstrip())
            continue
        dice = "-" if r["mean_dice"] is None else f"{r['mean_dice']:.3f}"
        over = "" if r.get("mean_dice_over") != "regions" else " (mean over regions: " + ", ".join(
            f"{name} {value:.3f}" for name, value in r["region_dice"].items()) + ")"
        print(f"{r['task']:12s} {r['model'] + ' ' + r['version']:26s} {dice:>9s} {r['seconds']:7.1f}  {r['device']}"
              f"{over}")
    if any(r.get("demo_model") for r in rows):
        print("demo models are trained on synthetic data only: not for clinical images", file=sys.stderr)
    print(f"outputs (labels, truth, overlays) in {out}", file=sys.stderr)
