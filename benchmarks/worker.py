"""One benchmark configuration: load a bundle, run ``Predictor.predict`` on a case, report timings as JSON.

``run.py`` starts this file in a fresh process per configuration (``python benchmarks/worker.py CONFIG.json``), so
the process's peak RSS belongs to that configuration alone. The same :func:`run_config` also runs in-process
(``run.py --in-process``, used by the smoke test), where RSS is the whole process's and marked as not isolated.

Config keys: ``task``, ``model`` (bundle path or catalog id), ``inputs`` (role -> file), ``output`` (label map to
write: the ``write`` stage), ``label`` and ``dice`` (Dice against the phantom label), ``modality``, ``device``,
``precision``, ``threads``, ``crop``, ``sw_batch_size``, ``inference_mode``, ``channels_last``, ``whole_volume``,
``report_options`` (the task's report extras, e.g. ``{"fusion": False}`` for spine), ``onednn`` (False:
PyTorch's own conv kernel choice instead of ``inference.onednn``'s routing, the "before" of that change),
``repeats``, ``warmup``, ``max_sliding_window_s`` (stop a run whose sliding window takes longer and extrapolate its
time from the fraction of windows done: status ``estimated``), ``result`` (where the JSON goes as a script).

Two speed-up options are applied here without touching the engine:
    ``inference_mode=False`` swaps ``torch.inference_mode`` for ``torch.no_grad`` (the "before" of that change);
    ``whole_volume=True`` passes the whole (cropped) network-grid volume as one window, padded to a multiple of 32
    (PERFORMANCE.md §2.5), by adjusting the window settings handed to the engine.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Any

WHOLE_VOLUME_MULTIPLE = 32  # 5 stride-2 levels at most in the compared networks


class OverBudget(Exception):
    """The sliding window ran past ``max_sliding_window_s``; carries what is needed to extrapolate."""

    def __init__(self, elapsed: float, done: float, before: float) -> None:
        super().__init__(f"sliding window stopped after {elapsed:.0f} s at {100 * done:.0f} % of the windows")
        self.elapsed, self.done, self.before = elapsed, done, before


class Watch:
    """Progress callback: times the sliding-window stage and stops it once it runs past ``limit`` seconds.

    The stage's own fraction is recovered from the overall ``progress`` events with the predictor's stage weights.
    """

    def __init__(self, limit: float | None) -> None:
        from multimodalseg.progress import Stages

        self.limit = limit
        weights = Stages.DEFAULT_WEIGHTS
        order = list(weights)
        total = sum(weights.values())
        self.offset = sum(weights[s] for s in order[: order.index("sliding window")]) / total
        self.width = weights["sliding window"] / total
        self.t_start = time.perf_counter()
        self.t_sw: float | None = None

    def reset(self) -> None:
        self.t_start, self.t_sw = time.perf_counter(), None

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("event") != "progress" or event.get("stage") != "sliding window":
            return
        now = time.perf_counter()
        if self.t_sw is None:
            self.t_sw = now
        done = (float(event["fraction"]) - self.offset) / self.width
        if self.limit and done > 0 and now - self.t_sw > self.limit:
            raise OverBudget(now - self.t_sw, min(done, 1.0), self.t_sw - self.t_start)


@contextmanager
def _patched(obj: Any, name: str, value: Any):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _gib(kilobytes: float) -> float:
    return round(kilobytes / 2**20, 3)


def run_config(config: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration and return its measurements (see the module docstring)."""
    t0 = time.perf_counter()
    import SimpleITK as sitk
    import torch
    from multimodalseg.inference import predictor as predictor_module
    from multimodalseg.inference.devices import configure_threads
    from multimodalseg.inference.engine import count_windows
    from multimodalseg.inference.predictor import Predictor, load_model

    import_s = time.perf_counter() - t0
    threads = configure_threads(int(config.get("threads") or 0) or None)
    seen: dict[str, Any] = {}
    original = predictor_module.predict_probabilities

    def recording(net, image, settings, device, stitch, autocast, **options):
        seen["network_shape_zyx"] = list(image.shape[1:])
        if config.get("whole_volume"):
            two_d = settings.roi[0] == 1
            roi = tuple(int(math.ceil(s / WHOLE_VOLUME_MULTIPLE) * WHOLE_VOLUME_MULTIPLE) for s in image.shape[1:])
            if two_d:
                roi = (1, *roi[1:])
            settings = replace(settings, roi=roi, overlap=0.0)
            seen["whole_volume_roi_zyx"] = list(roi)
        return original(net, image, settings, device, stitch, autocast, **options)

    with ExitStack() as stack:
        stack.enter_context(_patched(predictor_module, "predict_probabilities", recording))
        if not config.get("inference_mode", True):
            stack.enter_context(_patched(torch, "inference_mode", torch.no_grad))

        t1 = time.perf_counter()
        bundle = load_model(config["task"], config["model"])
        if config.get("channels_last"):
            bundle.meta = {**bundle.meta, "channels_last": True}
        watch = Watch(config.get("max_sliding_window_s"))
        predictor = Predictor(bundle, config.get("device", "cpu"), sw_batch_size=int(config.get("sw_batch_size", 1)),
                              precision=config.get("precision", "fp32"), crop=bool(config.get("crop", True)),
                              modality=config.get("modality"), progress=watch,
                              report_options=config.get("report_options") or {})
        if not config.get("onednn", True):
            predictor.model = bundle.build_model().to(predictor.device)  # unrouted convs
            if predictor.channels_last:
                predictor.model = predictor.model.to(memory_format=torch.channels_last_3d)
        model_load_s = time.perf_counter() - t1
        if predictor.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(predictor.device)

        runs = []
        result = None
        for i in range(int(config.get("warmup", 0)) + max(1, int(config.get("repeats", 1)))):
            watch.reset()
            try:
                result = predictor.predict(config["inputs"], output=config.get("output"))
            except OverBudget as stop:
                # Extrapolate from the windows done: time before the stage + stage time / fraction done.
                estimate = stop.before + stop.elapsed / stop.done
                return {"ok": False, "status": "estimated", "error": str(stop), "seconds_estimate": round(estimate, 1),
                        "sliding_window_estimate_s": round(stop.elapsed / stop.done, 1),
                        "fraction_done": round(stop.done, 3), "model_load_s": round(model_load_s, 3),
                        "params": int(sum(p.numel() for p in predictor.model.parameters())),
                        "network_shape_zyx": seen.get("network_shape_zyx"),
                        "windows": count_windows(seen["network_shape_zyx"], predictor.settings.roi,
                                                 predictor.settings.overlap) if "network_shape_zyx" in seen else None,
                        "rss_self_gib": _gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)}
            if i >= int(config.get("warmup", 0)):
                runs.append(result.timings)
    best = min(runs, key=lambda t: t["total"])
    settings = result.report["settings"]
    out: dict[str, Any] = {
        "ok": True,
        "import_s": round(import_s, 3),
        "model_load_s": round(model_load_s, 3),
        "seconds": best["total"],
        "timings": best,
        "all_totals": [t["total"] for t in runs],
        "windows": 1 if config.get("whole_volume") else settings["windows"],
        "roi_zyx": seen.get("whole_volume_roi_zyx", settings["roi_zyx"]),
        "network_shape_zyx": seen.get("network_shape_zyx"),
        "network_spacing": settings["network_spacing"],
        "crop_zyx": settings["crop_zyx"],
        "device": result.report["device"],
        "precision": result.report["precision"],
        "threads": threads,
        "params": int(sum(p.numel() for p in predictor.model.parameters())),
        "channels_last": predictor.channels_last,
        "dice": None,
    }
    if config.get("dice") and config.get("label"):
        from multimodalseg.metrics import evaluate_images

        scores = evaluate_images(result.labels, sitk.ReadImage(config["label"]), task=predictor.task)
        out["dice"] = {"mean": scores["mean"].get("dice"),
                       "regions_mean": (scores.get("regions_mean") or {}).get("dice")}
    if predictor.device.type == "cuda":
        out["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated(predictor.device) / 2**30, 3)
    out["rss_self_gib"] = _gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return out


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        config = json.load(f)
    try:
        out = run_config(config)
    except Exception as exc:  # the parent records the failure for this row and goes on
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    tmp = f"{config['result']}.partial"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, config["result"])
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
