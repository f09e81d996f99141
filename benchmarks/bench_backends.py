"""Eager PyTorch against torch.compile and ONNX Runtime for a catalog model's windows on the CPU (issue 10).

The question for a one-shot ``multimodalseg segment`` process: does the other backend pay back its start-up
(compilation, export + session creation) within one case? For each backend: start-up seconds, seconds per window
(after a warm-up), the windows of one case needed to break even against eager, and the largest absolute
difference of the logits from eager (results must not change).

    python benchmarks/bench_backends.py [--model brain-tumor-demo] [--windows 12] [--threads 1] [--json out.json]

ONNX Runtime is not a dependency: ``pip install onnxruntime onnx`` to include it (the row is skipped otherwise).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _timed(fn, x: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn(x)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(x)
    return (time.perf_counter() - start) / repeats, out


def _eager(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, callable]:
    return 0.0, model


def _compiled(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, callable]:
    start = time.perf_counter()
    compiled = torch.compile(model)
    compiled(x)  # compilation happens on the first call
    return time.perf_counter() - start, compiled


def _onnxruntime(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, callable]:
    import onnxruntime as ort

    start = time.perf_counter()
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    setup = time.perf_counter() - start

    def run(t: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"x": t.numpy()})[0])

    return setup, run


BACKENDS = {"eager": _eager, "torch.compile": _compiled, "onnxruntime": _onnxruntime}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="brain-tumor-demo", help="catalog model id")
    p.add_argument("--windows", type=int, default=12, help="windows of one case (catalog tumour model: 12)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from multimodalseg import catalog
    from multimodalseg.bundles import load_bundle
    from multimodalseg.inference.onednn import route_convolutions

    entry = next(e for e in catalog.entries() if e.id == args.model)
    bundle = load_bundle(entry.local_path())
    patch = bundle.meta["preprocessing"]["patch_size"]
    channels = bundle.meta["network"]["config"]["in_channels"]
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, channels, *patch[::-1])).astype(np.float32))
    rows = []
    reference = None
    for name, make in BACKENDS.items():
        model = bundle.build_model().eval()
        if name == "eager":
            route_convolutions(model)  # what the Predictor runs
        try:
            with torch.inference_mode() if name != "onnxruntime" else torch.no_grad():
                setup, fn = make(model, x)
                per_window, out = _timed(fn, x, args.repeats)
        except Exception as exc:  # a backend missing here is a row, not a crash
            rows.append({"backend": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"})
            continue
        if reference is None:
            reference = (per_window, out)
        gain = reference[0] - per_window
        rows.append({"backend": name, "setup_s": round(setup, 2), "per_window_s": round(per_window, 4),
                     "case_s": round(setup + args.windows * per_window, 2),
                     "break_even_windows": None if gain <= 0 else round(setup / gain, 1),
                     "max_abs_diff": float((out - reference[1]).abs().max())})
    print(f"{args.model}: windows {patch} (ITK order), {args.windows} per case, {args.threads} thread(s)")
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "patch": patch, "windows": args.windows,
                                         "threads": args.threads, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
