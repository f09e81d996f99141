"""Spine training data: paired CT/MR cases prepared exactly as the inference engine prepares them (METHODS §E).

A dataset folder holds ``case_NNN/{ct,mr}.nii.gz`` and optionally ``label.nii.gz`` (the spine layout of
``training.datasets``; ``multimodalseg phantom --task spine`` writes it). The MR may be on its own grid: it is
resampled onto the CT grid in physical space, through ``mr_to_ct.tfm`` or ``transform.tfm`` in the case folder
when one is there (fixed CT -> moving MR, as ``multimodalseg register`` writes it and as the phantoms ship their
ground truth), else as stored (already registered).

- :func:`load_cases` gives, per case, the segmentation input (``preprocessing.normalize_channels`` then
  ``to_spacing``: the arrays the predictor feeds the network) and the CT/MR on the CT grid in raw units (for
  the fusion network, scaled by ``multimodalseg.inference.fusion.scale_inputs``).
- :func:`choose_labelled` keeps the labels of a seeded fraction of the labelled cases (20 % for MCF's
  semi-supervised setting) and hides the others'.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from multimodalseg import preprocessing as prep
from multimodalseg.errors import UserError
from multimodalseg.registration import read_transform
from multimodalseg.tasks import get_task

from training.datasets import find_cases

TRANSFORM_NAMES = ("mr_to_ct.tfm", "transform.tfm", "mr_to_ct.h5", "transform.h5")


@dataclass
class SpineCase:
    """One prepared case.

    Attributes:
        id: case id (folder name).
        image: ``(2, Z, Y, X)`` float32, channels ``ct``, ``mr`` normalised as the task says, on the network grid.
        label: ``(Z, Y, X)`` training indices on the network grid, or None (unlabelled).
        ct_hu, mr: ``(Z, Y, X)`` float32 on the CT grid in raw units (HU, MR intensity) for fusion.
        reference: the CT grid (geometry of ``ct_hu``/``mr``), to bring a fused volume onto the network grid.
        grid: the network grid (geometry of ``image``/``label``; its direction gives the slice plane's axis).
    """

    id: str
    image: np.ndarray
    label: np.ndarray | None
    ct_hu: np.ndarray
    mr: np.ndarray
    reference: sitk.Image | None = None
    grid: sitk.Image | None = None


def case_transform(folder: Path | None) -> sitk.Transform | None:
    """The MR -> CT registration transform stored in a case folder, or None."""
    if folder is None:
        return None
    for name in TRANSFORM_NAMES:
        if (folder / name).is_file():
            return read_transform(folder / name)
    return None


def load_cases(root: str | os.PathLike, spacing: Sequence[float] | None, *, with_labels: bool = True,
               limit: int | None = None) -> list[SpineCase]:
    """Read and prepare every case of a spine dataset folder (sorted by id).

    Args:
        spacing: network spacing (ITK order, mm) of the segmentation input; None keeps the CT's.
        with_labels: read the label maps (False: every case unlabelled, e.g. fusion training).
        limit: only the first ``limit`` cases.

    Raises:
        UserError: no cases, a case without CT or MR, unreadable files.
    """
    task = get_task("spine")
    _, cases = find_cases(task, root, "spine")
    cases = sorted(cases, key=lambda c: c.id)[:limit]
    out = []
    for case in cases:
        missing = [r for r in task.roles if r not in case.images]
        if missing:
            raise UserError(f"case {case.id} lacks {', '.join(missing)}", case.folder)
        paths = {r: case.images[r].path for r in task.roles}
        transform = case_transform(case.folder)
        transforms = {"mr": transform} if transform is not None else None
        images = prep.load_inputs(task, paths)
        raw, reference = prep.to_reference_grid(task, images, paths, transforms)
        label = prep.load_label(task, case.label, reference) if with_labels and case.label is not None else None
        array, grid = prep.to_spacing(prep.normalize_channels(task, raw), reference, spacing)
        if label is not None:
            label = prep.labels_to_grid(label, reference, grid)
        ct, mr = raw[task.roles.index("ct")].copy(), raw[task.roles.index("mr")].copy()
        out.append(SpineCase(case.id, array, label, ct, mr, reference, grid))
    if not out:
        raise UserError("no spine cases found", root)
    return out


def choose_labelled(cases: Sequence[SpineCase], fraction: float, seed: int = 0) -> list[str]:
    """Ids of ``round(fraction × labelled cases)`` (at least 1) labelled cases, chosen with ``seed``."""
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"labelled fraction must be in (0, 1], got {fraction}")
    labelled = sorted(c.id for c in cases if c.label is not None)
    if not labelled:
        raise UserError("no labelled case: semi-supervised training needs some labels")
    n = max(1, int(round(fraction * len(labelled))))
    order = np.random.default_rng(seed).permutation(len(labelled))
    return sorted(labelled[i] for i in order[:n])
