"""Spine CT-MR fusion at clinical size (issue 18): the shipped fusion demo bundle on the 512x512 spine phantom.

Modes (``--modes``, comma-separated; each runs ``--repeat`` times and the row keeps the fastest run):

- ``strips``: ``inference.fusion.fuse_case`` in this process, the default path (big slices fused strip by strip,
  channels-last, ``nets.cddfuse_strips``);
- ``whole``: the same with ``FusionRunner(strips=False)``: whole 512x512 slices, the reference;
- ``segment``: the whole clinical case as a user runs it, ``multimodalseg segment --task spine`` in a fresh
  process (load, MCF segmentation with the shipped ``spine-mcf-demo``, fusion, writing; no fused-image metrics),
  with the per-stage seconds of its report.

Each row records wall and CPU seconds (CPU: this process's, or the child's for ``segment``) and the load average
before and after: on the shared 2-core machine the wall seconds follow the load, the CPU seconds much less.
Writes ``results/<name>.json`` and ``<name>.md`` after every mode. One torch thread unless ``--threads``.

    python benchmarks/bench_fusion.py --slices 61 --repeat 3          # the issue's 512x512x61 case, all modes
    python benchmarks/bench_fusion.py --modes segment --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def measure_fusion(mode: str, ct, mr, bundle) -> dict:
    from multimodalseg.inference.fusion import FusionRunner, fuse_case

    runner = FusionRunner(bundle, "cpu", strips=mode == "strips")
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    result = fuse_case(runner, ct, mr)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    timings = result.report["timings"]
    slices = int(result.metrics["fused"]["slices"])
    return {"mode": mode, "slices": slices, "fusion_s": timings["fusion"], "s_per_slice": timings["fusion"] / slices,
            "preprocess_s": timings["preprocess"], "metrics_s": timings["metrics"], "total_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "metrics": {k: round(v, 4) for k, v in result.metrics["fused"].items()
                                                if k != "slices"},
            "batch": runner.batch_size(*ct.GetSize()[1::-1]), "load_average_start": round(load, 2),
            "load_average_end": round(os.getloadavg()[0], 2),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def measure_segment(files, threads: int | None) -> dict:
    """``multimodalseg segment --task spine`` on the case in a child process: wall, CPU and the report's stages."""
    with tempfile.TemporaryDirectory() as tmp:
        out, report = Path(tmp) / "seg.nii.gz", Path(tmp) / "seg.json"
        cmd = [sys.executable, "-m", "multimodalseg", "segment", "--task", "spine", "-i",
               f"ct={files.inputs['ct']}", "-i", f"mr={files.inputs['mr']}", "-o", str(out), "--report", str(report),
               "--progress", "none", "--device", "cpu"] + ([] if threads is None else ["--threads", str(threads)])
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        data = json.loads(report.read_text())
    stages = data["timings"]
    fusion = data["spine"]["fusion"]["timings"]["fusion"]
    return {"mode": "segment", "slices": int(files.info["reference_size_xyz"][2]), "fusion_s": fusion,
            "s_per_slice": fusion / files.info["reference_size_xyz"][2], "total_s": round(wall, 2),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            "stages_s": {k: round(v, 2) for k, v in stages.items()}, "load_average_start": round(load, 2),
            "load_average_end": round(os.getloadavg()[0], 2), "peak_rss_gib": round(after.ru_maxrss / 2**20, 2)}


def render(data: dict) -> str:
    rows = data["rows"]
    lines = [f"# Spine fusion at clinical size ({data['case']})", "",
             f"Bundle {data['bundle']}; {data['threads']} thread(s); {data['machine']}; each row the fastest (wall "
             "seconds) of its runs.", "",
             "| mode | slices | fusion s | s/slice | total wall s | total CPU s | EN | MI | SF | VIF | load avg "
             "| peak RSS GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r.get("metrics") or {}
        scores = " | ".join(f"{m[k]:.3f}" if k in m else "-" for k in ("EN", "MI", "SF", "VIF"))
        lines.append(f"| {r['mode']} (best of {r.get('repeat', 1)}) | {r['slices']} | {r['fusion_s']:.1f} | "
                     f"{r['s_per_slice']:.2f} | "
                     f"{r['total_s']:.1f} | {r['cpu_s']:.1f} | {scores} | "
                     f"{r['load_average_start']}-{r['load_average_end']} | {r['peak_rss_gib']} |")
    for r in rows:
        if r["mode"] == "segment":
            lines += ["", "segment stages (s): " + ", ".join(f"{k} {v}" for k, v in r["stages_s"].items())]
    by_mode = {r["mode"]: r for r in rows}
    if {"strips", "whole"} <= set(by_mode):
        s, w = by_mode["strips"], by_mode["whole"]
        change = {k: 100 * (s["metrics"][k] / w["metrics"][k] - 1) for k in ("EN", "MI", "SF", "VIF")}
        lines += ["", f"strips vs whole: fusion {w['fusion_s'] / s['fusion_s']:.2f}x faster (CPU "
                  f"{w['cpu_s'] / s['cpu_s']:.2f}x); metric change "
                  + ", ".join(f"{k} {v:+.3f} %" for k, v in change.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="strips,whole,segment", help="comma-separated: strips, whole, segment")
    p.add_argument("--slices", type=int, default=60, help="axial slices of the 512x512 case (60: the main table's)")
    p.add_argument("--repeat", type=int, default=1, help="runs per mode; the fastest is kept")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (0: the product's defaults; segment then gets no --threads)")
    p.add_argument("--name", default="fusion")
    p.add_argument("--append", action="store_true",
                   help="keep the other modes' rows of an existing results/<name>.json (same case) and replace these")
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "multimodalseg-bench")
    args = p.parse_args(argv)
    import SimpleITK as sitk
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from cases import CLINICAL, write_case
    from multimodalseg.inference.fusion import load_fusion_model

    spec = CLINICAL["spine"]
    files = write_case(type(spec)(spec.task, (args.slices, *spec.shape[1:])), args.workdir)
    ct, mr = sitk.ReadImage(files.inputs["ct"]), sitk.ReadImage(files.inputs["mr"])
    bundle = load_fusion_model(None)  # the shipped spine-fusion-demo
    data = {"case": files.info["description"] + " spine phantom (CT grid 0.3x0.31x3.3 mm)",
            "bundle": f"{bundle.id} {bundle.meta.get('version')}", "threads": args.threads or "product default",
            "machine": f"{os.cpu_count()} cores, {os.uname().machine}", "rows": [], "runs": []}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    modes = [m.strip() for m in args.modes.split(",")]
    previous = out / f"{args.name}.json"
    if args.append and previous.exists():
        old = json.loads(previous.read_text())
        if old.get("case") == data["case"]:
            data["rows"] = [{"repeat": old.get("repeat", 1), **r} for r in old["rows"] if r["mode"] not in modes]
            data["runs"] = [r for r in old.get("runs", []) if r["mode"] not in modes]
    for mode in modes:
        runs = []
        for _ in range(args.repeat):
            if mode == "segment":
                run = measure_segment(files, args.threads or None)
            else:
                run = measure_fusion(mode, ct, mr, bundle)
            print(json.dumps(run), flush=True)
            runs.append(run)
        data["runs"] += runs
        data["rows"].append({**min(runs, key=lambda r: r["total_s"]), "repeat": args.repeat})
        (out / f"{args.name}.json").write_text(json.dumps(data, indent=1) + "\n")
        (out / f"{args.name}.md").write_text(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
