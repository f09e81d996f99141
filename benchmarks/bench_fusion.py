"""Spine CT-MR fusion at clinical size (issue 18): the shipped fusion demo bundle on the 512x512x60 spine phantom.

Runs ``inference.fusion.fuse_case`` (MR onto the CT grid, scaling, slice-wise CDDFuse, EN/MI/SF/VIF) in this process,
once per mode: ``strips`` (the default: big slices fused strip by strip, ``nets.cddfuse_strips``) and ``whole``
(``FusionRunner(strips=False)``: whole 512x512 slices, as before). Writes ``results/fusion.json`` and ``fusion.md``
(``--name``) after every mode. One torch thread unless ``--threads``.

    python benchmarks/bench_fusion.py                      # both modes, all 60 slices (about 6 min on 2 quiet cores)
    python benchmarks/bench_fusion.py --modes strips
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def measure(mode: str, ct, mr, bundle) -> dict:
    from multimodalseg.inference.fusion import FusionRunner, fuse_case

    runner = FusionRunner(bundle, "cpu", strips=mode == "strips")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = fuse_case(runner, ct, mr)
    wall = time.perf_counter() - t0
    timings = result.report["timings"]
    slices = int(result.metrics["fused"]["slices"])
    return {"mode": mode, "slices": slices, "fusion_s": timings["fusion"], "s_per_slice": timings["fusion"] / slices,
            "preprocess_s": timings["preprocess"], "metrics_s": timings["metrics"], "total_s": round(wall, 2),
            "metrics": {k: round(v, 4) for k, v in result.metrics["fused"].items() if k != "slices"},
            "batch": runner.batch_size(*ct.GetSize()[1::-1]), "load_average_start": round(load, 2),
            "load_average_end": round(os.getloadavg()[0], 2),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def render(data: dict) -> str:
    rows = data["rows"]
    lines = [f"# Spine fusion at clinical size ({data['case']})", "",
             f"Bundle {data['bundle']}; {data['threads']} thread(s); {data['machine']}.", "",
             "| mode | slices | fusion s | s/slice | metrics s | total s | EN | MI | SF | VIF | load avg "
             "| peak RSS GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        lines.append(f"| {r['mode']} | {r['slices']} | {r['fusion_s']:.1f} | {r['s_per_slice']:.2f} | "
                     f"{r['metrics_s']:.1f} | {r['total_s']:.1f} | {m['EN']:.3f} | {m['MI']:.3f} | {m['SF']:.3f} | "
                     f"{m['VIF']:.3f} | {r['load_average_start']}-{r['load_average_end']} | {r['peak_rss_gib']} |")
    by_mode = {r["mode"]: r for r in rows}
    if {"strips", "whole"} <= set(by_mode):
        s, w = by_mode["strips"], by_mode["whole"]
        change = {k: 100 * (s["metrics"][k] / w["metrics"][k] - 1) for k in ("EN", "MI", "SF", "VIF")}
        lines += ["", f"strips vs whole: fusion {w['fusion_s'] / s['fusion_s']:.2f}x faster; metric change "
                  + ", ".join(f"{k} {v:+.3f} %" for k, v in change.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="strips,whole", help="comma-separated: strips, whole")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="fusion")
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "multimodalseg-bench")
    args = p.parse_args(argv)
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(args.threads)
    from cases import CLINICAL, write_case
    from multimodalseg.inference.fusion import load_fusion_model

    files = write_case(CLINICAL["spine"], args.workdir)
    ct, mr = sitk.ReadImage(files.inputs["ct"]), sitk.ReadImage(files.inputs["mr"])
    bundle = load_fusion_model(None)  # the shipped spine-fusion-demo
    data = {"case": files.info["description"] + " spine phantom (CT grid 0.3x0.31x3.3 mm)",
            "bundle": f"{bundle.id} {bundle.meta.get('version')}", "threads": args.threads,
            "machine": f"{os.cpu_count()} cores, {os.uname().machine}", "rows": []}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    for mode in args.modes.split(","):
        row = measure(mode.strip(), ct, mr, bundle)
        print(json.dumps(row), flush=True)
        data["rows"].append(row)
        (out / f"{args.name}.json").write_text(json.dumps(data, indent=1) + "\n")
        (out / f"{args.name}.md").write_text(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
