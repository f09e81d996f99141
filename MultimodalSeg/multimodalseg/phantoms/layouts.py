"""Writers for the public dataset layouts, so phantom cases look like the real data each task reads.

- brain-tumor: BraTS 2020 case folders ``BraTS20_Training_001/BraTS20_Training_001_{flair,t1,t1ce,t2,seg}.nii.gz``;
- whole-heart: MM-WHS 2017 pairs ``{ct|mr}_train_1001_image.nii.gz`` / ``_label.nii.gz`` side by side;
- petmr-brain: subject folders ``sub-001/{pet,t1,aseg}.nii.gz`` plus a BIDS-style ``pet.json`` (units, dose, weight);
- spine: ``case_001/{ct,mr,label}.nii.gz``.

Multi-role cases also get one Slicer point list per role (``<role>.mrk.json``, LPS; row i is the same point in
every file) and, when misregistered, the ground-truth ITK transform ``<role>_to_<reference>.tfm`` (maps
reference points to that role's points: the transform that resamples the role onto the reference grid).
A case is written into a temporary folder and moved into place only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.io import write_image
from multimodalseg.phantoms.case import PhantomCase
from multimodalseg.registration.markups import write_markups
from multimodalseg.tasks import get_task


def case_paths(task_id: str, out_dir: str | os.PathLike, index: int = 1, modality: str | None = None,
               *, misregistered: bool = False, overlay: bool = False) -> dict[str, Path]:
    """The files :func:`write_case` writes for case number ``index``, by key: each role, ``label``,
    ``landmarks_<role>``, ``transform_<role>`` (misregistered only), ``pet_json`` (petmr-brain), ``overlay``."""
    task = get_task(task_id)
    out = Path(out_dir)
    if index < 1:
        raise UserError(f"case index must be >= 1, got {index}")
    if task.id == "brain-tumor":
        stem = f"BraTS20_Training_{index:03d}"
        folder = out / stem
        paths = {role: folder / f"{stem}_{role}.nii.gz" for role in task.roles}
        paths["label"] = folder / f"{stem}_seg.nii.gz"
    elif task.id == "whole-heart":
        if modality not in task.modalities:
            raise UserError(f"whole-heart cases need a modality ({', '.join(task.modalities)}), got {modality!r}")
        stem = out / f"{modality}_train_{1000 + index}"
        paths = {"image": Path(f"{stem}_image.nii.gz"), "label": Path(f"{stem}_label.nii.gz")}
        if overlay:
            paths["overlay"] = Path(f"{stem}_overlay.png")
        return paths
    elif task.id == "petmr-brain":
        folder = out / f"sub-{index:03d}"
        paths = {"pet": folder / "pet.nii.gz", "t1": folder / "t1.nii.gz", "label": folder / "aseg.nii.gz",
                 "pet_json": folder / "pet.json"}
    elif task.id == "spine":
        folder = out / f"case_{index:03d}"
        paths = {role: folder / f"{role}.nii.gz" for role in task.roles}
        paths["label"] = folder / "label.nii.gz"
    else:  # a new task needs its layout here
        raise UserError(f"no public layout for task {task.id}")
    for role in task.roles:
        paths[f"landmarks_{role}"] = folder / f"{role}.mrk.json"
    if misregistered:
        for role in task.roles:
            if role != task.reference_role:
                paths[f"transform_{role}"] = folder / f"{role}_to_{task.reference_role}.tfm"
    if overlay:
        paths["overlay"] = folder / "overlay.png"
    return paths


def write_case(case: PhantomCase, out_dir: str | os.PathLike, index: int = 1, *, overwrite: bool = False,
               overlay: bool = False) -> dict[str, Path]:
    """Write ``case`` in its task's public layout under ``out_dir``; returns the written paths by key.

    Args:
        case: from :func:`make_case`.
        out_dir: the dataset folder (created if missing).
        index: case number in file and folder names (1 -> ``BraTS20_Training_001``, ``ct_train_1001``).
        overwrite: replace existing files; otherwise an existing target is a UserError and nothing is written.
        overlay: also write a PNG of the reference image with the label (``overlay`` key).

    Raises:
        UserError: ``out_dir`` is a file or not writable, a target exists (without ``overwrite``).
    """
    task = get_task(case.task)
    out = Path(out_dir)
    paths = case_paths(task.id, out, index, case.modality, misregistered=bool(case.info.get("misregistered")),
                       overlay=overlay)
    if not overwrite:
        for p in paths.values():
            if p.exists():
                raise UserError("already exists; choose another folder or allow overwriting", p)
    prepare_out_dir(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    except OSError as exc:
        raise UserError(f"cannot write into folder ({exc.strerror or exc})", out) from exc
    try:
        staged = {key: staging / p.relative_to(out) for key, p in paths.items()}
        _write_files(case, staged)
        for key, p in paths.items():
            p.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged[key], p)
    except OSError as exc:
        raise UserError(f"cannot write case ({exc.strerror or exc})", out) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths


def prepare_out_dir(out: Path) -> None:
    """Create ``out`` (and parents); a UserError when a file is in the way or it cannot be written."""
    if out.exists() and not out.is_dir():
        raise UserError("is a file; the output must be a folder", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder ({exc.strerror or exc})", out) from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError("folder is not writable", out)


def _write_files(case: PhantomCase, paths: dict[str, Path]) -> None:
    task = get_task(case.task)
    for role in task.roles:
        write_image(case.images[role], paths[role])
    write_image(case.label, paths["label"])
    for key, p in paths.items():
        if key.startswith("landmarks_"):
            write_markups(p, case.landmarks[key.removeprefix("landmarks_")], case.landmark_names)
        elif key.startswith("transform_"):
            p.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteTransform(case.misregistration[key.removeprefix("transform_")], str(p))
        elif key == "pet_json":
            p.write_text(json.dumps(pet_sidecar(case), indent=2) + "\n", encoding="utf-8")
        elif key == "overlay":
            from multimodalseg.overlay import save_overlay_png  # Pillow only when pictures are asked for

            ref = task.reference_role
            save_overlay_png(case.images[ref], case.label, p, task, title=f"{case.case_id} ({ref} + label)")


def pet_sidecar(case: PhantomCase) -> dict:
    """BIDS-PET-style metadata for the phantom PET: units, injected activity and body weight (for SUV)."""
    pet = case.info.get("pet", {})
    return {
        "Modality": "PT", "TracerName": "FDG", "TracerRadionuclide": "F18",
        "Units": pet.get("units", "Bq/mL"),
        "InjectedRadioactivity": pet.get("injected_dose_mbq"), "InjectedRadioactivityUnits": "MBq",
        "BodyWeight": pet.get("body_weight_kg"), "BodyWeightUnits": "kg",
        "DecayCorrection": "START", "Description": f"MultimodalSeg synthetic phantom {case.case_id}",
    }
