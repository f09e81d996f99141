"""The fused CT-MR image as MCF's training input (the spine paper's pipeline, METHODS §E): the frozen fusion network
fuses each training case once, on its CT grid exactly as ``segment`` does at inference, and the result is cached.

- :func:`fusion_runner` loads the fusion bundle the config names (catalog id or file) into an inference
  :class:`~multimodalseg.inference.fusion.FusionRunner`: frozen weights, the bundle's own padding and scaling.
- :func:`fused_volume` fuses one case's CT (HU) and MR (on the CT grid) and caches the ``(Z, Y, X)`` float16
  result under ``cache/<case>-<folder hash>-<variant>-<fusion sha256[:12]>-<pad>.npy``: a rerun, a resumed run
  or a second recipe with the same fusion bundle reads it instead of fusing again.
- Variants: ``both`` (the pair), ``no_mr`` (the MR replaced by zeros) and ``no_ct`` (the CT replaced by zeros, i.e.
  0 HU): the images the predictor fuses when a user gives one modality and a zero image for the other (the
  real-image benchmark's stand-in). MCF's ``modality_dropout`` trains on them.
- :func:`network_input` turns a fused volume into MCF's 1-channel input on the network grid (the predictor's
  ``inference.spine_extras.fused_channels`` does the same at inference).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from multimodalseg import preprocessing as prep
from multimodalseg.inference.spine_extras import FUSED_INPUT, fused_channels

VARIANTS = ("both", "no_mr", "no_ct")


def fusion_runner(model: str | os.PathLike | None, *, pad: bool = True, device: str = "cpu") -> Any:
    """The frozen fusion network of ``model`` (catalog id, bundle file; None: the catalog's newest)."""
    from multimodalseg.inference.fusion import FusionRunner, load_fusion_model

    runner = FusionRunner(load_fusion_model(model), device, pad=pad)
    runner.model.eval().requires_grad_(False)
    return runner


def fusion_reference(runner: Any) -> dict[str, Any]:
    """What the MCF bundle records about the fusion network it was trained on (its inference loads the same)."""
    bundle = runner.bundle
    return {"model": bundle.id, "version": str(bundle.meta.get("version")), "sha256": bundle.sha256,
            "pad": runner.pad_to is not None}


def _variant_inputs(ct_hu: np.ndarray, mr: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    if variant == "no_mr":
        return ct_hu, np.zeros_like(mr)
    if variant == "no_ct":
        return np.zeros_like(ct_hu), mr
    if variant != "both":
        raise ValueError(f"unknown fusion variant '{variant}' (use one of {VARIANTS})")
    return ct_hu, mr


def fused_volume(runner: Any, case_id: str, ct_hu: np.ndarray, mr: np.ndarray, variant: str = "both",
                 cache: str | os.PathLike | None = None, source: str = "") -> np.ndarray:
    """The fused ``(Z, Y, X)`` float32 volume in [0, 1] of one case on its CT grid (see the module docstring).

    ``source`` (the dataset folder) goes into the cache key: case ids repeat across folders. A cache entry of
    another shape is recomputed; a dataset regenerated in place needs a fresh cache folder.
    """
    from multimodalseg.inference.fusion import scale_inputs

    path = None
    if cache is not None:
        pad = "x".join(map(str, runner.pad_to)) if runner.pad_to is not None else "nopad"
        tag = hashlib.sha256(f"{os.path.abspath(source)}/{case_id}".encode()).hexdigest()[:8]
        path = Path(cache) / f"{case_id}-{tag}-{variant}-{runner.bundle.sha256[:12]}-{pad}.npy"
        if path.is_file():
            cached = np.load(path)
            if cached.shape == ct_hu.shape:
                return cached.astype(np.float32)
    ct01, mr01 = scale_inputs(*_variant_inputs(ct_hu, mr, variant), runner.settings)
    t0 = time.perf_counter()
    fused = runner.fuse(ct01, mr01)
    print(f"fused {case_id} ({variant}, {ct_hu.shape[0]} slices) in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr, flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, fused.astype(np.float16))
        tmp.replace(path)  # atomic: an interrupted run leaves no half-written cache entry
    return fused


def network_input(fused: np.ndarray, reference: sitk.Image, spacing: Sequence[float] | None) -> np.ndarray:
    """MCF's ``(1, Z, Y, X)`` input on the network grid from a fused volume on the CT grid ``reference``."""
    array, _ = prep.to_spacing(fused_channels(fused), reference, spacing)
    return array


__all__ = ["FUSED_INPUT", "VARIANTS", "fused_volume", "fusion_reference", "fusion_runner", "network_input"]
