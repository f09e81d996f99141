"""Save an edited result as a training case in the task's public layout, with a JSON manifest.

Plain Python (SimpleITK through ``multimodalseg.io``; no torch). The layouts are the phantom writer's
(``multimodalseg.phantoms.layouts``), which ``training.datasets`` reads back:

- brain-tumor: ``BraTS20_Training_NNN/BraTS20_Training_NNN_{flair,t1,t1ce,t2,seg}.nii.gz`` (ET = 4);
- petmr-brain: ``sub-NNN/{pet,t1,aseg}.nii.gz`` (FreeSurfer values);
- whole-heart: ``{ct,mr}_train_NNNN_{image,label}.nii.gz`` side by side (MM-WHS values, NNNN from 1001);
- spine: ``case_NNN/{ct,mr,label}.nii.gz``.

Every image is written on the reference input's grid (the others resampled in physical space, as inference does),
so a case is co-registered like the public datasets. An existing case is never overwritten: the next free number
is taken, and a case folder (or, for MM-WHS, the manifest file) is created exclusively before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from multimodalseg import __version__ as backendVersion
from multimodalseg import io
from multimodalseg.errors import UserError
from multimodalseg.tasks import TaskSpec

from MultimodalSegLib.Command import checkInputs

MANIFEST_FORMAT = "multimodalseg-training-case/1"


@dataclass(frozen=True)
class CaseLayout:
    """Where one case's files go, relative to the training folder."""

    caseId: str
    images: dict[str, str]  # role -> relative path
    label: str
    manifest: str
    folder: str | None  # the case folder created exclusively (None: flat MM-WHS layout)


def caseLayout(task: TaskSpec, number: int, modality: str | None = None) -> CaseLayout:
    """The file names of case ``number`` (1-based) of ``task``: the phantom writer's public layouts
    (``multimodalseg.phantoms.layouts.case_paths``) plus a manifest beside the label map.

    Raises:
        UserError: whole-heart without ``modality`` ``ct`` or ``mr`` (MM-WHS names carry it).
    """
    from multimodalseg.phantoms.layouts import case_paths  # the phantom package is only needed here

    paths = case_paths(task.id, ".", number, modality.lower() if modality else None)
    label = paths["label"]
    if task.id == "whole-heart":  # flat: ct_train_1001_image.nii.gz beside ct_train_1001_label.nii.gz
        caseId = label.name.removesuffix("_label.nii.gz")
        folder, manifest = None, label.with_name(f"{caseId}_manifest.json")
    else:
        caseId = label.parent.name
        folder, manifest = label.parent.as_posix(), label.parent / "manifest.json"
    return CaseLayout(caseId, {r: paths[r].as_posix() for r in task.roles}, label.as_posix(), manifest.as_posix(),
                      folder)


@dataclass(frozen=True)
class SavedCase:
    caseId: str
    root: Path
    files: dict[str, Path]  # role or "label" -> written file
    manifest: Path


def _reserve(task: TaskSpec, root: Path, modality: str | None, maxCases: int = 100000) -> CaseLayout:
    """Create the next free case exclusively (folder, or manifest file for the flat layout) and return it."""
    for number in range(1, maxCases):
        layout = caseLayout(task, number, modality)
        paths = [root / p for p in (*layout.images.values(), layout.label, layout.manifest)]
        if any(p.exists() for p in paths):
            continue
        try:
            if layout.folder is not None:
                (root / layout.folder).mkdir(parents=True, exist_ok=False)
            else:
                (root / layout.manifest).parent.mkdir(parents=True, exist_ok=True)
                with open(root / layout.manifest, "x", encoding="utf-8"):
                    pass
        except FileExistsError:
            continue  # taken between the check and the creation: try the next number
        return layout
    raise UserError(f"no free case number below {maxCases}", root)


def saveTrainingCase(
    task: TaskSpec,
    root: str | os.PathLike,
    images: Mapping[str, str | os.PathLike],
    label: str | os.PathLike,
    *,
    source: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    modality: str | None = None,
    now: datetime | None = None,
) -> SavedCase:
    """Write one training case (inputs + label map + manifest) under ``root``.

    Args:
        task: the task specification.
        root: the training folder (created if needed).
        images: role -> exported input volume (world coordinates, registration applied).
        label: the label map in the task's own values (FreeSurfer, BraTS ET = 4, MM-WHS, spine 1/2).
        source: what the case came from (scene, node names), stored in the manifest.
        model: the model that made the first result (``id``, ``version``), stored in the manifest.
        modality: ``ct`` or ``mr`` (whole heart only).
        now: the time written in the manifest (default: now, UTC).

    Returns:
        The :class:`SavedCase`.

    Raises:
        UserError: a required input missing, unreadable files, label values outside the task's table, a label
            map that does not overlap the reference, or an unwritable folder. Nothing is left behind on error.
    """
    checkInputs(task, images)
    reference = io.read_image(images[task.reference_role])
    labelImage = io.read_image(label, label=True)
    task.check_label_values(io.label_values(labelImage), os.fspath(label))
    if not io.same_geometry(labelImage, reference):
        if io.overlap_fraction(labelImage, reference) <= 0.0:
            raise UserError("label map does not overlap the reference input", label)
        labelImage = io.resample_to_reference(labelImage, reference, label=True)
    volumes: dict[str, sitk.Image] = {}
    for role, path in images.items():
        if path in (None, ""):
            continue
        image = reference if role == task.reference_role else io.read_image(path)
        if role != task.reference_role and not io.same_geometry(image, reference):
            image = io.resample_to_reference(image, reference)
        volumes[role] = image

    rootPath = Path(root)
    try:
        rootPath.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the training folder ({exc.strerror or exc})", rootPath) from exc
    layout = _reserve(task, rootPath, modality)
    written: dict[str, Path] = {}
    try:
        for role, image in volumes.items():
            written[role] = io.write_image(image, rootPath / layout.images[role])
        written["label"] = io.write_image(sitk.Cast(labelImage, sitk.sitkUInt16), rootPath / layout.label)
        manifest = {
            "format": MANIFEST_FORMAT,
            "task": task.id,
            "case": layout.caseId,
            "created": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
            "source": dict(source or {}),
            "model": dict(model or {}),
            "modality": (modality or "").lower() or None,
            "label_values": "task",  # the task's own values (see multimodalseg tasks --json)
            "files": {k: str(p.relative_to(rootPath)) for k, p in written.items()},
            "backend_version": backendVersion,
        }
        manifestPath = rootPath / layout.manifest
        manifestPath.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        if layout.folder is not None:
            shutil.rmtree(rootPath / layout.folder, ignore_errors=True)
        else:
            for p in [*written.values(), rootPath / layout.manifest]:
                p.unlink(missing_ok=True)
        raise
    return SavedCase(layout.caseId, rootPath, written, manifestPath)
