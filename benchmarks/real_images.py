"""Real-image benchmark (issue 15 item 4): every shipped segmentation model on the real images the registries hold.

    python benchmarks/real_images.py [--cache DIR] [--cases ID ...] [--no-readme]   # --cases: the others' rows kept
    python benchmarks/real_images.py --bundle whole-heart=cand.pt --out /tmp/cand --images /tmp/cand --no-readme

``tools/fetch_real_images.py`` fetches and describes the cases (skipped with their reason when offline). Each case
runs through ``multimodalseg segment`` in a subprocess, with the arguments a user gives (``--task``, ``--model``,
``-i ROLE=PATH``, ``-o``, ``--report``; ``--modality ct`` for a CT given to a modality-conditioned model). A role
the case lacks is left out when the task marks it optional; a required one gets an all-zero image on the given
image's grid (what the missing-sequence bundles are trained to see), and the result says so. Scores use fixed
label mappings, the same for every model (nothing per image): ``aseg`` (Dice per task label present in the
reference), ``aal-nuclei`` (12 AAL nuclei mapped to aseg), ``lesion`` (whole tumour vs the mask), ``aurora`` (WT vs
1+2, TC vs 2), ``vertebra`` (1-99 vertebra, 100-199 disc). Without labels: volumes, the share of labelled voxels on
CT bone (HU >= 300; expected for spine, implausible for heart) and the report's ``quality`` entry.

Writes ``benchmarks/results/real_images/{results.json,results.md}``, overlay PNGs ``docs/images/real-<case>.png``
(reference labels above the model's, downsampled) and the README's "Real images" block between its markers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.fspath(ROOT / "MultimodalSeg"))
sys.path.insert(0, os.fspath(ROOT / "tools"))

from multimodalseg.tasks import TaskSpec, get_task  # noqa: E402

CATALOG = ROOT / "MultimodalSeg/multimodalseg/models/catalog.json"
RESULTS = ROOT / "benchmarks/results/real_images"
IMAGES = ROOT / "docs/images"
README = ROOT / "README.md"
START, END = "<!-- real-images:start -->", "<!-- real-images:end -->"
BONE_HU = 300.0
AAL_TO_ASEG = {37: 17, 38: 53, 41: 18, 42: 54, 71: 11, 72: 50, 73: 12, 74: 51, 75: 13, 76: 52, 77: 10, 78: 49}
MODALITY = {"whole-heart": "ct"}  # the cases given to modality-conditioned models are all CT


def segmentation_models(catalog: Path = CATALOG) -> dict[str, list[dict]]:
    """task -> the catalog's segmentation models (fusion and brain-mask bundles run inside segment, by default)."""
    out: dict[str, list[dict]] = {}
    for m in json.loads(catalog.read_text())["models"]:
        if m.get("kind", "segmentation") == "segmentation":
            out.setdefault(m["task"], []).append(m)
    return out


def with_candidates(models: dict[str, list[dict]], specs: Iterable[str]) -> dict[str, list[dict]]:
    """``TASK=PATH`` specs: each bundle file replaces the catalog's models of its task (a candidate scored on the
    same cases before it ships). A bad spec or bundle is a ValueError naming it."""
    from multimodalseg.bundles import load_bundle
    from multimodalseg.errors import UserError

    out = dict(models)
    for spec in specs:
        task_id, sep, path = spec.partition("=")
        if not sep or not task_id or not path:
            raise ValueError(f"--bundle {spec!r}: expected TASK=PATH")
        try:
            meta = load_bundle(path, task=task_id).meta
        except UserError as exc:
            raise ValueError(f"--bundle {spec!r}: {exc}") from None
        out[task_id] = [{"id": meta["id"], "version": meta["version"], "path": os.fspath(Path(path).resolve())}]
    return out


