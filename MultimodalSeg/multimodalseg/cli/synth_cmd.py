"""``multimodalseg synth``: write SynthSeg-style synthetic cases from real anatomy in a task's public layout."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth", help="write synthetic training cases from real anatomy in a task's public layout",
        description="Write N synthetic cases (seeds S..S+N-1) of a task, generated SynthSeg-style from real label "
                    "maps (randomly deformed, painted with per-sample intensities, blurred, bias, noise), in the "
                    "same layout as 'multimodalseg phantom'. The same seed writes the same case.",
    )
    p.add_argument("--task", required=True, help="task id (see 'multimodalseg tasks')")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to write into (created if missing)")
    p.add_argument("--n", type=int, default=1, help="number of cases (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first case (default 0)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--anatomy", type=Path,
                        help="folder of label maps to draw from (default: the small packaged copies)")
    source.add_argument("--held-out", action="store_true",
                        help="draw only from the packaged anatomies held out of the shipped demos' training (what "
                             "'multimodalseg demo' and the Slicer sample data show)")
    p.add_argument("--spacing", type=float, help="reference grid spacing in mm (default per task: 2.0, spine 1.5)")
    p.add_argument("--modality", help="whole-heart only: ct, mr or both (default both: N CT and N MR cases)")
    p.add_argument("--whole-head-fraction", type=float, metavar="F",
                   help="brain-tumor only: share of cases that keep scalp, skull and orbits instead of being "
                        "skull-stripped (default 0.2)")
    p.add_argument("--heart-at-edge-fraction", type=float, metavar="F",
                   help="whole-heart only: share of the chest-framed cases whose field ends in the heart, as a scan "
                        "planned on the lungs does (default 0)")
    p.add_argument("--random-contrast-fraction", type=float, metavar="F",
                   help="petmr-brain, whole-heart, spine: share of MR images painted in SynthSeg's random contrast "
                        "instead of the modality's own (defaults 0.5, 0.5, 0.3)")
    p.add_argument("--png", action="store_true", help="also write an overlay PNG per case")
    p.add_argument("--overwrite", action="store_true", help="replace existing case files")
    p.add_argument("--progress", default="auto", choices=("auto", "json", "bar", "none"),
                   help="auto: a bar when stdout is a terminal, JSON lines otherwise")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodalseg.progress import JsonLines, make_reporter

    reporter = make_reporter(args.progress)
    try:
        return _run(args, reporter)
    except Exception as exc:  # a reading process gets an error event; the CLI prints the line and exits
        if isinstance(reporter, JsonLines):
            user = isinstance(exc, UserError)
            message = str(exc) if user else f"internal error: {type(exc).__name__}: {exc}"
            reporter({"event": "error", "message": message, "code": 2 if user else 1})
        raise


def _held_out(task_id: str, maps: tuple) -> tuple:
    """The packaged maps held out of the demos' training (``synthesis.anatomy.HELD_OUT``), the same ones
    ``multimodalseg demo`` draws from; a UserError when the task's kind has none."""
    from multimodalseg.synthesis.anatomy import KINDS, split_anatomy

    held = split_anatomy(task_id, maps)[1]
    if not held:
        raise UserError(f"--held-out: no packaged {KINDS[task_id]} anatomy is held out for task {task_id}; "
                        "leave --held-out off")
    return held


def _run(args: argparse.Namespace, reporter) -> int:
    from multimodalseg.cli.phantom_cmd import _modalities

    task = get_task(args.task)
    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if args.spacing is not None and not (math.isfinite(args.spacing) and 0.2 <= args.spacing <= 10.0):
        raise UserError(f"--spacing must be between 0.2 and 10 mm, got {args.spacing}")
    modalities = _modalities(task, args.modality)
    head = args.whole_head_fraction
    if head is not None and task.id != "brain-tumor":
        raise UserError(f"--whole-head-fraction is for --task brain-tumor only, not {task.id}")
    if head is not None and not (math.isfinite(head) and 0.0 <= head <= 1.0):
        raise UserError(f"--whole-head-fraction must be between 0 and 1, got {head}")
    edge = args.heart_at_edge_fraction
    if edge is not None and task.id != "whole-heart":
        raise UserError(f"--heart-at-edge-fraction is for --task whole-heart only, not {task.id}")
    if edge is not None and not (math.isfinite(edge) and 0.0 <= edge <= 1.0):
        raise UserError(f"--heart-at-edge-fraction must be between 0 and 1, got {edge}")
    from multimodalseg.synthesis.generate import random_contrast

    contrast = args.random_contrast_fraction
    random_contrast(task.id, contrast)  # checked before any case is generated

    import torch

    from multimodalseg.phantoms import case_paths, write_case
    from multimodalseg.phantoms.layouts import prepare_out_dir
    from multimodalseg.progress import JsonLines, Stages
    from multimodalseg.synthesis import load_anatomy, make_synth_case

    torch.set_num_threads(1)  # the generator is cheap per case; leave the other cores to whoever trains
    t0 = time.perf_counter()
    maps = load_anatomy(task.id, args.anatomy)
    if args.held_out:
        maps = _held_out(task.id, maps)
    out: Path = args.out
    prepare_out_dir(out)
    if not args.overwrite:  # refuse before generating anything: no partial dataset
        for modality in modalities:
            for i in range(args.n):
                for p in case_paths(task.id, out, i + 1, modality, misregistered=True, overlay=args.png).values():
                    if p.exists():
                        raise UserError("already exists; choose another folder or pass --overwrite", p)
    jobs = [(m, i) for m in modalities for i in range(args.n)]
    outer = Stages(reporter)
    outer.emit({"event": "started", "task": task.id, "model": "synth", "version": "1", "device": "cpu",
                "inputs": {"anatomy": str(args.anatomy) if args.anatomy else
                                          "packaged, held out" if args.held_out else "packaged", "maps": len(maps)}})
    outputs, timings = {}, {"generate": 0.0, "write": 0.0}
    for k, (modality, i) in enumerate(jobs):
        span = (k / len(jobs), (k + 1) / len(jobs))
        stages = Stages(reporter, weights={"preprocess": 0.85, "write": 0.15}, span=span)
        stages.start("preprocess")
        case = make_synth_case(task.id, args.seed + i, anatomy=maps, spacing=args.spacing, modality=modality,
                               whole_head_fraction=head, heart_at_edge_fraction=edge,
                               random_contrast_fraction=contrast)
        stages.start("write")
        written = write_case(case, out, i + 1, overwrite=args.overwrite, overlay=args.png)
        stages.stop()
        timings["generate"] += stages.timings["preprocess"]
        timings["write"] += stages.timings["write"]
        outputs[case.case_id] = str(next(iter(written.values())).parent)
        if not isinstance(reporter, JsonLines):
            print(f"{case.case_id}: {len(written)} files from {case.info['anatomy']} "
                  f"({stages.timings['preprocess']:.1f} s)", file=sys.stderr if reporter is not None else sys.stdout)
    if reporter is not None:
        reporter({"event": "finished", "outputs": outputs,
                  "timings": {**{k: round(v, 4) for k, v in timings.items()},
                              "total": round(time.perf_counter() - t0, 4)}})
    return 0
