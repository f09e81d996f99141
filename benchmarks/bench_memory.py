"""Peak memory of one PET/MR case at 2×256³ (issue 18 item 7): ``Predictor.predict`` in a fresh process per row.

    python benchmarks/bench_memory.py                 # the 2x256^3 row: streamed stitching vs full probabilities
    python benchmarks/bench_memory.py --size 96       # smaller, for a quick look
    python benchmarks/bench_memory.py --label before  # one row, appended to results/memory.json under this label

The case is the PET/MR phantom (``make_case``) at 256³ and 1 mm, written as ``.nii.gz``; the network is
``dual_uxnet`` at its demo width with untrained weights (seed 0; memory does not depend on the weights), saved as a
temporary bundle with the task's window (96³, overlap 0.25, Gaussian), network spacing 1 mm, fp32 on the CPU, one
thread. Rows: ``streamed`` (the predictor's default: labels reduced slab by slab, ``inference.engine``) and
``full`` (``keep_probabilities=True``: the whole ``46 × Z × Y × X`` float32 probability volume is held, as every
case was before). Peak RSS is the child's ``ru_maxrss`` (imports included); the labels of both rows are compared
voxel by voxel. Results: ``results/memory.json`` and ``results/memory.md``.
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
RESULTS = HERE / "results"


def _child(args: argparse.Namespace) -> None:
    import numpy as np
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(1)
    from multimodalseg.bundles import load_bundle
    from multimodalseg.inference.predictor import Predictor

    predictor = Predictor(load_bundle(args.bundle), "cpu", keep_probabilities=args.mode == "full")
    t0 = time.perf_counter()
    result = predictor.predict({"pet": args.work / "pet.nii.gz", "t1": args.work / "t1.nii.gz"})
    seconds = time.perf_counter() - t0
    np.save(args.work / f"labels-{args.mode}.npy", sitk.GetArrayFromImage(result.labels))
    print(json.dumps({"seconds": round(seconds, 1), "windows": result.report["settings"].get("windows"),
                      "sliding_window_s": result.timings.get("sliding window")}))


def _prepare(work: Path, size: int) -> Path:
    import torch
    from multimodalseg import io
    from multimodalseg.bundles import save_bundle
    from multimodalseg.nets import build_network
    from multimodalseg.nets.dual_uxnet import DEMO_CONFIG
    from multimodalseg.phantoms import make_case
    from multimodalseg.tasks import get_task

    task = get_task("petmr-brain")
    case = make_case("petmr-brain", 0, shape=(size, size, size), spacing=(1.0, 1.0, 1.0), misregister=False)
    for role, image in case.images.items():
        io.write_image(image, work / f"{role}.nii.gz")
    config = {**DEMO_CONFIG, "spatial_dims": 3, "in_channels": 2, "out_channels": task.num_classes}
    torch.manual_seed(0)
    net = build_network("dual_uxnet", **config)
    path = work / "petmr-demo-width-untrained.pt"
    save_bundle(path, net.state_dict(), {
        "id": "petmr-memory-bench", "version": "0", "task": task.id, "demo": True,
        "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in task.labels],
        "network": {"name": "dual_uxnet", "config": config},
        "preprocessing": {"spacing": [1.0, 1.0, 1.0], "patch_size": list(task.patch_size),
                          "normalization": {i.role: i.normalization for i in task.inputs}, "roles": list(task.roles)},
        "inference": {"overlap": 0.25},
    })
    return path


def _run(mode: str, bundle: Path, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--bundle", os.fspath(bundle), "--work", os.fspath(work)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{mode} run failed")
    row = json.loads(out.strip().splitlines()[-1])
    return {"mode": mode, "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3), "wall_s": round(time.perf_counter()
                                                                                                  - start, 1), **row}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256, help="cube edge in voxels at 1 mm (default 256)")
    p.add_argument("--modes", default="streamed,full", help="rows to run (streamed, full)")
    p.add_argument("--label", default="", help="a name for this run in the results (e.g. before/after)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--bundle", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.mode = args.child
        _child(args)
        return 0
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="multimodalseg-memory-") as tmp:
        work = Path(tmp)
        bundle = _prepare(work, args.size)
        rows = [_run(mode, bundle, work) for mode in args.modes.split(",")]
        labels = {r["mode"]: np.load(work / f"labels-{r['mode']}.npy") for r in rows}
        same = None if len(labels) < 2 else bool(np.array_equal(*labels.values()))
    entry = {"label": args.label, "case": f"petmr-brain 2x{args.size}^3 @ 1 mm, dual_uxnet demo width (untrained), "
             "96^3 windows, overlap 0.25, 1 thread", "rows": rows, "labels_identical": same,
             "self_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": list(os.getloadavg())}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "memory.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append(entry)
    path.write_text(json.dumps(runs, indent=2) + "\n")
    lines = ["| run | case | mode | peak RSS GiB | predict s | labels identical |", "|---|---|---|---|---|---|"]
    for run in runs:
        for r in run["rows"]:
            lines.append(f"| {run['label'] or run['date']} | {run['case']} | {r['mode']} | {r['peak_rss_gib']} | "
                         f"{r['seconds']} | {run['labels_identical']} |")
    (RESULTS / "memory.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
