"""Batch mode: find the cases of a folder in a task's public layout and segment each, resumably. No torch here.

Layouts (file suffixes ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ``.mgz``; a sub-folder named like a role is read as
a DICOM series):

- one sub-folder per case (BraTS ``BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz``, BraTS 2023
  ``...-t2f.nii.gz``/``-t1n``/``-t1c``/``-t2w``, PET/MR ``subject/pet.nii.gz`` + ``subject/t1.nii.gz``, spine
  ``case/ct.nii.gz`` + ``case/mr.nii.gz``): a file belongs to a role when its name without suffix is the role (or an
  alias) or ends with ``_ROLE`` / ``-ROLE``;
- single-input tasks also take a flat folder (MM-WHS ``ct_train_1001_image.nii.gz``): each volume is a case, named
  without ``_image``; label files (``_label``, ``_seg``) are ignored. An MM-WHS ``ct_``/``mr_`` prefix gives the
  modality of a conditional model.

Outputs are ``OUTPUT_DIR/CASE.nii.gz`` (written last, so it marks the case done), ``OUTPUT_DIR/CASE.json``
(the report), the task's tables (petmr-brain: ``CASE_suv.csv``) and extra volumes (spine: ``CASE_disagreement``,
``CASE_fused``). A case whose label map exists is skipped.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multimodalseg import io
from multimodalseg.fileutil import atomic_write_json
from multimodalseg.tasks.spec import TaskSpec

# Names used by public datasets for a role, beyond the role itself (BraTS 2023 / MSD naming).
ROLE_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "brain-tumor": {"flair": ("t2f",), "t1": ("t1n",), "t1ce": ("t1c", "t1gd"), "t2": ("t2w",)},
    "petmr-brain": {"t1": ("mr", "mprage")},
    "spine": {"mr": ("t2",)},
}
LABEL_WORDS = ("label", "seg", "labels", "segmentation", "mask")


@dataclass
class Case:
    """One case found in a batch folder: role -> path, or the problem that makes it unusable."""

    id: str
    inputs: dict[str, Path] = field(default_factory=dict)
    problem: str | None = None
    modality: str | None = None


def _stem(path: Path) -> str:
    name = path.name.lower()
    for suffix in io.VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _names(task: TaskSpec, role: str) -> tuple[str, ...]:
    return (role, *ROLE_ALIASES.get(task.id, {}).get(role, ()))


def _matches(stem: str, names: tuple[str, ...]) -> bool:
    return any(stem == n or stem.endswith(f"_{n}") or stem.endswith(f"-{n}") for n in names)


def _case_from_folder(task: TaskSpec, folder: Path) -> Case:
    case = Case(folder.name)
    entries = sorted(folder.iterdir())
    problems = []
    for spec in task.inputs:
        names = _names(task, spec.role)
        found = [p for p in entries if (p.is_file() and io.has_volume_suffix(p) and _matches(_stem(p), names))
                 or (p.is_dir() and p.name.lower() in names)]
        if len(found) == 1:
            case.inputs[spec.role] = found[0]
        elif len(found) > 1:
            problems.append(f"several files for input '{spec.role}' ({', '.join(p.name for p in found)})")
        elif spec.required:
            problems.append(f"no file for input '{spec.role}' (expected a name ending in "
                            f"{' or '.join('_' + n for n in names)})")
    case.problem = "; ".join(problems) or None
    return case


def find_cases(task: TaskSpec, folder: str | os.PathLike) -> list[Case]:
    """The cases in ``folder``, sorted by id; unusable ones carry a ``problem`` instead of failing the batch."""
    root = Path(folder)
    cases = [_case_from_folder(task, p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if len(task.inputs) == 1:
        for p in sorted(root.iterdir()):
            stem = _stem(p)
            if not p.is_file() or not io.has_volume_suffix(p) or stem.split("_")[-1] in LABEL_WORDS:
                continue
            case_id = p.name[: len(stem)].removesuffix("_image").removesuffix("_IMAGE")
            modality = next((m for m in task.modalities if stem.startswith(f"{m}_")), None)
            cases.append(Case(case_id, {task.inputs[0].role: p}, modality=modality))
    return sorted(cases, key=lambda c: c.id)


def output_paths(output_dir: str | os.PathLike, case_id: str) -> tuple[Path, Path]:
    """The label map and report paths of a case."""
    root = Path(output_dir)
    return root / f"{case_id}.nii.gz", root / f"{case_id}.json"


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Write JSON atomically (temporary file beside the target, then rename)."""
    return atomic_write_json(path, data)


