"""Derived numbers (ratios to SegResNet, log-log slope, targets) and the Markdown report.

``python benchmarks/report.py benchmarks/results/latest.json`` rewrites ``latest.md`` from the JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

RSS_TARGET_GIB = 3.0
CLI_OVERHEAD_TARGET_S = 3.0
SLOPE_TARGET = 1.1
TUMOUR_RATIO_TARGET = 0.5
GPU_TARGETS_S = {"brain-tumor": 2.0, "petmr-brain": 5.0}

MAIN_COLUMNS = ("task", "network", "width", "params", "windows", "seconds", "sliding window s", "peak RSS GiB",
                "ratio to SegResNet", "Dice", "device", "load")
STAGE_COLUMNS = ("task", "network", "width", "model load", "load", "preprocess", "sliding window", "postprocess",
                 "write", "total")
VARIANT_COLUMNS = ("task", "network", "change", "before", "after", "before s", "after s", "after/before",
                   "agreement Dice", "note")


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``ratio_segresnet`` (total time) and ``ratio_segresnet_sw`` (sliding window only) per main row."""
    timed = ("ok", "estimated")
    for row in rows:
        ref = next((r for r in rows if r["task"] == row["task"] and r["network"] == "segresnet16"
                    and r["status"] in timed), None)
        ok = ref is not None and row["status"] in timed
        row["ratio_segresnet"] = round(row["seconds"] / ref["seconds"], 3) if ok else None
        sw, ref_sw = row.get("sliding_window_s"), (ref or {}).get("sliding_window_s")
        row["ratio_segresnet_sw"] = round(sw / ref_sw, 3) if ok and sw and ref_sw else None


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Least-squares slope of log(y) against log(x); None for fewer than two usable points."""
    pts = [(a, b) for a, b in zip(x, y) if a and b and a > 0 and b > 0]
    if len(pts) < 2 or len({a for a, _ in pts}) < 2:
        return None
    lx, ly = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    return round(float(np.polyfit(lx, ly, 1)[0]), 3)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 10's CPU targets, each with the measured value and met / not met / not measured."""
    out: list[dict[str, Any]] = []
    rows = [r for r in results["rows"] if r["status"] in ("ok", "estimated")]

    def add(name: str, value: float | None, limit: float, unit: str = "", detail: str = "") -> None:
        met = None if value is None else bool(value <= limit)
        out.append({"target": name, "value": value, "limit": limit, "unit": unit, "met": met, "detail": detail})

    if results.get("mode") == "gpu":  # issue 10: with AMP on an H100, paper widths
        for task, limit in GPU_TARGETS_S.items():
            row = next((r for r in rows if r["task"] == task and r["kind"] == "ours" and r["width"] == "paper"), None)
            add(f"{task} paper width on the GPU", row and row["seconds"], limit, "s", "total predict time, AMP")
    demo = next((r for r in rows if r["task"] == "brain-tumor" and r["kind"] == "ours" and r["width"] == "demo"), None)
    add("brain-tumor demo model time / SegResNet16", demo and demo.get("ratio_segresnet"), TUMOUR_RATIO_TARGET, "×",
        "total predict time, same windows")
    for task in dict.fromkeys(r["task"] for r in rows):
        ours = [r for r in rows if r["task"] == task and r["kind"] in ("ours", "catalog")]
        if ours:
            worst = max(ours, key=lambda r: r["peak_rss_gib"] or 0)
            add(f"{task} peak RSS (our networks)", worst["peak_rss_gib"], RSS_TARGET_GIB, "GiB",
                f"worst: {worst['network']} {worst['width']}")
    cli = results.get("cli") or {}
    add("CLI overhead beyond inference", cli.get("overhead_beyond_inference_s"), CLI_OVERHEAD_TARGET_S, "s",
        "start, imports, model load, reading and writing files")
    scaling = results.get("scaling") or {}
    add("time vs voxels, log-log slope", scaling.get("slope_total"), SLOPE_TARGET, "",
        f"{scaling['network']} on {scaling['task']}, total predict time" if scaling else "")
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.{digits}f}"
    return str(value)


def _params(n: int | None) -> str:
    return "—" if not n else f"{n / 1e6:.2f} M"