def plan_inputs(task: TaskSpec, given: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(roles to pass, roles that need a zero stand-in): optional missing roles are left out."""
    missing = [i.role for i in task.inputs if i.role not in given and i.required]
    return dict(given), missing


def zero_like(path: str, out: Path) -> Path:
    """An all-zero float image on ``path``'s grid (a stand-in for a required role the case lacks)."""
    from multimodalseg import io

    image = io.read_image(path)
    zero = sitk.Image(image.GetSize(), sitk.sitkFloat32)
    zero.CopyInformation(image)
    out.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(zero, os.fspath(out), useCompression=True)
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two masks; None when both are empty (nothing to score)."""
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else round(2.0 * int((a & b).sum()) / total, 4)


def region_values(task: TaskSpec, region: str) -> list[int]:
    names = next(r.labels for r in task.regions if r.name == region)
    return [lab.value for lab in task.labels if lab.name in names]


def score(scoring: str, pred: np.ndarray, ref: np.ndarray, task: TaskSpec) -> dict[str, Any]:
    """Dice per scored class and their mean, under the case's fixed label mapping (pred: task label values)."""
    per: dict[str, float | None] = {}
    if scoring == "aseg":
        present = set(np.unique(ref).tolist())
        per = {lab.name: dice(pred == lab.value, ref == lab.value) for lab in task.labels if lab.value in present}
    elif scoring == "aal-nuclei":
        names = {lab.value: lab.name for lab in task.labels}
        per = {names.get(v, str(v)): dice(pred == v, ref == a) for a, v in AAL_TO_ASEG.items()}
    elif scoring == "lesion":
        per = {"WT": dice(np.isin(pred, region_values(task, "WT")), ref > 0)}
    elif scoring == "aurora":
        per = {"WT": dice(np.isin(pred, region_values(task, "WT")), ref > 0),
               "TC": dice(np.isin(pred, region_values(task, "TC")), ref == 2)}
    elif scoring == "vertebra":
        classes = {"vertebra": (1, (ref > 0) & (ref < 100)), "intervertebral disc": (2, (ref >= 100) & (ref < 200))}
        per = {name: dice(pred == v, m) for name, (v, m) in classes.items() if m.any()}
    else:
        raise ValueError(f"unknown scoring '{scoring}'")
    scored = [v for v in per.values() if v is not None]
    return {"dice": per, "dice_mean": round(float(np.mean(scored)), 4) if scored else None, "n_scored": len(scored)}


def display_reference(scoring: str, ref: np.ndarray, task: TaskSpec) -> np.ndarray:
    """The scored reference in the task's values for the overlay's colours (lesion -> NCR/NET colour, oedema -> ED;
    aseg: only the task's labels, as scored)."""
    if scoring == "aseg":
        return np.where(np.isin(ref, [lab.value for lab in task.labels]), ref, 0).astype(np.uint16)
    if scoring == "aal-nuclei":
        out = np.zeros(ref.shape, np.uint16)
        for a, v in AAL_TO_ASEG.items():
            out[ref == a] = v
        return out
    if scoring == "lesion":
        return (ref > 0).astype(np.uint16)
    if scoring == "aurora":
        return np.select([ref == 2, ref == 1], [1, 2], 0).astype(np.uint16)
    if scoring == "vertebra":
        return np.select([(ref > 0) & (ref < 100), (ref >= 100) & (ref < 200)], [1, 2], 0).astype(np.uint16)
    return ref.astype(np.uint16)


def on_grid(image: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """A label map resampled (nearest) onto ``grid`` when the grids differ."""
    same = (image.GetSize() == grid.GetSize() and np.allclose(image.GetOrigin(), grid.GetOrigin(), atol=1e-3)
            and np.allclose(image.GetSpacing(), grid.GetSpacing(), atol=1e-4)
            and np.allclose(image.GetDirection(), grid.GetDirection(), atol=1e-4))
    return image if same else sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


def events(stdout: str) -> list[dict]:
    out = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


def run_segment(case: dict, model: dict, work: Path, timeout: float) -> dict[str, Any]:
    """One ``multimodalseg segment`` subprocess; rc, wall time, warnings, the error line and the report."""
    task = get_task(case["task"])
    inputs, missing = plan_inputs(task, case["inputs"])
    grid_from = inputs.get(task.reference_role) or next(iter(inputs.values()))
    for role in missing:
        inputs[role] = os.fspath(zero_like(grid_from, work / f"zeros_{role}.nii.gz"))
    out, report = work / "labels.nii.gz", work / "report.json"
    cmd = [sys.executable, "-m", "multimodalseg", "segment", "--task", task.id,
           "--model", model.get("path", model["id"]),
           *[a for r, p in inputs.items() for a in ("-i", f"{r}={p}")], "-o", os.fspath(out),
           "--report", os.fspath(report), "--progress", "json"]
    if task.id in MODALITY:
        cmd += ["--modality", MODALITY[task.id]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.fspath(ROOT / "MultimodalSeg"), os.fspath(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=work)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = None, exc.stdout or "", f"timed out after {timeout:.0f} s"
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
    wall = round(time.perf_counter() - t0, 1)
    evs = events(stdout)
    error = next((e["message"] for e in evs if e.get("event") == "error"), None)
    if rc != 0 and error is None:
        error = (stderr.strip().splitlines() or ["no output"])[-1][:300]
    error = error.replace(f"{ROOT}{os.sep}", "") if error else error  # repository paths, as a user reads them
    result: dict[str, Any] = {
        "model": f"{model['id']} {model['version']}", "command": " ".join(_short(cmd)), "rc": rc, "wall_s": wall,
        "stand_ins": {r: "zeros" for r in missing}, "error": error,
        "warnings": [e.get("message") for e in evs if e.get("event") == "warning"]}
    if rc == 0 and report.exists():
        rep = json.loads(report.read_text())
        result.update(seconds=rep.get("timings", {}).get("total"), volumes_ml=rep.get("volumes_ml"),
                      regions_ml=rep.get("regions_ml"), quality=rep.get("quality"), labels_path=os.fspath(out),
                      skull_strip=rep.get("skull_strip"))
    return result


def _short(cmd: Iterable[str]) -> list[str]:
    """The command as a user types it: ``multimodalseg`` and file names, not absolute paths."""
    out = ["multimodalseg"]
    for a in list(cmd)[3:]:
        role, sep, path = a.partition("=")
        out.append(f"{role}={Path(path).name}" if sep and "/" in path else Path(a).name if "/" in a else a)
    return out


def plausibility(case: dict, labels: sitk.Image, task: TaskSpec) -> dict[str, Any]:
    """Share of labelled voxels on CT bone (the reference input when it is a CT)."""
    from multimodalseg import io

    ref_role = task.reference_role
    spec = next(i for i in task.inputs if i.role == ref_role)
    if "CT" not in spec.modality.upper().split("|") or ref_role not in case["inputs"]:
        return {}
    ct = sitk.GetArrayFromImage(io.read_image(case["inputs"][ref_role]))
    lab = sitk.GetArrayViewFromImage(labels) > 0
    if not lab.any() or ct.shape != lab.shape:
        return {"labelled_on_bone": None}
    return {"labelled_on_bone": round(float((ct[lab] >= BONE_HU).mean()), 4)}


def overlay(case: dict, task: TaskSpec, labels: sitk.Image | None, ref: sitk.Image | None, path: Path,
            model: str, panel: int = 120) -> Path:
    """Reference labels (when any) above the model's labels, three views through one point, quantised PNG."""
    from multimodalseg import io
    from multimodalseg.overlay import _centre, save_overlay_png
    from PIL import Image

    role = task.reference_role if task.reference_role in case["inputs"] else next(iter(case["inputs"]))
    image = io.read_image(case["inputs"][role])
    point = _centre(image, ref if ref is not None else labels)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, lab in (("reference", ref), (model, labels)):
            if name == "reference" and lab is None:
                continue
            p = Path(tmp) / f"{len(rows)}.png"
            title = f"{case['id']} ({role}): {name}" + ("" if lab is not None else " - no output")
            save_overlay_png(image, lab, p, task=task, title=title, panel_size=panel, point=point)
            rows.append(Image.open(p).convert("RGB"))
        canvas = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + 2 * (len(rows) - 1)))
        y = 0
        for r in rows:
            canvas.paste(r, (0, y))
            y += r.height + 2
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def benchmark_case(case: dict, models: list[dict], work: Path, images: Path, timeout: float) -> list[dict]:
    from multimodalseg import io

    task = get_task(case["task"])
    ref_img = io.read_image(case["reference"]) if case.get("reference") else None  # .mgz too
    rows = []
    for model in models:
        mwork = work / case["id"] / model["id"]
        mwork.mkdir(parents=True, exist_ok=True)
        res = run_segment(case, model, mwork, timeout)
        labels = sitk.ReadImage(res.pop("labels_path")) if "labels_path" in res else None
        ref_on = None
        if ref_img is not None and labels is not None:
            ref_on = on_grid(ref_img, labels)
            res.update(score(case["scoring"], sitk.GetArrayFromImage(labels),
                             sitk.GetArrayFromImage(ref_on).astype(np.int64), task))
        if labels is not None:
            res.update(plausibility(case, labels, task))
        shown = None
        if ref_img is not None:
            ref_grid = ref_on if ref_on is not None else ref_img
            shown = sitk.GetImageFromArray(display_reference(case["scoring"],
                                                             sitk.GetArrayFromImage(ref_grid).astype(np.int64), task))
            shown.CopyInformation(ref_grid)
        suffix = "" if len(models) == 1 else f"-{model['id']}"
        png = overlay(case, task, labels, shown, images / f"real-{case['id']}{suffix}.png", model["id"])
        res["overlay"] = os.fspath(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else os.fspath(png)
        rows.append({"case": case["id"], "task": case["task"], "inputs": sorted(case["inputs"]),
                     "source": case["source"], "notes": case["notes"], "scoring": case["scoring"], **res})
        print(f"{case['id']} / {model['id']}: rc {res['rc']}, {res['wall_s']} s, Dice {res.get('dice_mean')}"
              + (f", error: {res['error']}" if res.get("error") else ""), flush=True)
    return rows


def _fmt_dice(row: dict) -> str:
    if row.get("rc") != 0:
        return "refused" if row.get("rc") == 2 else "failed"
    if row.get("dice_mean") is None:
        return "no labels"
    parts = [f"{k} {v:.3f}" for k, v in row["dice"].items() if v is not None] if len(row["dice"]) <= 3 else []
    mean = f"**{row['dice_mean']:.3f}** (mean of {row['n_scored']})"
    return mean if not parts else ", ".join(parts)


def _fmt_result(row: dict) -> str:
    bits = []
    if row.get("stand_ins"):
        bits.append("zeros for " + ", ".join(row["stand_ins"]))
    if row.get("error"):
        bits.append(f"error: {row['error']}")
    if row.get("labelled_on_bone") is not None:
        bits.append(f"{100 * row['labelled_on_bone']:.0f}% of labelled voxels on bone")
    vols = row.get("volumes_ml") or {}
    if row.get("task") == "whole-heart" and vols:
        bits.append("volumes mL " + ", ".join(f"{k} {v:.0f}" for k, v in vols.items()))
    regions = row.get("regions_ml") or {}
    if "WT" in regions:
        bits.append(f"WT {regions['WT']:.0f} mL")
    strip = row.get("skull_strip") or {}
    if strip.get("applied"):
        bits.append(f"skull-stripped first ({strip['model']}: brain {strip['brain_ml']:.0f} mL of "
                    f"{strip['nonzero_ml']:.0f} mL non-zero)")
    findings = (row.get("quality") or {}).get("findings") or []
    if findings:
        bits.append("quality warnings: " + ", ".join(_finding(f) for f in findings))
    return "; ".join(bits).replace("|", "/")


def _finding(f: dict) -> str:
    if f.get("check") == "volume":
        return f"{f['label']} {f['volume_ml']:.1f} mL"
    check = "whole head" if f["check"] == "skull_stripped" else f["check"].replace("_", " ")  # the failed check
    return check + (f" ({f['role']})" if f.get("role") else "")


def markdown(rows: list[dict], skipped: list[dict], header: bool = True) -> str:
    lines = ["| case | task | inputs given | model | Dice | seconds | result |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        secs = f"{r['wall_s']:.0f}" + (f" ({r['seconds']:.0f} in segment)" if r.get("seconds") else "")
        lines.append(f"| {r['case']} | {r['task']} | {', '.join(r['inputs'])} | {r['model']} | {_fmt_dice(r)} | "
                     f"{secs} | {_fmt_result(r)} |")
    for s in skipped:
        lines.append(f"| {s['id']} | | | | skipped | | {s['skipped']} |")
    return "\n".join(lines) + "\n"


def pictures(rows: list[dict], per_row: int = 2) -> str:
    cells = [f"![{r['case']}]({r['overlay']})" for r in rows if r.get("overlay")]
    out = []
    for i in range(0, len(cells), per_row):
        chunk = cells[i:i + per_row]
        if i == 0:
            out += ["| " + " | ".join([""] * per_row) + " |", "|" + "---|" * per_row]
        out.append("| " + " | ".join(chunk + [""] * (per_row - len(chunk))) + " |")
    return "\n".join(out) + "\n"


def replace_block(text: str, block: str) -> str:
    """Put ``block`` between the README markers (appended after the phantom table's section when absent)."""
    wrapped = f"{START}\n{block.rstrip()}\n{END}"
    if START in text and END in text:
        return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _m: wrapped, text, flags=re.S)
    anchor = "\n### Brain tumour\n"
    if anchor in text:
        return text.replace(anchor, f"\n{wrapped}\n{anchor}", 1)
    return text.rstrip() + "\n\n" + wrapped + "\n"


def write_outputs(rows: list[dict], skipped: list[dict], meta: dict, out: Path, *, readme: bool) -> None:
    """results.md (table and pictures) and, with ``readme``, the README's Real images block."""
    table = markdown(rows, skipped) + (f"\n{meta['note']}\n" if meta.get("note") else "")
    seen: dict[str, str] = {}
    for r in rows:
        seen.setdefault(r["case"], f"- `{r['case']}` ({r['source']}): {r['notes']}")
    table += "\nCases:\n\n" + "\n".join(seen.values()) + "\n"
    md_rows = [{**r, "overlay": os.path.relpath(ROOT / r["overlay"], out)} for r in rows if r.get("overlay")]
    (out / "results.md").write_text(f"# Real images ({meta['date']}, load {meta['load_average']})\n\n"
                                    f"{table}\n{pictures(md_rows)}")
    if readme:
        intro = (f"### Real images\n\n`python benchmarks/real_images.py` ({meta['date'][:10]}; fetches with "
                 "`tools/fetch_real_images.py`, details in `benchmarks/results/real_images/results.md`): every "
                 "shipped model on real images from PyPI/Debian packages and `../shared/data/real-mr`, one "
                 "`multimodalseg segment` run per case, fixed label mappings (nothing tuned per image). Pictures: "
                 "reference labels (top, where there are any) and the model's labels (bottom).\n\n")
        README.write_text(replace_block(README.read_text(), intro + table + "\n" + pictures(rows)))


def main(argv: list[str] | None = None) -> int:
    from fetch_real_images import DEFAULT_CACHE, DEFAULT_SHARED, fetch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--cases", nargs="*", help="case ids (default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--images", type=Path, default=IMAGES)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per segment run")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite the README's Real images block")
    ap.add_argument("--render-only", action="store_true", help="only re-render results.md/README from results.json")
    ap.add_argument("--bundle", action="append", default=[], metavar="TASK=PATH",
                    help="score this bundle file instead of the catalog's models of TASK (repeatable; with --out, "
                         "--images and --no-readme, so the shipped results stay)")
    ap.add_argument("--note", help="a line printed under the table (e.g. an earlier run's numbers), kept in the JSON")
    args = ap.parse_args(argv)

    if args.render_only:  # rewrite results.md and the README block from results.json, no model runs
        saved = json.loads((args.out / "results.json").read_text())
        meta = {k: saved.get(k) for k in ("date", "cpu_count", "load_average", "note")}
        meta["note"] = args.note if args.note is not None else meta["note"]
        if args.note is not None:
            (args.out / "results.json").write_text(json.dumps({**saved, "note": args.note}, indent=1))
        write_outputs(saved["results"], saved["skipped"], meta, args.out, readme=not args.no_readme)
        return 0
    cases = fetch(args.cache, args.shared)
    skipped = [c for c in cases if "skipped" in c]
    runnable = [c for c in cases if "skipped" not in c and (not args.cases or c["id"] in args.cases)]
    for s in skipped:
        print(f"skipped {s['id']}: {s['skipped']}")
    if not runnable:
        print("no real images available (see the reasons above); nothing run")
        return 0
    try:
        models = with_candidates(segmentation_models(), args.bundle)
    except ValueError as exc:
        print(f"real_images.py: {exc}", file=sys.stderr)
        return 2
    rows: list[dict] = []
    for case in runnable:
        rows += benchmark_case(case, models.get(case["task"], []), args.cache / "runs", args.images,
                               args.timeout)
    previous = args.out / "results.json"
    note = args.note
    if args.cases and previous.exists():  # a partial run keeps the other cases' rows, and the note unless given
        saved = json.loads(previous.read_text())
        note = saved.get("note") if note is None else note
        ran = {c["id"] for c in runnable}
        rows = [r for r in saved["results"] if r["case"] not in ran] + rows
        order = {c["id"]: i for i, c in enumerate(cases)}
        rows.sort(key=lambda r: order.get(r["case"], len(order)))  # stable: a case's models stay in order
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
            "load_average": [round(v, 1) for v in os.getloadavg()], "note": note}
    (args.out / "results.json").write_text(json.dumps({**meta, "results": rows, "skipped": skipped}, indent=1))
    write_outputs(rows, skipped, meta, args.out, readme=not args.no_readme)
    print(f"wrote {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
