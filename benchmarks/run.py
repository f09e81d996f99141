"""Inference benchmark (issue 10): our networks vs MONAI SegResNet16 and a parameter-matched UNet, per task.

Usage:
    python benchmarks/run.py [--tasks brain-tumor ...] [--quick] [--gpu] [--out benchmarks/results]

Parts (``--parts``; default ``main,scaling,cli``, about 25-30 minutes on the 2-core CPU):
    main      every network of every task on a clinical-size phantom, same windows, same ``Predictor`` code path;
    variants  the speed-ups of issue 10 item 3, one at a time, as before/after ratios (``--variants``);
    scaling   one network at three sizes of one case, log-log slope of time against voxels;
    cli       ``python -m multimodalseg segment`` end to end against the in-process predict time.

Each configuration runs in a fresh process (``worker.py``), so its peak RSS is its own (``os.wait4``). Results go to
``OUT/NAME.json`` and ``OUT/NAME.md`` (``--name``, default ``latest``; ``NAME-gpu`` with ``--gpu``), rewritten after
every configuration. The speed-up table is a separate, shorter run, e.g.
``python benchmarks/run.py --tasks brain-tumor --widths demo --parts main,variants --name speedups``.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.fspath(HERE))

import cases  # noqa: E402
import report  # noqa: E402
import worker  # noqa: E402

PARTS = ("main", "variants", "scaling", "cli")
DEFAULT_PARTS = "main,scaling,cli"
# change -> (option, value of the extra run, whether that extra run is the "before" or the "after")
VARIANTS: dict[str, tuple[str, Any, str]] = {
    "crop": ("crop", False, "before"),
    "inference-mode": ("inference_mode", False, "before"),
    "threads": ("threads", 1, "before"),
    "sw-batch": ("sw_batch_size", 2, "after"),
    "bf16": ("precision", "bf16", "after"),
    "channels-last": ("channels_last", True, "after"),
    "whole-volume": ("whole_volume", True, "after"),
    "onednn": ("onednn", False, "before"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(cases.TASKS), choices=cases.TASKS)
    p.add_argument("--quick", action="store_true", help="tiny cases and demo widths only (smoke test)")
    p.add_argument("--gpu", action="store_true", help="run on CUDA with AMP; skipped cleanly without CUDA")
    p.add_argument("--out", default=os.fspath(HERE / "results"), help="folder for NAME.json / NAME.md")
    p.add_argument("--name", default="latest", help="file name of the results (default latest; -gpu added)")
    p.add_argument("--parts", default=DEFAULT_PARTS, help=f"comma list of {', '.join(PARTS)} (default {DEFAULT_PARTS})")
    p.add_argument("--widths", default=None, help="widths of our networks (default demo,paper; --quick: demo)")
    p.add_argument("--baselines", default="segresnet,unet", help="comma list of segresnet, unet")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--variant-tasks", default="brain-tumor", help="tasks whose networks get the variant runs")
    p.add_argument("--variant-networks", default="ours,segresnet16",
                   help="'ours' (the catalog bundle, else the demo width) and/or 'segresnet16'")
    p.add_argument("--spine-fusion", action="store_true",
                   help="spine rows also make the fused CT-MR image (a second network over every slice; off by "
                        "default: the rows compare the segmentation networks)")
    p.add_argument("--scaling-task", default="brain-tumor")
    p.add_argument("--cli-task", default="brain-tumor")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for every row (default: the product's, all cores but one)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 1; --gpu 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 0; --gpu 1)")
    p.add_argument("--max-sliding-window-s", type=float, default=90.0,
                   help="stop a row's sliding window after this many seconds and extrapolate its time from the "
                        "windows done (status 'estimated'); 0: never")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per configuration before it is killed")
    p.add_argument("--workdir", default=os.fspath(Path(tempfile.gettempdir()) / "multimodalseg-bench"),
                   help="cache of phantom cases, temporary bundles and outputs")
    p.add_argument("--dry-run", action="store_true",
                   help="write the cases and bundles and list the rows (parameters) without running inference")
    p.add_argument("--in-process", action="store_true",
                   help="run every configuration in this process (fast; peak RSS is then not per row)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.parts = _split(args.parts, PARTS, "--parts")
    args.widths = _split(args.widths or ("demo" if args.quick else "demo,paper"), ("demo", "paper"), "--widths")
    args.baselines = _split(args.baselines, ("segresnet", "unet"), "--baselines")
    args.variants = _split(args.variants, tuple(VARIANTS), "--variants")
    args.variant_tasks = _split(args.variant_tasks, cases.TASKS, "--variant-tasks")
    args.variant_networks = _split(args.variant_networks, ("ours", "segresnet16"), "--variant-networks")
    # The product's default (devices.configure_threads): all cores but one, so a GUI core stays free. On a shared
    # 2-core machine 2 threads also wait on each other whenever another process holds a core.
    args.threads = args.threads or max(1, (os.cpu_count() or 2) - 1)
    args.repeats = args.repeats or (3 if args.gpu else 1)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.gpu else 0)
    return args


def _split(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad:
        raise SystemExit(f"{flag}: unknown {', '.join(bad)} (use {', '.join(allowed)})")
    return items


def machine_info(gpu: bool) -> dict[str, Any]:
    import monai
    import torch
    from multimodalseg.inference.devices import cpu_has_bf16

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_bf16": cpu_has_bf16(), "torch": torch.__version__, "monai": monai.__version__,
            "python": platform.python_version()}
    if gpu and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_child(cmd: list[str], timeout: float, log: Path) -> tuple[int | None, float, float]:
    """Run ``cmd``; returns (exit code or None on timeout, wall seconds, peak RSS GiB of that process)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        code: int | None = None
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    code = os.waitstatus_to_exitcode(status)
                    break
                if time.perf_counter() - start > timeout:
                    proc.kill()
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.05)
        except BaseException:  # Ctrl-C: do not leave the configuration running
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise
        proc.returncode = code if code is not None else -9  # reaped here, so Popen must not wait again
    return code, time.perf_counter() - start, round(usage.ru_maxrss / 2**20, 3)


