"""Brain extraction before the tumour network: a brain-mask bundle strips scalp, skull, orbits and neck.

The brain-tumour networks are trained, as BraTS data is given, on skull-stripped sequences; on a whole-head MR
they label the face, neck and scalp (``benchmarks/results/brain_tumor_whole_head_candidate.md``). A brain-mask
bundle (``meta["kind"] == "brain-mask"``, task ``brain-tumor``, trained by the ``brain-mask`` recipe on synthetic
whole-head and stripped cases, any contrast) predicts the brain on one sequence; :class:`BrainMasker` decides
whether the input needs it and, if so, sets every voxel outside the mask to 0 in every sequence (BraTS' background),
so the foreground crop and the normalisation then see what they see on stripped data.

``mode`` (``segment --skull-strip``):

- ``auto`` (default): strip when the input is not already stripped, i.e. when the non-zero part of the reference
  sequence is more than :data:`WHOLE_HEAD_RATIO` times the predicted brain (stripped BraTS cases: 1.0-1.1; the
  synthetic whole-head cases 2-4; real whole-head T1ce: 3-5).
- ``always``: strip (a stripped input loses at most the margin the mask does not cover).
- ``never``: the input as given.

The mask is predicted on the reference sequence at the bundle's ``mask.spacing`` (mm) in LPS (the orientation of
the training cases), the foreground probability resampled linearly onto the reference grid, thresholded at 0.5,
its largest component kept and holes filled. The report's ``skull_strip`` entry says what was decided and why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from multimodalseg import catalog, io
from multimodalseg.bundles import Bundle
from multimodalseg.errors import UserError
from multimodalseg.preprocessing import antialias, antialias_sigmas, grid_with_spacing
from multimodalseg.tasks.spec import TaskSpec

KIND = "brain-mask"
TASK = "brain-tumor"
MODES = ("auto", "always", "never")
SPACING = 4.0  # network grid (mm) of a bundle whose ``mask.spacing`` does not say
WHOLE_HEAD_RATIO = 1.5
NETWORK_MULTIPLE = 16  # the U-Net's four poolings need sides divisible by 16
MIN_SIZE = 64  # voxels per side the network input is padded to: the training crops' (``mask.min_size``)


def normalize(array: np.ndarray) -> np.ndarray:
    """One MR volume scaled for the brain-mask network: negative values to 0, divided by the 99th percentile of
    its positive voxels, clipped at 4 (training and inference both call this)."""
    x = np.clip(np.asarray(array, np.float32), 0.0, None)
    positive = x[x > 0]
    scale = float(np.percentile(positive, 99.0)) if positive.size else 1.0
    return np.clip(x / max(scale, 1e-6), 0.0, 4.0).astype(np.float32)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` with its holes filled (bool)."""
    components, n = ndimage.label(mask)
    if n == 0:
        return mask.astype(bool)
    sizes = np.bincount(components.ravel())[1:]
    return ndimage.binary_fill_holes(components == 1 + int(np.argmax(sizes)))


