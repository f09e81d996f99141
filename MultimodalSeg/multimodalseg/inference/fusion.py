"""CT-MR fusion of a spine case with a CDDFuse bundle: MR onto the CT grid, slice-wise fusion, EN/MI/SF/VIF.

The steps (``multimodalseg fuse`` and ``segment --task spine`` both call :func:`fuse_case`):

1. The MR is resampled onto the CT grid in physical space (``preprocessing.to_reference_grid``), through the
   registration transform when one is given (``--transform``, fixed CT -> moving MR as ``register`` writes it);
   a pair whose extents do not overlap is refused with "register first".
2. Intensities are scaled to [0, 1] exactly as the bundle's training did (:func:`scale_inputs`): the CT through
   the HU window ``fusion.ct_window`` (default -250..1250 HU: fat and muscle stay apart, cortical bone saturates
   last), the MR divided by the ``fusion.mr_percentile`` (99.5) percentile of its positive voxels and clipped.
3. Slices along ``fusion.axis`` (0: the z index axis, axial on an axis-aligned CT) go through
   ``CDDFuse.forward``, which pads each slice to the bundle's ``pad_to`` and crops the result back.
4. The fused volume is written on the CT grid as 8-bit grey levels (``postprocessing.spine.write_fused``).
5. EN, MI, SF and VIF (``multimodalseg.fusion_metrics``, mean over slices) are computed for the fused volume
   against the CT and MR grey images, and, for comparison, for each input taken as if it were the fused image.

Fusion bundles are ordinary model bundles of the spine task with ``meta["kind"] == "fusion"`` (catalog entries
carry ``"kind": "fusion"``), network ``cddfuse``, and a ``fusion`` block: ``{"ct_window": [lo, hi],
"mr_percentile": p, "axis": 0, "roles": ["ct", "mr"]}``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from multimodalseg import catalog, io
from multimodalseg import preprocessing as prep
from multimodalseg.bundles import Bundle, load_bundle
from multimodalseg.errors import UserError
from multimodalseg.fusion_metrics import volume_fusion_metrics
from multimodalseg.inference.devices import resolve_device
from multimodalseg.postprocessing.spine import fused_on_ct_grid
from multimodalseg.tasks import get_task

FUSION_KIND = "fusion"
FUSION_TASK = "spine"
CT_WINDOW_HU = (-250.0, 1250.0)
MR_PERCENTILE = 99.5
DEFAULT_SETTINGS: dict[str, Any] = {"ct_window": list(CT_WINDOW_HU), "mr_percentile": MR_PERCENTILE, "axis": 0}


def scale_ct(hu: np.ndarray, window: tuple[float, float] | list[float] = CT_WINDOW_HU) -> np.ndarray:
    """Hounsfield units -> [0, 1] through the window ``(lo, hi)`` (clipped), float32."""
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        raise ValueError(f"CT window must have hi > lo, got {window}")
    return np.clip((np.asarray(hu, np.float32) - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)


def scale_mr(values: np.ndarray, percentile: float = MR_PERCENTILE) -> np.ndarray:
    """MR intensities -> [0, 1]: divided by the ``percentile`` of the positive voxels, clipped; float32.

    Zero (outside the MR's field of view after resampling) stays 0. An MR without positive voxels gives zeros.
    """
    x = np.asarray(values, np.float32)
    positive = x[x > 0]
    scale = float(np.percentile(positive, percentile)) if positive.size else 0.0
    if scale <= 0:
        return np.zeros_like(x)
    return np.clip(x / np.float32(scale), 0.0, 1.0)


def scale_inputs(ct_hu: np.ndarray, mr: np.ndarray, settings: Mapping[str, Any] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs (on the CT grid) scaled as fusion training and inference do."""
    s = {**DEFAULT_SETTINGS, **dict(settings or {})}
    return scale_ct(ct_hu, s["ct_window"]), scale_mr(mr, float(s["mr_percentile"]))


def inputs_on_ct_grid(ct: sitk.Image, mr: sitk.Image, *, transform: sitk.Transform | None = None,
                      paths: Mapping[str, str | os.PathLike] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CT (HU) and MR resampled onto the CT grid, ``(Z, Y, X)`` float32 each.

    Raises:
        UserError: the MR does not overlap the CT (register first), or the transform maps it outside the CT.
    """
    task = get_task(FUSION_TASK)
    transforms = {"mr": transform} if transform is not None else None
    raw, _ = prep.to_reference_grid(task, {"ct": ct, "mr": mr}, paths, transforms)
    return raw[task.roles.index("ct")], raw[task.roles.index("mr")]


def load_fusion_model(model: str | os.PathLike | None = None) -> Bundle:
    """A fusion bundle: None (the newest fusion model in the catalogs), a catalog id, or a bundle file.

    Raises:
        UserError: no fusion model available, unknown id, a bundle that is not a fusion model.
    """
    text = None if model is None else os.fspath(model)
    if text is None:
        entry = catalog.default_for(FUSION_TASK, kind=FUSION_KIND)
        bundle = load_bundle(catalog.fetch(entry), sha256=entry.sha256, task=FUSION_TASK)
    elif text.endswith(".pt") or os.sep in text or os.path.exists(text):
        bundle = load_bundle(text, task=FUSION_TASK)
    else:
        entry = catalog.find(text, FUSION_TASK)
        bundle = load_bundle(catalog.fetch(entry), sha256=entry.sha256, task=FUSION_TASK)
    if bundle.meta.get("kind") != FUSION_KIND:
        raise UserError(f"model '{bundle.id}' is not a fusion model (kind {bundle.meta.get('kind') or 'segmentation'}"
                        "); give a fusion bundle", bundle.path)
    return bundle


class FusionRunner:
    """Fuses CT and MR volumes on one grid slice by slice with a CDDFuse bundle.

    Args:
        bundle: a fusion bundle (:func:`load_fusion_model`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        batch: slices per forward pass.
    """

    def __init__(self, bundle: Bundle, device: str = "auto", batch: int = 8) -> None:
        if batch < 1:
            raise UserError(f"batch must be at least 1, got {batch}")
        self.bundle = bundle
        self.settings = {**DEFAULT_SETTINGS, **dict(bundle.meta.get("fusion") or {})}
        if int(self.settings["axis"]) not in (0, 1, 2):
            raise UserError(f"fusion bundle axis must be 0, 1 or 2, got {self.settings['axis']}", bundle.path)
        self.device = resolve_device(device)
        self.model = bundle.build_model().to(self.device)
        self.batch = batch

    def fuse(self, ct01: np.ndarray, mr01: np.ndarray,
             on_progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Fused ``(Z, Y, X)`` float32 in [0, 1] from two scaled volumes of one shape."""
        if ct01.shape != mr01.shape or ct01.ndim != 3:
            raise ValueError(f"CT and MR volumes must be 3D of one shape, got {ct01.shape} and {mr01.shape}")
        axis = int(self.settings["axis"])
        ct_s, mr_s = np.moveaxis(ct01, axis, 0), np.moveaxis(mr01, axis, 0)
        out = np.empty(ct_s.shape, np.float32)
        n = ct_s.shape[0]
        with torch.inference_mode():
            for start in range(0, n, self.batch):
                stop = min(n, start + self.batch)
                ct_t = torch.from_numpy(np.ascontiguousarray(ct_s[start:stop]))[:, None].to(self.device)
                mr_t = torch.from_numpy(np.ascontiguousarray(mr_s[start:stop]))[:, None].to(self.device)
                out[start:stop] = self.model(ct_t, mr_t)[:, 0].float().cpu().numpy()
                if on_progress is not None:
                    on_progress(stop / n)
        return np.moveaxis(out, 0, axis)


@dataclass
class FusionResult:
    """What :func:`fuse_case` returns.

    Attributes:
        fused: the fused volume, 8-bit grey levels on the CT grid (CT geometry).
        metrics: ``{"fused": {...}, "ct": {...}, "mr": {...}}``: EN, MI, SF, VIF (and ``slices``) of the fused
            volume against the CT and MR grey images, and of each input taken as the fused image, for comparison.
        report: JSON-ready summary (model, settings, metrics, timings).
    """

    fused: sitk.Image
    metrics: dict[str, dict[str, float]]
    report: dict[str, Any] = field(default_factory=dict)


def comparison_metrics(fused8: np.ndarray, ct8: np.ndarray, mr8: np.ndarray, axis: int = 0
                       ) -> dict[str, dict[str, float]]:
    """EN/MI/SF/VIF of the fused volume and, for comparison, of the CT and of the MR as if each were the fusion."""
    return {name: volume_fusion_metrics(f, ct8, mr8, axis=axis)
            for name, f in (("fused", fused8), ("ct", ct8), ("mr", mr8))}


def fuse_case(runner: FusionRunner, ct: sitk.Image, mr: sitk.Image, *, transform: sitk.Transform | None = None,
              paths: Mapping[str, str | os.PathLike] | None = None, metrics: bool = True,
              on_progress: Callable[[float], None] | None = None) -> FusionResult:
    """Fuse one CT/MR pair onto the CT grid (see the module docstring); ``metrics=False`` skips EN/MI/SF/VIF."""
    t0 = time.perf_counter()
    ct_hu, mr_raw = inputs_on_ct_grid(ct, mr, transform=transform, paths=paths)
    ct01, mr01 = scale_inputs(ct_hu, mr_raw, runner.settings)
    t1 = time.perf_counter()
    fused = runner.fuse(ct01, mr01, on_progress)
    t2 = time.perf_counter()
    image = fused_on_ct_grid(fused, ct)
    scores: dict[str, dict[str, float]] = {}
    if metrics:
        to8 = lambda x: np.round(x * 255.0).astype(np.uint8)  # noqa: E731 - the same levels as the written image
        scores = comparison_metrics(sitk.GetArrayFromImage(image), to8(ct01), to8(mr01), int(runner.settings["axis"]))
    t3 = time.perf_counter()
    meta = runner.bundle.meta
    report = {
        "model": {"id": runner.bundle.id, "version": str(meta.get("version")), "sha256": runner.bundle.sha256,
                  "path": os.fspath(runner.bundle.path), "demo": bool(meta.get("demo", False))},
        "device": str(runner.device),
        "settings": {"ct_window": list(runner.settings["ct_window"]),
                     "mr_percentile": float(runner.settings["mr_percentile"]), "axis": int(runner.settings["axis"]),
                     "transform": transform is not None, "grid": "ct"},
        "metrics": scores,
        "timings": {"preprocess": round(t1 - t0, 4), "fusion": round(t2 - t1, 4), "metrics": round(t3 - t2, 4),
                    "total": round(t3 - t0, 4)},
    }
    return FusionResult(image, scores, report)


def write_fused(result: FusionResult, path: str | os.PathLike) -> str:
    """Write the fused volume atomically; returns the path."""
    return os.fspath(io.write_image(result.fused, path))
