"""``multimodalseg fuse``: a fused CT-MR image of a spine case on the CT grid, with EN, MI, SF and VIF.

The MR is brought onto the CT grid in physical space (through ``--transform``, the ``.tfm`` that ``multimodalseg
register`` writes, when given), both are scaled as the fusion bundle was trained, fused slice by slice and written
on the CT grid (8-bit grey). The metrics of the fused volume against the two inputs, and of each input taken as
if it were the fusion (for comparison), are printed and, with ``--report``, written as JSON. See
``multimodalseg.inference.fusion``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from multimodalseg.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuse", help="fuse a CT and an MR of the spine into one image on the CT grid (CDDFuse)",
                       description="Fuse a CT and a (registered) MR slice by slice with a fusion model bundle; the "
                                   "fused image is written on the CT grid. Register first: 'multimodalseg register' "
                                   "writes the transform to pass as --transform.")
    p.add_argument("--ct", required=True, type=Path, help="CT volume (the reference grid)")
    p.add_argument("--mr", required=True, type=Path, help="MR volume (registered, or with --transform)")
    p.add_argument("--transform", type=Path, metavar="TFM",
                   help="ITK transform from 'multimodalseg register' (fixed CT -> moving MR), applied to the MR")
    p.add_argument("--model", metavar="ID|PATH", help="fusion bundle: catalog id or file (default: newest)")
    p.add_argument("--output", "-o", required=True, type=Path, help="fused image to write (.nii.gz, .nrrd, ...)")
    p.add_argument("--report", type=Path, metavar="JSON", help="write the metrics and settings as JSON")
    p.add_argument("--no-metrics", action="store_true", help="skip EN/MI/SF/VIF (faster)")
    p.add_argument("--no-pad", action="store_true",
                   help="fuse the slices unpadded (default: padded as the model was trained, 512x512 as the spine "
                        "paper unless the bundle says otherwise, and cropped back)")
    p.add_argument("--pad-mode", choices=("constant", "reflect", "replicate"),
                   help="padding of the slices (default: replicate, the edge values)")
    p.add_argument("--batch", type=int, help="slices per forward pass (default: one at a time for slices fused strip "
                   "by strip, 160x160 pixels and more on the CPU; else up to 2 padded 512x512 slices, at most 8)")
    p.add_argument("--progress", default="auto", choices=("auto", "json", "bar", "none"),
                   help="auto: a bar when stdout is a terminal, JSON lines otherwise")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores but one; "
                   "strip-wise fusion slices run one per core)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodalseg import io
    from multimodalseg.cli.segment_cmd import warning_sink
    from multimodalseg.progress import JsonLines, make_reporter

    reporter = make_reporter(args.progress)
    try:
        with io.warnings_to(warning_sink(reporter)):
            return _run(args, reporter)
    except Exception as exc:  # a reading process (Slicer) gets an error event; the CLI prints the line and exits
        if isinstance(reporter, JsonLines):
            user = isinstance(exc, UserError)
            message = str(exc) if user else f"internal error: {type(exc).__name__}: {exc}"
            reporter({"event": "error", "message": message, "code": 2 if user else 1})
        raise


def _run(args: argparse.Namespace, reporter) -> int:
    from multimodalseg.cli.segment_cmd import check_output

    inputs = {"ct": args.ct, "mr": args.mr, **({"transform": args.transform} if args.transform else {})}
    for path in inputs.values():
        if not path.exists():
            raise UserError("file not found", path)
    output = check_output(args.output, inputs)
    if output.name.lower().endswith(".dcm"):
        raise UserError("the fused image is a volume: write .nii.gz, .nrrd or .mha (DICOM SEG is for label maps)",
                        output)
    from multimodalseg.cli.segment_cmd import warn_shared_files

    warn_shared_files({"ct": args.ct, "mr": args.mr})
    report_path = check_output(args.report, inputs, (".json",)) if args.report else None
    if report_path is not None and report_path.resolve() == output.resolve():
        raise UserError("--report and -o name the same file", report_path)

    from multimodalseg import preprocessing as prep
    from multimodalseg.fusion_metrics import format_metrics
    from multimodalseg.inference.batch import write_json
    from multimodalseg.inference.devices import configure_threads, slice_workers
    from multimodalseg.inference.fusion import (
        FUSE_STAGE_WEIGHTS,
        FUSION_TASK,
        FusionRunner,
        fuse_case,
        load_fusion_model,
        write_fused,
    )
    from multimodalseg.progress import JsonLines, Stages
    from multimodalseg.registration import read_transform
    from multimodalseg.tasks import get_task

    t0 = time.perf_counter()
    transform = read_transform(args.transform) if args.transform else None
    images = prep.load_inputs(get_task(FUSION_TASK), {"ct": args.ct, "mr": args.mr})
    configure_threads(args.threads)
    runner = FusionRunner(load_fusion_model(args.model), args.device, args.batch, pad=not args.no_pad,
                          pad_mode=args.pad_mode, workers=slice_workers(args.threads))
    stages = Stages(reporter, weights=FUSE_STAGE_WEIGHTS)
    stages.emit({"event": "started", "task": FUSION_TASK, "model": runner.bundle.id,
                 "version": str(runner.bundle.meta.get("version")), "device": str(runner.device),
                 "inputs": {k: os.fspath(v) for k, v in inputs.items()}})
    stages.start("load")  # inputs and model are loaded: the stage ends at once
    result = fuse_case(runner, images["ct"], images["mr"], transform=transform,
                       paths={"ct": args.ct, "mr": args.mr}, metrics=not args.no_metrics, stages=stages)
    stages.start("write")
    written = [write_fused(result, output)]
    try:
        if report_path is not None:
            report = {"inputs": {"ct": os.fspath(args.ct), "mr": os.fspath(args.mr),
                                 "transform": None if transform is None else os.fspath(args.transform)},
                      **result.report, "outputs": {"fused": written[0], "report": os.fspath(report_path)}}
            written.append(os.fspath(write_json(report, report_path)))
    except BaseException:
        Path(written[0]).unlink(missing_ok=True)  # all or nothing
        raise
    stages.stop()
    outputs = {"fused": written[0], **({"report": written[1]} if len(written) > 1 else {})}
    if reporter is not None:
        reporter({"event": "finished", "outputs": outputs,
                  "timings": {**stages.timings, "total": round(time.perf_counter() - t0, 4)},
                  "metrics": result.metrics})
    for name, title in (("fused", "fused"), ("ct", "CT alone"), ("mr", "MR alone")):
        if name in result.metrics:
            print(f"{title:9s} {format_metrics(result.metrics[name])}")
    demo = " (demo model: synthetic data only, not for clinical images)" if result.report["model"]["demo"] else ""
    if not isinstance(reporter, JsonLines):
        print(f"wrote {', '.join(written)} ({result.report['timings']['total']:.1f} s){demo}", file=sys.stderr)
    return 0
