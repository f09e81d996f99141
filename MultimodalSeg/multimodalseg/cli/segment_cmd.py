"""``multimodalseg segment``: segment one case (``--input ROLE=PATH ... -o OUT``) or a folder of cases.

Progress goes to stdout as JSON lines (``multimodalseg.progress``) or as a bar on stderr at a terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from multimodalseg import io
from multimodalseg.cli import segment_options
from multimodalseg.cli.suv_stats_cmd import add_suv_arguments, suv_overrides
from multimodalseg.errors import UserError
from multimodalseg.progress import JsonLines, make_reporter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment a case (or a folder of cases) with a model bundle",
                       description="Segment the inputs of a task; the label map is written on the reference "
                                   "input's grid with the task's label values.")
    p.add_argument("--task", required=True, help="task id (see 'multimodalseg tasks')")
    p.add_argument("--input", "-i", action="append", default=[], metavar="ROLE=PATH",
                   help="an input image by role, e.g. t1ce=case_t1ce.nii.gz (repeat for each role)")
    p.add_argument("--output", "-o", metavar="OUT", help="label map to write (.nii.gz, .nrrd, ...; .dcm: a DICOM "
                   "Segmentation object referencing the reference input, which must then be a DICOM series)")
    p.add_argument("--input-dir", metavar="DIR", help="batch mode: a folder of cases in the task's public layout")
    p.add_argument("--output-dir", metavar="DIR", help="batch mode: where CASE.nii.gz and CASE.json go")
    p.add_argument("--model", metavar="ID|PATH", help="catalog model id or bundle file (default: newest for the task)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto: AMP on CUDA, fp32 on CPU unless the model validated bf16")
    p.add_argument("--tta", action="store_const", const=True, default=None,
                   help="average over the 8 axis flips (8x slower); default: on for brain tumour on a GPU, else off")
    p.add_argument("--no-tta", dest="tta", action="store_const", const=False, help="no flip TTA, even on a GPU")
    p.add_argument("--overlap", type=float,
                   help="sliding-window overlap in [0, 1) (default: the model's, else 0.25)")
    p.add_argument("--sw-batch-size", type=int, default=1, help="windows per forward pass (default 1)")
    p.add_argument("--no-crop", action="store_true", help="run on the whole volume, not the foreground box")
    p.add_argument("--convention", help="write label values in this convention (e.g. brats2023, msd)")
    p.add_argument("--modality", choices=("ct", "mr"), help="image modality, for models conditioned on it")
    p.add_argument("--preview", metavar="PNG", help="write a three-view overlay PNG")
    p.add_argument("--report", metavar="JSON", help="write a JSON report (inputs, model, timings, volumes in mL)")
    p.add_argument("--progress", default="auto", choices=("auto", "json", "bar", "none"),
                   help="auto: a bar when stdout is a terminal, JSON lines otherwise")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores but one; "
                   "spine fusion runs one slice per core)")
    p.add_argument("--stats", metavar="CSV", help="petmr-brain: where the per-structure SUV statistics go "
                   "(default: beside the label map, OUT_suv.csv; also in the --report JSON)")
    add_suv_arguments(p)
    segment_options.add_arguments(p)
    p.set_defaults(func=run)


def parse_inputs(items: list[str]) -> dict[str, Path]:
    """``ROLE=PATH`` items -> {role: path}; a malformed or repeated role is a UserError."""
    inputs: dict[str, Path] = {}
    for item in items:
        role, sep, path = item.partition("=")
        if not sep or not role.strip() or not path.strip():
            raise UserError(f"--input expects ROLE=PATH, got '{item}'")
        if role.strip() in inputs:
            raise UserError(f"input role '{role.strip()}' given twice")
        inputs[role.strip()] = Path(path.strip())
    return inputs


def check_output(path: str | os.PathLike, inputs: dict[str, Path], suffixes: tuple[str, ...] | None = None) -> Path:
    """Fail before any computing when ``path`` cannot be written or would replace an input."""
    from multimodalseg.dicom_seg import is_seg_path

    p = Path(path)
    if suffixes is None and not io.has_volume_suffix(p) and not is_seg_path(p):
        raise UserError(f"unsupported output format; use one of {', '.join(io.VOLUME_SUFFIXES)} or .dcm (DICOM SEG)",
                        p)
    if suffixes is not None and not p.name.lower().endswith(suffixes):
        raise UserError(f"expected a {' or '.join(suffixes)} file name", p)
    if p.is_dir():
        raise UserError("output is a folder; give a file name", p)
    if any(p.resolve() == Path(i).resolve() for i in inputs.values()):
        raise UserError("output would overwrite an input file; choose another name", p)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=".partial-", dir=p.parent):
            pass
    except OSError as exc:
        raise UserError(f"cannot write output ({exc.strerror or exc})", p) from exc
    return p


def run(args: argparse.Namespace) -> int:

    reporter = make_reporter(args.progress)
    io.allow_no_geometry(bool(getattr(args, "allow_dicom_without_geometry", False)))
    try:
        with io.warnings_to(warning_sink(reporter)):
            return _run(args, reporter)
    except Exception as exc:  # the reading process gets an error event; the CLI prints the line and exits
        if isinstance(reporter, JsonLines):
            user = isinstance(exc, UserError)
            message = str(exc) if user else f"internal error: {type(exc).__name__}: {exc}"
            reporter({"event": "error", "message": message, "code": 2 if user else 1})
        raise
    finally:
        io.allow_no_geometry(False)


def warning_sink(reporter):
    """Where input warnings (``io.InputWarning``) go: a ``warning`` event, or a line on stderr without a reporter."""
    if reporter is not None:
        return lambda message: reporter({"event": "warning", "message": message})
    return lambda message: print(f"warning: {message}", file=sys.stderr)


def warn_shared_files(inputs: dict[str, Path]) -> None:
    """An input warning when one file is given for several roles (each role should be its own image)."""
    import warnings

    by_file: dict[Path, list[str]] = {}
    for role, path in inputs.items():
        by_file.setdefault(path.resolve(), []).append(role)
    for path, roles in by_file.items():
        if len(roles) > 1:
            warnings.warn(f"{path}: the same file is given for inputs {', '.join(roles)}; each input should be its "
                          "own image", io.InputWarning, stacklevel=2)


def _predictor(args: argparse.Namespace, reporter):
    from multimodalseg.inference.devices import configure_threads
    from multimodalseg.inference.predictor import Predictor, load_model
    from multimodalseg.tasks import get_task

    task = get_task(args.task)
    if args.convention is not None:
        task.values(args.convention)
    configure_threads(args.threads)
    options = report_options(args, task)
    bundle = getattr(args, "model_loader", load_model)(task.id, args.model)  # serve: its model cache
    return Predictor(bundle, args.device, tta=args.tta, sw_batch_size=args.sw_batch_size, overlap=args.overlap,
                     progress=reporter, precision=args.precision, crop=not args.no_crop, modality=args.modality,
                     convention=args.convention, report_options=options,
                     cascade=segment_options.cascade_options(args, bundle),
                     **segment_options.skull_strip_options(args))


def _has_pet(task) -> bool:
    return any("PET" in spec.modality.upper().split("|") for spec in task.inputs)


def report_options(args: argparse.Namespace, task) -> dict:
    """Options of the task's report extras: the SUV values (refused for a task without PET) and the spine
    options (``segment_options.spine_options``)."""
    overrides = suv_overrides(args)
    if not _has_pet(task) and (overrides.any_given() or overrides.already_suv):
        raise UserError(f"the SUV options (--weight, --dose, ...) are for PET tasks; task {task.id} has no PET")
    return {"suv": overrides, **segment_options.spine_options(args, task)}


def _run(args: argparse.Namespace, reporter) -> int:
    batch = args.input_dir is not None or args.output_dir is not None
    if batch:
        if args.input or args.output or args.preview or args.report or args.stats or args.transform:
            raise UserError("batch mode (--input-dir/--output-dir) takes no --input, -o, --preview, --report, "
                            "--stats or --transform")
        if not (args.input_dir and args.output_dir):
            raise UserError("batch mode needs both --input-dir and --output-dir")
        from multimodalseg.inference.batch import run_batch

        return run_batch(args, reporter, lambda: _predictor(args, reporter))
    if not args.input or not args.output:
        raise UserError("give the inputs (--input ROLE=PATH ...) and -o OUT, or --input-dir and --output-dir")
    from multimodalseg.preprocessing import check_roles
    from multimodalseg.tasks import get_task

    inputs = parse_inputs(args.input)
    task = get_task(args.task)
    # Cheap checks before torch and the model load: roles, files present, outputs writable.
    check_roles(task, inputs)
    for path in inputs.values():
        if not path.exists():
            raise UserError("file not found", path)
    transform_paths = segment_options.parse_transforms(args.transform, task)
    for role, path in transform_paths.items():
        if role not in inputs:
            raise UserError(f"--transform for input '{role}', but no --input {role}=PATH was given")
        if not path.exists():
            raise UserError("file not found", path)
    warn_shared_files(inputs)
    output = check_output(args.output, inputs)
    from multimodalseg.dicom_seg import is_seg_path, source_files
    from multimodalseg.inference.extras import image_path

    seg = is_seg_path(output)
    if seg:  # DICOM SEG: refused now for a non-DICOM reference; the extra volumes go beside it as NIfTI
        source_files(inputs[task.reference_role])
    volumes_base = output.with_name(output.name[:-4] + ".nii.gz") if seg else output
    for name in ("disagreement", "fused"):  # outputs written beside the label map must not replace an input
        check_output(image_path(volumes_base, name), {**inputs, **transform_paths})
    preview = check_output(args.preview, inputs, (".png",)) if args.preview else None
    report_path = check_output(args.report, inputs, (".json",)) if args.report else None
    if args.stats and not _has_pet(task):
        raise UserError(f"--stats: task {task.id} reports no per-structure statistics")
    stats_path = check_output(args.stats, inputs, (".csv",)) if args.stats else None

    transforms = segment_options.read_transforms(transform_paths)
    predictor = _predictor(args, reporter)
    result = predictor.predict(inputs, output=None if seg else output, transforms=transforms)
    outputs = dict(result.outputs)
    try:
        if seg:
            from multimodalseg.dicom_seg import write_dicom_seg

            outputs.update(result.write_images(volumes_base))
            meta = predictor.bundle.meta
            outputs["labels"] = os.fspath(write_dicom_seg(
                result.labels, inputs[task.reference_role], task, output, values=task.values(args.convention),
                algorithm=str(meta.get("id", "model")), version=str(meta.get("version", "0"))))
        if result.tables:
            from multimodalseg.inference.extras import table_path, write_tables

            paths = {name: stats_path or table_path(output, name) for name in result.tables}
            outputs.update(write_tables(result.tables, paths, list(inputs.values())))
        if preview is not None:
            written = write_preview(result, inputs[task.reference_role], preview, task, reporter)
            if written:
                outputs["preview"] = written
        if report_path is not None:
            from multimodalseg.inference.batch import write_json

            outputs["report"] = os.fspath(report_path)
            write_json({**result.report, "outputs": outputs}, report_path)
    except BaseException:
        for written in outputs.values():  # all or nothing: no label map without the preview/report asked for
            Path(written).unlink(missing_ok=True)
        raise
    finished = {"event": "finished", "outputs": outputs, "timings": result.timings,
                "volumes_ml": result.report["volumes_ml"]}
    if reporter is not None:
        reporter(finished)
    if not isinstance(reporter, JsonLines):
        print(f"wrote {outputs['labels']} ({result.timings['total']:.1f} s on {result.report['device']})",
              file=sys.stderr)
    return 0


def write_preview(result, reference_path: Path, path: Path, task, reporter) -> str | None:
    """Three-view overlay PNG through ``multimodalseg.overlay``; skipped with a warning when it is unavailable."""
    try:
        from multimodalseg.overlay import save_overlay_png
    except ImportError:
        if reporter is not None:
            reporter({"event": "warning", "message": "--preview skipped: multimodalseg.overlay is not available"})
        return None
    image = io.read_image(reference_path)
    return os.fspath(save_overlay_png(image, result.labels, path, task=task) or path)