class Bench:
    """Plans and runs the configurations and keeps the results file up to date."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(args.workdir)
        for sub in ("outputs", "configs", "logs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.stem = f"{args.name}-gpu" if args.gpu else args.name
        self.device = "cuda" if args.gpu else "cpu"
        self.counter = 0
        self.results: dict[str, Any] = {
            "format": "multimodalseg-benchmark/1", "complete": False,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in args.argv),
            "mode": "gpu" if args.gpu else "cpu", "quick": args.quick,
            "machine": machine_info(args.gpu),
            "load_average": {"start": [round(v, 2) for v in os.getloadavg()]},
            "settings": {"overlap": cases.OVERLAP, "threads": args.threads, "repeats": args.repeats,
                         "warmup": args.warmup, "isolated": not args.in_process, "timeout_s": args.timeout,
                         "max_sliding_window_s": args.max_sliding_window_s,
                         "device": self.device},
            "cases": {}, "rows": [], "variants": [], "variant_runs": [], "scaling": None, "cli": None,
            "targets": [], "notes": [],
        }

    # --- running one configuration ------------------------------------------------------------------------------

    def default_options(self) -> dict[str, Any]:
        return {"crop": True, "inference_mode": True, "threads": self.args.threads, "sw_batch_size": 1,
                "precision": "auto" if self.args.gpu else "fp32", "channels_last": False, "whole_volume": False,
                "onednn": True}

    def execute(self, name: str, case: cases.CaseFiles, net: cases.NetSpec, bundle: str,
                options: dict[str, Any], dice: bool = False) -> dict[str, Any]:
        self.counter += 1
        run_id = f"{self.counter:03d}-{case.spec.task}-{net.name}-{net.width}"
        config = {"task": case.spec.task, "model": bundle, "inputs": case.inputs, "label": case.label,
                  "dice": dice, "output": os.fspath(self.workdir / "outputs" / f"{run_id}.nii.gz"),
                  "modality": case.spec.modality, "device": self.device,
                  "repeats": self.args.repeats, "warmup": self.args.warmup,
                  "max_sliding_window_s": self.args.max_sliding_window_s or None,
                  "report_options": {"fusion": bool(self.args.spine_fusion)} if case.spec.task == "spine" else {},
                  **options,
                  "result": os.fspath(self.workdir / "configs" / f"{run_id}.result.json")}
        load = [round(v, 2) for v in os.getloadavg()]
        row: dict[str, Any] = {"id": run_id, "task": case.spec.task, "network": net.label, "registry": net.name,
                               "width": net.width, "kind": net.kind, "params": net.params, "options": options,
                               "load_average_before": load, "output": config["output"], "status": "ok"}
        if self.args.dry_run:
            row.update(status="planned", seconds=None, peak_rss_gib=None)
            print(f"[{self.counter}] {name}: planned ({_params_text(net.params)} parameters, bundle {bundle})",
                  flush=True)
            return row
        if self.args.in_process:
            try:
                out = worker.run_config(config)
            except Exception as exc:
                out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            rss = out.get("rss_self_gib")
        else:
            path = self.workdir / "configs" / f"{run_id}.json"
            path.write_text(json.dumps(config, indent=1))
            Path(config["result"]).unlink(missing_ok=True)
            log = self.workdir / "logs" / f"{run_id}.log"
            code, wall, rss = run_child([sys.executable, os.fspath(HERE / "worker.py"), os.fspath(path)],
                                        self.args.timeout, log)
            if code is None:
                out = {"ok": False, "status": "timeout", "error": f"stopped after {self.args.timeout:g} s"}
            elif Path(config["result"]).exists():
                out = json.loads(Path(config["result"]).read_text())
            else:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [f"exit code {code}"]
                out = {"ok": False, "error": tail[0]}
            row["process_wall_s"] = round(wall, 2)
        if out.get("status") == "estimated":
            row.update(status="estimated", error=out["error"], seconds=out["seconds_estimate"],
                       sliding_window_s=out["sliding_window_estimate_s"], fraction_done=out["fraction_done"],
                       model_load_s=out["model_load_s"], params=out["params"], windows=out.get("windows"),
                       network_shape_zyx=out.get("network_shape_zyx"), peak_rss_gib=rss, device=self.device,
                       stages={})
            print(f"[{self.counter}] {name}: stopped, about {row['seconds']:.0f} s estimated ({out['error']}), "
                  f"peak RSS so far {rss} GiB, load {load[0]}", flush=True)
            return row
        if not out.get("ok"):
            row.update(status=out.get("status", "failed"), error=out.get("error"), seconds=None, peak_rss_gib=rss)
            print(f"[{self.counter}] {name}: {row['status']}: {row['error']}", flush=True)
            return row
        row.update(
            seconds=out["seconds"], sliding_window_s=out["timings"].get("sliding window"), stages=out["timings"],
            all_totals=out["all_totals"], model_load_s=out["model_load_s"], import_s=out["import_s"],
            windows=out["windows"], roi_zyx=out["roi_zyx"], network_shape_zyx=out["network_shape_zyx"],
            crop_zyx=out["crop_zyx"], device=out["device"], precision=out["precision"], threads=out["threads"],
            params=out["params"], dice=out["dice"], peak_rss_gib=rss, gpu_peak_gib=out.get("gpu_peak_gib"),
        )
        print(f"[{self.counter}] {name}: {row['seconds']:.1f} s (sliding window {row['sliding_window_s'] or 0:.1f} s,"
              f" {row['windows']} windows), peak RSS {rss} GiB, load {load[0]}", flush=True)
        return row

    def save(self, final: bool = False) -> None:
        res = self.results
        report.add_ratios(res["rows"])
        res["targets"] = report.targets(res)
        if final:
            res["complete"] = True
            res["load_average"]["end"] = [round(v, 2) for v in os.getloadavg()]
        for name, text in ((f"{self.stem}.json", json.dumps(res, indent=1, default=str)),
                           (f"{self.stem}.md", report.markdown(res))):
            tmp = self.out / f".{name}.partial"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)

    # --- the parts ----------------------------------------------------------------------------------------------

    def roi(self, spec: cases.CaseSpec) -> tuple[int, int, int]:
        from multimodalseg.tasks import get_task

        return tuple(spec.roi or get_task(spec.task).patch_size)

    def main_part(self, task: str, case: cases.CaseFiles) -> None:
        roi = self.roi(case.spec)
        nets = cases.networks(task, roi, self.args.widths, self.args.baselines, self.results["notes"])
        catalog_net = cases.catalog_network(task)
        for net in nets:
            bundle = cases.save_temp_bundle(self.workdir, task, net, roi, case.spec.native_spacing)
            row = self.execute(f"{task} {net.label} {net.width}", case, net, bundle, self.default_options())
            row["bundle"] = bundle
            self.results["rows"].append(row)
            self.save()
        if catalog_net is not None:
            row = self.execute(f"{task} {catalog_net.label}", case, catalog_net, catalog_net.model,
                               self.default_options(), dice=True)
            row["bundle"] = catalog_net.model
            self.results["rows"].append(row)
            self.results["notes"].append(f"{task}: {catalog_net.label} uses its own window settings and spacing")
            self.save()

    def variants_part(self, task: str, case: cases.CaseFiles) -> None:
        from multimodalseg.inference.devices import cpu_has_bf16

        base_rows = [r for r in self.results["rows"] if r["task"] == task and r["status"] == "ok"]
        chosen = []
        if "ours" in self.args.variant_networks:
            chosen += [r for r in base_rows if r["kind"] == "catalog"][:1] or \
                [r for r in base_rows if r["kind"] == "ours" and r["width"] == "demo"][:1]
        if "segresnet16" in self.args.variant_networks:
            chosen += [r for r in base_rows if r["network"] == "segresnet16"][:1]
        defaults = self.default_options()
        for base in chosen:
            net = cases.NetSpec(base["network"], base["registry"], base["width"], {}, base["kind"],
                                params=base["params"], conditional=bool(case.spec.modality))
            for change in self.args.variants:
                key, value, side = VARIANTS[change]
                if self.args.gpu and change == "bf16":
                    value, side = "fp32", "before"  # on CUDA the default is AMP; the extra run is fp32
                if self.args.gpu and change == "sw-batch":
                    value = 4
                entry = {"task": task, "network": base["network"], "change": change, "option": key}
                default_text, extra_text = _option_text(key, defaults[key]), _option_text(key, value)
                entry["before"], entry["after"] = (extra_text, default_text) if side == "before" else \
                    (default_text, extra_text)
                skip = self._skip_reason(change, cpu_has_bf16())
                if skip:
                    self.results["variants"].append({**entry, "note": f"skipped: {skip}"})
                    self.save()
                    continue
                row = self.execute(f"{task} {base['network']} {change}={value}", case, net, base["bundle"],
                                   {**defaults, key: value}, dice=bool(base.get("dice")))
                row["variant"] = change
                self.results["variant_runs"].append(row)
                before, after = (row, base) if side == "before" else (base, row)
                entry.update(before_s=before.get("seconds"), after_s=after.get("seconds"),
                             before_rss_gib=before.get("peak_rss_gib"), after_rss_gib=after.get("peak_rss_gib"))
                if row["status"] == "ok":
                    entry["ratio"] = round(after["seconds"] / before["seconds"], 3)
                    entry["agreement_dice"] = round(cases.label_agreement(cases.read_labels(base["output"]),
                                                                          cases.read_labels(row["output"])), 4)
                    entry["note"] = f"RSS {before.get('peak_rss_gib')} -> {after.get('peak_rss_gib')} GiB"
                    if base.get("dice") and row.get("dice"):
                        entry["dice_before"], entry["dice_after"] = before["dice"], after["dice"]
                        entry["note"] += "; Dice vs phantom " + ", ".join(
                            f"{k} {before['dice'][k]:.3f} -> {after['dice'][k]:.3f}" for k in ("mean", "regions_mean")
                            if before["dice"].get(k) is not None and after["dice"].get(k) is not None)
                else:
                    entry["note"] = f"{row['status']}: {row.get('error')}"
                self.results["variants"].append(entry)
                self.save()

    def _skip_reason(self, change: str, bf16_hardware: bool) -> str | None:
        if change == "threads" and (self.args.gpu or self.args.threads <= 1):
            return "not a CPU run with more than one thread"
        if change == "bf16" and not self.args.gpu and not bf16_hardware:
            cap = self.results["machine"]["cpu_capability"]
            return f"this CPU has no bf16 hardware ({cap}; no avx512_bf16/amx_bf16 in /proc/cpuinfo)"
        return None

    def scaling_part(self) -> None:
        task = self.args.scaling_task
        specs = cases.scaling_specs(task, self.args.quick)
        roi = self.roi(specs[0])
        notes = self.results["notes"]
        nets = cases.networks(task, roi, self.args.widths[:1], ["segresnet"], notes)
        net = next((n for n in nets if n.kind == "ours"), nets[-1])
        points = []
        for spec in specs:
            case = cases.write_case(spec, self.workdir)
            row = self._same_as_main(task, spec, net)
            if row is None:
                bundle = cases.save_temp_bundle(self.workdir, task, net, roi, True)
                row = self.execute(f"scaling {task} {case.info['description']} {net.label}", case, net, bundle,
                                   self.default_options())
            shape = row.get("network_shape_zyx")
            points.append({"case": case.info["description"], "reference_voxels": case.info["reference_voxels"],
                           "network_voxels": int(_prod(shape)) if shape else None, "windows": row.get("windows"),
                           "seconds": row.get("seconds"), "sliding_window_s": row.get("sliding_window_s"),
                           "peak_rss_gib": row.get("peak_rss_gib"), "status": row["status"],
                           "load_average_before": row["load_average_before"]})
            vox = [p["reference_voxels"] for p in points]
            self.results["scaling"] = {
                "task": task, "network": f"{net.label} {net.width}", "points": points,
                "slope_total": report.loglog_slope(vox, [p["seconds"] for p in points]),
                "slope_sliding_window": report.loglog_slope(vox, [p["sliding_window_s"] for p in points]),
            }
            self.save()

    def _same_as_main(self, task: str, spec: cases.CaseSpec, net: cases.NetSpec) -> dict[str, Any] | None:
        """The main row that already ran this scaling point: same case, and the task's spacing is the case's own."""
        from multimodalseg.tasks import get_task

        main = cases.case_spec(task, self.args.quick)
        same_grid = main.native_spacing or (spec.spacing is not None and
                                            tuple(spec.spacing) == tuple(get_task(task).spacing))
        if (spec.shape, spec.spacing, spec.modality) != (main.shape, main.spacing, main.modality) or not same_grid:
            return None
        return next((r for r in self.results["rows"] if r["task"] == task and r["registry"] == net.name
                     and r["width"] == net.width and r["status"] == "ok"), None)

    def cli_part(self) -> None:
        task = self.args.cli_task
        base = next((r for r in self.results["rows"] if r["task"] == task and r["status"] == "ok"
                     and r["kind"] in ("catalog", "ours")), None) or \
            next((r for r in self.results["rows"] if r["task"] == task and r["status"] == "ok"), None)
        if base is None:
            self.results["cli"] = {"status": "skipped", "error": f"no successful main row for {task} to compare"}
            return
        case = cases.write_case(cases.case_spec(task, self.args.quick), self.workdir)
        out = self.workdir / "outputs" / f"cli-{task}.nii.gz"
        rep = self.workdir / "outputs" / f"cli-{task}.json"
        for p in (out, rep):
            p.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "multimodalseg", "segment", "--task", task, "-o", os.fspath(out),
               "--model", base["bundle"], "--device", self.device, "--precision", base["options"]["precision"],
               "--threads", str(self.args.threads), "--progress", "none", "--report", os.fspath(rep)]
        for role, path in case.inputs.items():
            cmd += ["--input", f"{role}={path}"]
        if case.spec.modality:
            cmd += ["--modality", case.spec.modality]
        if task == "spine" and not self.args.spine_fusion:
            cmd += ["--no-fusion"]
        load = [round(v, 2) for v in os.getloadavg()]
        code, wall, rss = run_child(cmd, self.args.timeout, self.workdir / "logs" / f"cli-{task}.log")
        entry: dict[str, Any] = {"task": task, "network": f"{base['network']} {base['width']}",
                                 "command": " ".join(shlex.quote(c) for c in cmd), "load_average_before": load}
        if code != 0 or not rep.exists():
            entry.update(status="failed", error=f"exit code {code}; see {self.workdir / 'logs'}")
        else:
            t = json.loads(rep.read_text())["timings"]
            compute = sum(t.get(k, 0.0) for k in ("preprocess", "sliding window", "postprocess"))
            entry.update(status="ok", wall_s=round(wall, 2), predict_s=t["total"], stages=t,
                         startup_s=round(wall - t["total"], 2),
                         overhead_beyond_inference_s=round(wall - compute, 2),
                         inprocess_predict_s=base["seconds"], wall_minus_inprocess_s=round(wall - base["seconds"], 2),
                         peak_rss_gib=rss)
            print(f"[cli] {task}: {wall:.1f} s wall, predict {t['total']:.1f} s, overhead beyond inference "
                  f"{entry['overhead_beyond_inference_s']:.1f} s", flush=True)
        self.results["cli"] = entry
        self.save()

    def run(self) -> None:
        if "main" in self.args.parts or "variants" in self.args.parts or "cli" in self.args.parts:
            for task in self.args.tasks:
                case = cases.write_case(cases.case_spec(task, self.args.quick), self.workdir)
                self.results["cases"][task] = case.info
                self.main_part(task, case)
                if "variants" in self.args.parts and task in self.args.variant_tasks:
                    self.variants_part(task, case)
        if "scaling" in self.args.parts:
            self.scaling_part()
        if "cli" in self.args.parts and self.args.cli_task in self.args.tasks and not self.args.dry_run:
            self.cli_part()
        self.save(final=True)


def _params_text(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f} M"


def _option_text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{key.replace('_', ' ')} {'on' if value else 'off'}"
    return f"{key.replace('_', ' ')} {value}"


def _prod(values: list[int]) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print("--gpu: CUDA is not available on this machine; nothing run, no results written", file=sys.stderr)
            return 0
    bench = Bench(args)
    bench.run()
    for row in bench.results["rows"]:
        if row["status"] == "ok":
            print(f"{row['task']:12s} {row['network']:28s} {row['width']:8s} {row['seconds']:8.1f} s  "
                  f"ratio to SegResNet16 {row['ratio_segresnet'] if row['ratio_segresnet'] is not None else '-'}")
    print(f"wrote {bench.out / (bench.stem + '.json')} and {bench.out / (bench.stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