def _table(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    cols = list(columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _seconds(row: dict[str, Any]) -> str:
    if row["status"] == "estimated":
        return f"≈{_fmt(float(row['seconds']), 1 if row['seconds'] < 100 else 0)} (est.)"
    if row["status"] != "ok":
        return row["status"]
    return _fmt(row["seconds"], 1)


def _dice(row: dict[str, Any]) -> str:
    d = row.get("dice")
    if not d:
        return "—"
    value = d.get("regions_mean") if d.get("regions_mean") is not None else d.get("mean")
    return _fmt(value, 3)


def _device(row: dict[str, Any]) -> str:
    device = row.get("device") or "—"
    return f"{device} ({row['gpu_peak_gib']:.2f} GiB VRAM)" if row.get("gpu_peak_gib") else device


def markdown(results: dict[str, Any]) -> str:
    """The report README.md can show: machine and load, the main table, stages, speed-ups, scaling, CLI, targets."""
    m, s = results["machine"], results["settings"]
    load = results["load_average"]
    lines = [
        f"# MultimodalSeg inference benchmark ({'GPU' if results['mode'] == 'gpu' else 'CPU'}"
        f"{', quick sizes' if results['quick'] else ''})",
        "",
        f"`{results['command']}` on {results['created']}. Machine: {m['cpu']} ({m['cores']} cores, "
        f"{m['cpu_capability']}, bf16 hardware: {_fmt(m['cpu_bf16'])}{', ' + m['gpu'] if m.get('gpu') else ''}); "
        f"torch {m['torch']}, MONAI {m['monai']}; {s['threads']} threads. Load average (1/5/15 min) at start "
        f"{'/'.join(f'{v:.1f}' for v in load['start'])}, at end "
        f"{'/'.join(f'{v:.1f}' for v in (load.get('end') or load['start']))}; `load` in the table: the 1-minute "
        f"load average before each row (above {m['cores']}: other processes shared the cores).",
        "",
        f"Random weights unless the network is `catalog:`; same windows for every network of a task (the task's "
        f"patch size, overlap {s['overlap']}, Gaussian blending, crop to the foreground); {s['repeats']} timed "
        f"run(s) after {s['warmup']} warm-up(s) per row, best shown; peak RSS "
        f"{'per row in a fresh process' if s['isolated'] else 'of the whole process (not isolated)'}. "
        "Seconds are `Predictor.predict` end to end (read, preprocess, sliding window, postprocess, write). "
        f"A row whose sliding window passes {s.get('max_sliding_window_s') or '∞'} s is stopped and its time "
        "extrapolated from the windows done (est.; its peak RSS is then a lower bound).",
        "",
    ]
    for task, info in results["cases"].items():
        lines.append(f"- {task}: {info['description']} (reference {'×'.join(map(str, info['reference_size_xyz']))}"
                     f" at {'×'.join(f'{v:g}' for v in info['reference_spacing_xyz'])} mm)")
    lines += ["", "## Time, memory and ratio to SegResNet16", ""]
    lines += _table(MAIN_COLUMNS, (
        (r["task"], r["network"], r["width"], _params(r.get("params")), r.get("windows"), _seconds(r),
         _fmt(r.get("sliding_window_s"), 1), _fmt(r.get("peak_rss_gib")),
         _fmt(r.get("ratio_segresnet")), _dice(r), _device(r), _fmt(r["load_average_before"][0], 1))
        for r in results["rows"]))
    ok = [r for r in results["rows"] if r["status"] == "ok"]
    if ok:
        lines += ["", "## Stage timings (s)", ""]
        lines += _table(STAGE_COLUMNS, (
            (r["task"], r["network"], r["width"], _fmt(r.get("model_load_s")),
             *(_fmt(r["stages"].get(k)) for k in ("load", "preprocess", "sliding window", "postprocess", "write",
                                                  "total")))
            for r in ok))
    if results.get("variants"):
        lines += ["", "## Speed-ups, one at a time (after/before < 1: faster)", ""]
        lines += _table(VARIANT_COLUMNS, (
            (v["task"], v["network"], v["change"], v["before"], v["after"], _fmt(v.get("before_s"), 1),
             _fmt(v.get("after_s"), 1), _fmt(v.get("ratio"), 3), _fmt(v.get("agreement_dice"), 3), v.get("note", ""))
            for v in results["variants"]))
    sc = results.get("scaling")
    if sc and sc.get("points"):
        lines += ["", f"## Scaling: {sc['network']} on {sc['task']} (network at each case's own spacing)", ""]
        lines += _table(("case", "reference voxels", "network voxels", "windows", "seconds", "sliding window s",
                         "s per window"), (
            (p["case"], p["reference_voxels"], p.get("network_voxels"), p.get("windows"), _fmt(p.get("seconds"), 1),
             _fmt(p.get("sliding_window_s"), 1),
             _fmt(p["sliding_window_s"] / p["windows"], 1) if p.get("sliding_window_s") and p.get("windows") else None)
            for p in sc["points"]))
        lines += ["", f"Log-log slope against reference voxels: total {_fmt(sc.get('slope_total'), 3)}, sliding "
                      f"window {_fmt(sc.get('slope_sliding_window'), 3)} (target ≤ {SLOPE_TARGET}). Windows come in "
                      "whole numbers, so the slope also reflects how the cropped volume falls on the window grid; "
                      "the seconds per window show whether the work per window stays constant."]
    cli = results.get("cli")
    if cli:
        lines += ["", "## CLI overhead", ""]
        if cli.get("status") == "ok":
            lines.append(
                f"`multimodalseg segment` ({cli['task']}, {cli['network']}): {_fmt(cli['wall_s'], 1)} s wall, its "
                f"predict {_fmt(cli['predict_s'], 1)} s; in-process predict {_fmt(cli.get('inprocess_predict_s'), 1)}"
                f" s. Start + imports + model load: {_fmt(cli['startup_s'], 1)} s; beyond inference (also reading "
                f"and writing files): {_fmt(cli['overhead_beyond_inference_s'], 1)} s (target ≤ "
                f"{CLI_OVERHEAD_TARGET_S:g} s); peak RSS {_fmt(cli.get('peak_rss_gib'))} GiB.")
        else:
            lines.append(f"not measured: {cli.get('error', cli.get('status'))}")
    if results.get("targets"):
        lines += ["", "## Targets (issue 10)", ""]
        lines += _table(("target", "measured", "limit", "met", "detail"), (
            (t["target"], f"{_fmt(t['value'])} {t['unit']}".strip() if t["value"] is not None else "not measured",
             f"≤ {t['limit']:g} {t['unit']}".strip(), t["met"], t["detail"]) for t in results["targets"]))
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/report.py RESULTS.json``: rewrite RESULTS.md from the JSON (after editing this module)."""
    import json
    import sys
    from pathlib import Path

    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python benchmarks/report.py RESULTS.json [...]", file=sys.stderr)
        return 2
    for path in paths:
        results = json.loads(path.read_text())
        add_ratios(results["rows"])
        results["targets"] = targets(results)
        path.with_suffix(".md").write_text(markdown(results))
        print(f"wrote {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
