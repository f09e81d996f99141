"""``multimodalseg suv-stats``: SUV statistics per structure of a label map, as CSV (and JSON)."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from multimodalseg.errors import UserError


def add_suv_arguments(parser: argparse.ArgumentParser) -> None:
    """The SUV options, shared with other commands that report SUV. Values are checked in :func:`suv_overrides`
    so that a bad value is one line and exit code 2."""
    g = parser.add_argument_group("SUV (a DICOM series takes them from its tags; these replace or fill in tags)")
    g.add_argument("--weight", metavar="KG", help="patient weight, kg")
    g.add_argument("--dose", metavar="MBQ", help="injected activity, MBq")
    g.add_argument("--injection-time", metavar="TIME", help="HHMMSS, HH:MM:SS or YYYYMMDDHHMMSS")
    g.add_argument("--scan-time", metavar="TIME", help="time the PET is decay-corrected to (scan start)")
    g.add_argument("--half-life", metavar="S", help="radionuclide half-life, s (default for files: F-18, 6586.2)")
    g.add_argument("--already-suv", action="store_true", help="the PET voxels are SUV already")


def suv_overrides(args: argparse.Namespace):
    """An :class:`~multimodalseg.suv.SUVOverrides` from the parsed options; UserError on a non-number."""
    from multimodalseg.suv import SUVOverrides

    def number(option: str, text: str | None) -> float | None:
        if text is None:
            return None
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{option} '{text}' is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"{option} must be a positive number, got {text}")
        return value

    return SUVOverrides(
        weight_kg=number("--weight", args.weight),
        dose_mbq=number("--dose", args.dose),
        injection_time=args.injection_time,
        scan_time=args.scan_time,
        half_life_s=number("--half-life", args.half_life),
        already_suv=args.already_suv,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "suv-stats",
        help="SUV statistics per structure (volume, SUV mean/SD/max/peak)",
        description="SUVbw statistics per structure of a label map. The label map is resampled onto the PET grid "
        "(nearest neighbour, physical space); volumes are counted on the label map's own grid. SUVpeak is the mean "
        "SUV within 6.2 mm (1 mL sphere) of the structure's maximum voxel.",
    )
    p.add_argument("--pet", required=True, help="PET: a DICOM series folder or a volume file (Bq/mL or SUV)")
    p.add_argument("--labels", required=True, help="label map (any grid overlapping the PET)")
    p.add_argument("--task", help="task whose label table names the values (default petmr-brain); 'none': any label "
                   "map, every nonzero value a structure")
    p.add_argument("--names", metavar="TABLE", help="task-free: a names table for the values (CSV/TSV 'value,name' "
                   "or a FreeSurferColorLUT.txt); values it does not name are 'label N'")
    add_suv_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.csv", help="CSV file to write")
    p.add_argument("--json", dest="json_output", metavar="OUT.json", help="also write a JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodalseg.io import label_values, read_image
    from multimodalseg.suv import PEAK_RADIUS_MM, load_suv, structure_statistics, write_statistics

    task = _task(args)
    outputs = [Path(args.output)] + ([Path(args.json_output)] if args.json_output else [])
    inputs = {Path(args.pet).resolve(), Path(args.labels).resolve()}
    for out in outputs:
        if out.resolve() in inputs:
            raise UserError("output would overwrite an input file", out)
        if out.is_dir():
            raise UserError("output is a folder; give a file name", out)
    if len(outputs) == 2 and outputs[0].resolve() == outputs[1].resolve():
        raise UserError("-o and --json name the same file", outputs[0])
    names_table = read_names(args.names) if args.names else {}
    overrides = suv_overrides(args)
    labels = read_image(args.labels, label=True)
    values = label_values(labels)
    if task is not None:
        _check_task_values(task, values, args.labels)
        names = {lab.value: lab.name for lab in task.labels}
    else:
        names = {v: names_table.get(v, f"label {v}") for v in values if v != 0}
    suv = load_suv(args.pet, overrides)
    try:
        rows = structure_statistics(suv.image, labels, names)
    except UserError as exc:
        raise UserError(exc.problem, args.labels) from None
    metadata = {
        "task": task.id if task is not None else None,
        "names": str(args.names) if args.names else None,
        "pet": str(args.pet),
        "labels": str(args.labels),
        "suv": suv.to_dict(),
        "grid": "labels resampled onto the PET grid (nearest neighbour); volume_ml on the label grid",
        "suv_peak": {"radius_mm": PEAK_RADIUS_MM, "definition": "mean SUV of the PET voxels whose centres lie "
                     "within radius_mm of the structure's maximum voxel"},
    }
    write_statistics(rows, args.output, args.json_output, metadata)
    if Path(args.pet).resolve() == Path(args.labels).resolve():  # after the checks: an error stays one line
        print(f"warning: {Path(args.pet).resolve()}: the same file is given for --pet and --labels", file=sys.stderr)
    present = [r for r in rows if r.pet_voxels]
    print(f"SUV statistics of {len(present)} structures ({suv.source}) written to {args.output}")
    return 0


def _task(args: argparse.Namespace):
    """The task whose table names the values, or None (task-free: ``--task none`` or ``--names``)."""
    from multimodalseg.tasks import get_task

    if args.names and args.task not in (None, "none"):
        raise UserError(f"--names is for any label map (task-free); it does not go with --task {args.task}, whose "
                        "table names the values")
    if args.names or args.task == "none":
        return None
    return get_task(args.task or "petmr-brain")


def _check_task_values(task, values: list[int], path: str) -> None:
    """Values outside the task's table are refused, with the task-free mode as the way out."""
    try:
        task.check_label_values(values, path)
    except UserError as exc:
        raise UserError(f"{exc.problem}; for another atlas use --task none (and --names TABLE)", path) from None


def read_names(path: str | Path) -> dict[int, str]:
    """A names table: lines ``value,name`` / ``value<TAB>name`` / ``value name [R G B A]`` (FreeSurferColorLUT);
    ``#`` comments, blank lines and one header line without a number are skipped.

    Raises:
        UserError: a missing file, a line without a value and a name, or a value given twice.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"cannot read names table ({exc.strerror or exc})", p) from None
    except UnicodeDecodeError:
        raise UserError("names table is not a text file", p) from None
    names: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [t.strip() for t in (line.split(",") if "," in line else re.split(r"\t|\s+", line))]
        if not parts[0].lstrip("-").isdigit():
            if not names and number == 1:
                continue  # a header line
            raise UserError(f"names table line {number}: expected 'value,name', got '{line}'", p)
        if len(parts) < 2 or not parts[1]:
            raise UserError(f"names table line {number}: value {parts[0]} has no name", p)
        value = int(parts[0])
        if value in names:
            raise UserError(f"names table line {number}: value {value} is named twice", p)
        names[value] = parts[1]
    if not names:
        raise UserError("names table names no values", p)
    return names
