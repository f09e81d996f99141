"""Per-task extras of a segmentation report (PET/MR: SUV statistics per structure). No torch.

A task names its hook in ``TaskSpec.report_extras = "module:function"``; the predictor calls it in two phases::

    extra = fn(task, inputs, images, options)      # before the network pass: read and check what the extra needs
    data, table = extra.finish(labels, names)      # after it: compute from the label map

- ``inputs``: role -> what the caller gave (file, DICOM folder or ``sitk.Image``); ``images``: role -> the images
  as read; ``options``: ``Predictor(report_options=...)`` (the ``segment`` command passes ``{"suv":
  SUVOverrides}``).
- The first phase raises ``UserError`` for bad options or inputs (a PET DICOM without PatientWeight), so the
  error comes before the expensive network pass; it returns None when the task has nothing to add for this case.
- ``extra.name`` is the report key and the table's name (``CASE_<name>.csv``); ``extra.notes`` are one-line
  warnings the predictor emits as progress events (e.g. "SUV not computed").
- ``finish`` gets the label map (output values, on the reference grid) and ``names`` (value -> label name in the
  output convention); it returns JSON-ready data for the report and an optional CSV text.
- Optionally the extra has ``progress_stage = (name, weight[, before])`` for long work (spine: the fusion): the
  predictor adds that stage before ``before`` (default ``write``, :func:`place_stage`) and runs ``finish`` inside
  it, or, before another stage, the extra's ``network_input`` (spine's fused-input bundles); the extra reports the
  fraction done within it through ``options["progress"]`` (a callable the predictor always passes).
- Optionally the extra has ``network_input(raw, task, box) -> (C, Z, Y, X)``: the network's input made from the
  raw stack on the reference grid, cropped to ``box``, for bundles whose ``preprocessing.input`` is not
  ``channels`` (spine: ``fused``, the fused CT-MR image).
- ``options`` always holds ``bundle_meta``, the segmentation bundle's metadata.
- Optionally the extra has ``images`` (name -> ``sitk.Image`` on the reference grid), filled by ``finish``; the
  predictor writes them beside the label map as ``<out>_<name>`` (:func:`image_path`; spine: ``fused``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import SimpleITK as sitk

from multimodalseg import io
from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write_text
from multimodalseg.tasks.spec import TaskSpec


class ReportExtra(Protocol):
    """What a ``report_extras`` hook returns (see the module docstring)."""

    name: str
    notes: Sequence[str]

    def finish(self, labels: sitk.Image, names: Mapping[int, str]) -> tuple[dict[str, Any], str | None]: ...


def prepare(task: TaskSpec, inputs: Mapping[str, Any], images: Mapping[str, sitk.Image],
            options: Mapping[str, Any]) -> ReportExtra | None:
    """Run the first phase of the task's hook; None when the task has no hook (or nothing to add)."""
    if not task.report_extras:
        return None
    module_name, _, attr = task.report_extras.partition(":")
    if not attr:
        raise ValueError(f"task {task.id}: report_extras must be 'module:function', got '{task.report_extras}'")
    hook = getattr(importlib.import_module(module_name), attr)
    return hook(task, inputs, images, options)


def place_stage(weights: Mapping[str, float], stage: Sequence[Any]) -> dict[str, float]:
    """Progress weights with an extra's ``(name, weight[, before])`` stage inserted before ``before``
    (default ``write``; at the end when ``before`` is not a stage)."""
    before = stage[2] if len(stage) > 2 else "write"
    out: dict[str, float] = {}
    for name, weight in weights.items():
        if name == before:
            out[str(stage[0])] = float(stage[1])
        out[name] = weight
    out.setdefault(str(stage[0]), float(stage[1]))
    return out


def table_path(label_path: str | os.PathLike, name: str) -> Path:
    """Where the table ``name`` of a label map goes: ``seg.nii.gz`` -> ``seg_<name>.csv`` beside it."""
    p = Path(label_path)
    lower = p.name.lower()
    suffix = next((s for s in io.VOLUME_SUFFIXES if lower.endswith(s)), p.suffix)
    return p.with_name(f"{p.name[: len(p.name) - len(suffix)]}_{name}.csv")


def image_path(label_path: str | os.PathLike, name: str) -> Path:
    """Where the extra volume ``name`` of a label map goes: ``seg.nii.gz`` -> ``seg_<name>.nii.gz`` (the label
    map's format) beside it (spine: ``_disagreement``, ``_fused``)."""
    p = Path(label_path)
    lower = p.name.lower()
    suffix = next((s for s in io.VOLUME_SUFFIXES if lower.endswith(s)), p.suffix)
    return p.with_name(f"{p.name[: len(p.name) - len(suffix)]}_{name}{suffix}")


def write_tables(tables: Mapping[str, str], paths: Mapping[str, str | os.PathLike],
                 inputs: Sequence[str | os.PathLike] = ()) -> dict[str, str]:
    """Write each table atomically to ``paths[name]``; returns ``{name: path}``. A table that would replace an
    input file is a UserError (nothing written)."""
    resolved = {Path(i).resolve() for i in inputs}
    for name in tables:
        if Path(paths[name]).resolve() in resolved:
            raise UserError("statistics table would overwrite an input file; choose another name", paths[name])
    return {name: os.fspath(atomic_write_text(paths[name], text)) for name, text in tables.items()}