def _emit(reporter: Callable[[dict[str, Any]], None] | None, event: dict[str, Any]) -> None:
    if reporter is not None:
        reporter(event)


def run_batch(args: Any, reporter: Callable[[dict[str, Any]], None] | None, make_predictor: Callable[[], Any]) -> int:
    """Segment every case of ``args.input_dir`` into ``args.output_dir``; see the module docstring.

    A case that cannot be segmented (missing or ambiguous input, unreadable image, ...) is reported (an ``error``
    event with its ``case`` and a line on stderr) and skipped; the others go on. The model is loaded once.

    Returns:
        0 when every case is done or was done before.

    Raises:
        UserError: at the end, naming the cases that failed (exit code 2); also for a missing input folder, an
            unwritable output folder, no cases at all, or a model that cannot be loaded.
    """
    from multimodalseg.errors import UserError
    from multimodalseg.inference.extras import image_path, table_path, write_tables
    from multimodalseg.tasks import get_task

    task = get_task(args.task)
    root, out = Path(args.input_dir), Path(args.output_dir)
    if not root.is_dir():
        raise UserError("input folder not found", root)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=".partial-", dir=out):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to the output folder ({exc.strerror or exc})", out) from exc
    cases = find_cases(task, root)
    if not cases:
        raise UserError(f"no {task.id} cases found (expected one sub-folder per case with files named by role: "
                        f"{', '.join(task.roles)})", root)
    todo = []
    skipped = []
    for case in cases:
        if output_paths(out, case.id)[0].exists():
            skipped.append(case.id)
            _emit(reporter, {"event": "skipped", "case": case.id, "reason": "already segmented"})
        else:
            todo.append(case)
    failed: dict[str, str] = {}
    done: list[str] = []
    internal = False
    predictor = make_predictor() if todo else None
    for k, case in enumerate(todo):
        labels_path, report_path = output_paths(out, case.id)
        try:
            if case.problem:
                raise UserError(case.problem, root / case.id)
            result = predictor.predict(case.inputs, modality=predictor.modality or case.modality,
                                       span=(k / len(todo), (k + 1) / len(todo)), extra={"case": case.id})
            outputs = {"labels": os.fspath(labels_path), "report": os.fspath(report_path)}
            tables = {name: table_path(labels_path, name) for name in result.tables}  # CASE_suv.csv (petmr-brain)
            outputs.update({name: os.fspath(p) for name, p in tables.items()})
            images = {name: image_path(labels_path, name) for name in result.images}  # spine: disagreement, fused
            outputs.update({name: os.fspath(p) for name, p in images.items()})
            try:
                write_tables(result.tables, tables, list(case.inputs.values()))
                result.write_images(labels_path)
                write_json({**result.report, "case": case.id, "outputs": outputs}, report_path)
                result.write(labels_path)  # last: its presence marks the case done
            except BaseException:
                for p in [report_path, *tables.values(), *images.values()]:
                    p.unlink(missing_ok=True)
                raise
            done.append(case.id)
            _emit(reporter, {"event": "finished", "case": case.id, "outputs": outputs, "timings": result.timings,
                             "volumes_ml": result.report["volumes_ml"]})
        except Exception as exc:  # one bad case must not stop the batch
            user = isinstance(exc, UserError)
            internal |= not user
            message = str(exc) if user else f"internal error: {type(exc).__name__}: {exc}"
            failed[case.id] = message
            _emit(reporter, {"event": "error", "case": case.id, "message": message, "code": 2 if user else 1})
            print(f"multimodalseg segment: case {case.id} failed: {message}", file=sys.stderr)
    _emit(reporter, {"event": "summary", "done": done, "skipped": skipped, "failed": failed})
    if failed:
        text = f"{len(failed)} of {len(cases)} cases failed ({', '.join(failed)}); {len(done)} segmented, " \
               f"{len(skipped)} already done"
        if internal:
            raise RuntimeError(text)
        raise UserError(text, root)
    return 0