def forward_probability(model: torch.nn.Module, array: np.ndarray, device: torch.device | str = "cpu",
                        min_size: int = MIN_SIZE) -> np.ndarray:
    """Brain probability of a normalised ``(Z, Y, X)`` volume: the whole volume in one pass, zero-padded evenly on
    both sides to at least ``min_size`` voxels and to sides divisible by :data:`NETWORK_MULTIPLE`, cropped back.

    The padding matters: the network was trained on crops of ``min_size`` voxels (air around a small field), and
    its instance norms see the whole input, so a real 1 mm field cut tight around a stripped brain (the aurora MR,
    39 x 60 x 60 voxels at 4 mm) run unpadded got a mask of 1021 mL against 1695 mL of brain, padded 1698 mL."""
    target = [max(n, min_size) for n in array.shape]
    target = [t + (-t) % NETWORK_MULTIPLE for t in target]
    pad = [((t - n) // 2, t - n - (t - n) // 2) for t, n in zip(target, array.shape)]
    x = torch.from_numpy(np.pad(array, pad))[None, None].to(device)
    with torch.inference_mode():
        p = torch.softmax(model(x).float(), 1)[0, 1]
    box = tuple(slice(before, before + n) for (before, _), n in zip(pad, array.shape))
    return p[box].cpu().numpy()


def predict_mask(model: torch.nn.Module, image: sitk.Image, device: torch.device | str = "cpu",
                 spacing: float = SPACING, min_size: int = MIN_SIZE) -> np.ndarray:
    """The brain mask (bool, ``(Z, Y, X)`` of ``image``'s grid) of one MR volume, any contrast."""
    lps = sitk.DICOMOrient(sitk.Cast(image, sitk.sitkFloat32), "LPS")
    target = (spacing,) * 3
    grid = grid_with_spacing(lps, target)
    coarse = io.resample_to_reference(antialias(lps, antialias_sigmas(lps.GetSpacing(), target)), grid)
    probability = forward_probability(model, normalize(sitk.GetArrayFromImage(coarse)), device, min_size)
    back = io.resample_to_reference(io.copy_geometry(probability.astype(np.float32), grid), image)
    return largest_component(sitk.GetArrayFromImage(back) >= 0.5)


def load_brain_mask_model(model: str | os.PathLike | None = None) -> Bundle:
    """A brain-mask bundle: None (the newest in the catalogs), a catalog id, or a bundle file.

    Raises:
        UserError: none in the catalogs, unknown id, or a bundle of another kind.
    """
    bundle = catalog.load(TASK, model, KIND)
    if bundle.meta.get("kind") != KIND:
        kind = bundle.meta.get("kind") or "segmentation"
        raise UserError(f"model '{bundle.id}' is not a brain-mask model (kind {kind}, task {bundle.task})",
                        bundle.path)
    return bundle


class BrainMasker:
    """Strips whole-head input before the tumour network (see the module docstring).

    Args:
        mode: ``auto``, ``always`` or ``never``.
        model: brain-mask bundle (catalog id or file); None: the newest in the catalogs. Not loaded for ``never``.
        device: where the mask network runs.
    """

    def __init__(self, mode: str = "auto", model: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu") -> None:
        if mode not in MODES:
            raise UserError(f"--skull-strip must be one of {', '.join(MODES)}, got '{mode}'")
        self.mode, self.device = mode, torch.device(device)
        self.bundle, self.note = None, None
        if mode != "never":
            try:
                self.bundle = load_brain_mask_model(model)
            except UserError:
                if mode == "always" or model is not None or catalog.entries(TASK, KIND):
                    raise
                self.note = "no brain-mask model in the catalogs: whole-head input is not skull-stripped"
        self.network = self.bundle.build_model() if self.bundle is not None else None
        geometry = (self.bundle.meta if self.bundle else {}).get("mask") or {}
        self.spacing = float(geometry.get("spacing", SPACING))
        self.min_size = int(geometry.get("min_size", MIN_SIZE))

    def apply(self, raw: np.ndarray, reference: sitk.Image, reference_channel: int,
              warn: Callable[[str], None] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """``raw`` ``(C, Z, Y, X)`` on ``reference``'s grid with everything outside the brain set to 0 when the
        mode says so (a new array; ``raw`` is not changed), and the report entry."""
        if self.network is None:
            return raw, {"mode": self.mode, "applied": False, "model": None}
        self.network.to(self.device)
        image = io.copy_geometry(np.ascontiguousarray(raw[reference_channel], np.float32), reference)
        mask = predict_mask(self.network, image, self.device, self.spacing, self.min_size)
        voxel_ml = float(np.prod(reference.GetSpacing())) / 1000.0
        brain_ml = float(mask.sum()) * voxel_ml
        nonzero_ml = float(np.count_nonzero(raw[reference_channel])) * voxel_ml
        ratio = nonzero_ml / brain_ml if brain_ml > 0 else float("inf")
        applied = self.mode == "always" or (self.mode == "auto" and ratio > WHOLE_HEAD_RATIO and brain_ml > 0)
        entry = {"mode": self.mode, "applied": bool(applied), "model": self.bundle.id,
                 "version": str(self.bundle.meta.get("version")), "brain_ml": round(brain_ml, 1),
                 "nonzero_ml": round(nonzero_ml, 1), "ratio": round(ratio, 3) if np.isfinite(ratio) else None}
        if brain_ml == 0 and warn is not None:
            warn("skull stripping found no brain in the reference sequence; the input is used as given")
        if not applied:
            return raw, entry
        if warn is not None:
            warn(f"whole-head input (non-zero {nonzero_ml:.0f} mL, brain {brain_ml:.0f} mL): skull-stripped with "
                 f"{self.bundle.id} {entry['version']} before the tumour network")
        return np.where(mask[None], raw, 0).astype(raw.dtype, copy=False), entry


def masker_for(task: TaskSpec, mode: str = "auto", model: str | os.PathLike | None = None,
               device: torch.device | str = "cpu") -> BrainMasker | None:
    """The predictor's masker: one for a task on skull-stripped MR (``TaskSpec.skull_strip``), None for the others,
    which refuse anything but the defaults."""
    if task.skull_strip:
        return BrainMasker(mode, model, device)
    if mode != "auto" or model is not None:
        raise UserError(f"--skull-strip / --brain-mask-model: only for tasks on skull-stripped MR (brain-tumor), "
                        f"not {task.id}")
    return None
