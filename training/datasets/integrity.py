"""The dataset check run before any training: every problem of every case, with its file, in one report.

Checks per case: problems the layout reader noted; required modalities present; every file readable as a 3D
volume with finite voxels and a sane geometry (``io.read_image``); every modality overlapping the reference
input in physical space and, for layouts that promise co-registration (BraTS, MSD, MM-WHS), on the reference's
grid; label values in the task's table (``task.check_label_values``, with the case's convention and the task's
aliases) and the label map overlapping (co-registered: on) the reference grid. Training refuses to start on
any problem, instead of crashing in epoch 3.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from multimodalseg import io
from multimodalseg.errors import UserError
from multimodalseg.preprocessing import MIN_OVERLAP
from multimodalseg.tasks.spec import TaskSpec

from training.datasets.base import Case, read_input


@dataclass(frozen=True)
class Problem:
    """One problem: the case, the file (or folder) concerned, and what is wrong."""

    case: str
    path: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.case}: {where}{self.message}"


@dataclass
class IntegrityReport:
    """The result of :func:`check_dataset`: the cases seen and the problems found."""

    task: str
    cases: int
    labelled: int
    problems: list[Problem] = field(default_factory=list)
    layout: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        head = (f"dataset check, task {self.task}" + (f", layout {self.layout}" if self.layout else "")
                + f": {self.cases} cases ({self.labelled} labelled)")
        if self.ok:
            return f"{head}: no problems found"
        bad = len({p.case for p in self.problems})
        lines = [f"{head}: {len(self.problems)} problem{'s' * (len(self.problems) > 1)} in {bad} "
                 f"case{'s' * (bad > 1)}"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)

    def raise_if_problems(self) -> None:
        """A one-line UserError summarising the report (print :meth:`format` first for the full list)."""
        if self.problems:
            bad = len({p.case for p in self.problems})
            raise UserError(f"dataset check found {len(self.problems)} problem(s) in {bad} case(s), first: "
                            f"{self.problems[0]}; fix them or remove the cases before training")


def check_dataset(task: TaskSpec, cases: Iterable[Case], layout: str = "") -> IntegrityReport:
    """Check every case (reads every file once) and return the report; raises nothing."""
    cases = list(cases)
    report = IntegrityReport(task.id, len(cases), sum(c.labelled for c in cases), layout=layout)
    for case in cases:
        report.problems.extend(check_case(task, case))
    if cases and not report.labelled:
        report.problems.append(Problem("dataset", None, "no case has a label map; supervised training needs some"))
    return report


def check_case(task: TaskSpec, case: Case) -> list[Problem]:
    problems = [Problem(case.id, _path(case.folder), note) for note in case.notes]
    for spec in task.inputs:  # a training case needs every input, optional ones too (dropout simulates missing ones)
        if spec.role not in case.images:
            problems.append(Problem(case.id, _path(case.folder), f"missing {spec.title} image ({spec.role})"))
    images: dict[str, sitk.Image] = {}
    cache: dict = {}
    failed: set = set()
    for role, ref in case.images.items():
        if ref.path in failed:  # one unreadable 4D file is one problem, not one per channel
            continue
        try:
            images[role] = read_input(ref, cache)
        except UserError as exc:
            problems.append(Problem(case.id, exc.path or ref.describe(), exc.problem))
            failed.add(ref.path)
    reference = images.get(task.reference_role)
    if reference is not None:
        for role, image in images.items():
            if role != task.reference_role:
                message = _geometry_problem(image, reference, task.reference_role, case.co_registered)
                if message:
                    problems.append(Problem(case.id, case.images[role].describe(), message))
    if case.label is not None:
        problems.extend(_check_label(task, case, reference))
    return problems


def _check_label(task: TaskSpec, case: Case, reference: sitk.Image | None) -> list[Problem]:
    path = os.fspath(case.label)
    try:
        label = io.read_image(case.label, label=True)
        task.check_label_values(io.label_values(label), path, case.convention)
    except UserError as exc:
        return [Problem(case.id, exc.path or path, exc.problem)]
    if reference is not None:
        message = _geometry_problem(label, reference, task.reference_role, case.co_registered)
        if message:
            return [Problem(case.id, path, message.replace("image", "label map", 1))]
    return []


def _geometry_problem(image: sitk.Image, reference: sitk.Image, ref_role: str, co_registered: bool) -> str | None:
    if io.same_geometry(image, reference):
        return None
    if io.overlap_fraction(image, reference) < MIN_OVERLAP:
        return (f"image does not overlap the reference '{ref_role}' in physical space "
                f"(bounds {_bounds(image)} vs {_bounds(reference)} mm)")
    if co_registered:
        return f"image grid differs from the reference '{ref_role}' ({_difference(image, reference)}); " \
               "this layout's modalities must share one grid"
    return None


def _difference(a: sitk.Image, b: sitk.Image) -> str:
    parts = []
    if a.GetSize() != b.GetSize():
        parts.append(f"size {a.GetSize()} vs {b.GetSize()}")
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5):
        parts.append(f"spacing {_round(a.GetSpacing())} vs {_round(b.GetSpacing())}")
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-5):
        parts.append(f"origin {_round(a.GetOrigin())} vs {_round(b.GetOrigin())}")
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5):
        parts.append("direction differs")
    return ", ".join(parts)


def _round(values: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in values)


def _bounds(image: sitk.Image) -> str:
    lo, hi = io.physical_bounds(image)
    return "[" + ", ".join(f"{a:.0f}..{b:.0f}" for a, b in zip(lo, hi)) + "]"


def _path(path: os.PathLike | None) -> str | None:
    return None if path is None else os.fspath(path)
