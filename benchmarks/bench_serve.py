"""The warm worker (``multimodalseg serve``) against a cold ``multimodalseg segment`` process, brain tumour.

    python benchmarks/bench_serve.py [--jobs 3] [--threads 1] [--out benchmarks/results/serve]

One phantom BraTS case (``multimodalseg phantom``, default size) is segmented with the shipped demo model:
once by a fresh ``python -m multimodalseg segment`` process (what every Apply cost before), then ``--jobs`` times
by one ``serve`` process. Per run: wall time from starting the process / writing the job line to the ``finished``
event, the run's own reported time (``timings.total``: read, preprocess, network, postprocess, write), and the
overhead = wall - reported. Target (issue 17): the second worker job's overhead is at most 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = "brain-tumor"


def segment_args(case: Path, out: Path, threads: int, device: str = "cpu") -> list[str]:
    name = case.name
    inputs = [f"{role}={case / f'{name}_{role}.nii.gz'}" for role in ("flair", "t1", "t1ce", "t2")]
    args = ["--task", TASK, "-o", str(out), "--device", device, "--threads", str(threads), "--progress", "json"]
    for item in inputs:
        args += ["-i", item]
    return args


def finished_event(lines) -> dict:
    for line in lines:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") in ("finished", "error"):
            return event
    raise RuntimeError("no finished event")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the model moves there once per job)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve"))
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    work = Path(tempfile.mkdtemp(prefix="mmseg-bench-serve-"))
    subprocess.run([sys.executable, "-m", "multimodalseg", "phantom", "--task", TASK, "--out", str(work / "data"),
                    "--n", "1"], check=True, capture_output=True, env=env)
    case = next(p for p in (work / "data").iterdir() if p.is_dir())
    rows = []

    t0 = time.perf_counter()
    cold = subprocess.run([sys.executable, "-m", "multimodalseg", "segment",
                           *segment_args(case, work / "cold.nii.gz", args.threads, args.device)],
                          capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t0
    total = finished_event(cold.stdout.splitlines())["timings"]["total"]
    rows.append({"run": "cold CLI process", "wall_s": round(wall, 3), "reported_s": total,
                 "overhead_s": round(wall - total, 3),
                 "timings": finished_event(cold.stdout.splitlines())["timings"]})

    t0 = time.perf_counter()
    serve = subprocess.Popen([sys.executable, "-m", "multimodalseg", "serve"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        for i in range(1, args.jobs + 1):
            job = {"id": f"j{i}", "command": "segment",
                   "args": segment_args(case, work / f"warm{i}.nii.gz", args.threads, args.device)}
            if i > 1:
                t0 = time.perf_counter()
            serve.stdin.write(json.dumps(job) + "\n")
            serve.stdin.flush()
            event = finished_event(iter(serve.stdout.readline, ""))
            wall = time.perf_counter() - t0
            if event["event"] != "finished":
                raise RuntimeError(event)
            total = event["timings"]["total"]
            rows.append({"run": f"worker job {i}" + (" (incl. worker start)" if i == 1 else ""),
                         "wall_s": round(wall, 3), "reported_s": total, "overhead_s": round(wall - total, 3),
                         "timings": event["timings"]})  # per stage: read, preprocess, infer, ... (s)
    finally:
        serve.stdin.close()
        serve.wait(timeout=60)

    second = rows[2]["overhead_s"] if len(rows) > 2 else None
    result = {"task": TASK, "case": case.name, "threads": args.threads, "device": args.device,
              "machine": platform.node(),
              "python": platform.python_version(), "load_average": os.getloadavg()[0], "rows": rows,
              "second_job_overhead_s": second, "target_s": 1.0,
              "meets_target": second is not None and second <= 1.0}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| run | wall (s) | reported by the run (s) | overhead (s) |", "|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['wall_s']:.2f} | {r['reported_s']:.2f} | {r['overhead_s']:.2f} |" for r in rows]
    lines.append(f"\nSecond worker job overhead {second:.2f} s (target <= 1 s); load average "
                 f"{result['load_average']:.1f}, {args.threads} thread(s).")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
