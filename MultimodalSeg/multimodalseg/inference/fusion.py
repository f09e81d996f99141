"""CT-MR fusion of a spine case with a CDDFuse bundle: MR onto the CT grid, slice-wise fusion, EN/MI/SF/VIF.

The steps (``multimodalseg fuse`` and ``segment --task spine`` both call :func:`fuse_case`):

1. The MR is resampled onto the CT grid in physical space (``preprocessing.to_reference_grid``), through the
   registration transform when one is given (``--transform``, fixed CT -> moving MR as ``register`` writes it);
   a pair whose extents do not overlap is refused with "register first".
2. Intensities are scaled to [0, 1] exactly as the bundle's training did (:func:`scale_inputs`): the CT through
   the HU window ``fusion.ct_window`` (default -250..1250 HU: fat and muscle stay apart, cortical bone saturates
   last), the MR divided by the ``fusion.mr_percentile`` (99.5) percentile of its positive voxels and clipped.
3. Slices along ``fusion.axis`` (0: the z index axis, axial on an axis-aligned CT) go through
   ``CDDFuse.forward``, padded to the size the bundle was trained with (its network config's ``pad_to``; a
   bundle that does not say gets 512 x 512, :data:`PAD_TO`, as the spine paper) by repeating the edge values,
   and the result cropped back exactly; ``FusionRunner(pad=False)`` (``--no-pad``) fuses them unpadded. The
   shipped phantom demo bundle was trained on unpadded slices (``pad_to: null``), so it runs unpadded, as it
   was trained: forced to 512 it is 50x slower on its 100 x 96 slices and its VIF drops 0.59 -> 0.50.
   Replicate, not zeros: with the shipped demo bundle on phantom slices (100 x 96), zero padding to 512 shifted
   the whole fused image (mean grey +32 levels vs unpadded; the global channel attention sees mostly zeros) and
   lowered VIF (0.59 -> 0.47), replicate padding less so (+16 levels, VIF 0.50). Reflection is not possible
   when the pad is wider than the slice (it falls back to replicate in ``nets.cddfuse.pad_slices``).
   Progress is reported per batch of slices (``on_progress`` or ``stages``). On the CPU, slices of at least
   :data:`STRIP_PIXELS` (padded) pixels are fused one at a time strip by strip (``CDDFuse.forward_strips``,
   ``nets.cddfuse_strips``): the same image up to float rounding (the slice-global channel attention is
   accumulated over the strips in a first pass), channels-last, 2.4x (one warm slice) to 4x (a whole case)
   fewer CPU seconds than whole slices at 512 x 512, where whole-slice layers are memory-bound
   (``benchmarks/bench_fusion.py``). Before the first strip-wise slice, glibc's malloc is told to keep freed
   blocks up to 32 MiB in its heap (:func:`keep_freed_memory`): by default every multi-MB strip tensor was a
   fresh ``mmap`` whose pages fault in zeroed, 7 % of the CPU time of a 512 x 512 slice (6.6 million page
   faults in one clinical spine case).
   Strip-wise slices are fused ``workers`` at a time, one intra-op thread each (the same image bit for bit);
   the CLI gives every core (``devices.slice_workers``: 49-51 s wall for a 512x512x61 spine case on 2 cores,
   against 77 s on one), ``--threads N`` caps it, and a runner built without ``workers`` uses torch's threads.
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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from multimodalseg import catalog, io
from multimodalseg import preprocessing as prep
from multimodalseg.bundles import Bundle
from multimodalseg.errors import UserError
from multimodalseg.fusion_metrics import (  # noqa: F401 - scale_ct, scale_mr: public here too (training uses them)
    CT_WINDOW_HU,
    MR_PERCENTILE,
    comparison_metrics,
    scale_ct,
    scale_mr,
    unit_to_gray8,
)
from multimodalseg.inference.devices import resolve_device
from multimodalseg.nets.cddfuse import PAD_MODES
from multimodalseg.postprocessing.spine import fused_on_ct_grid
from multimodalseg.progress import Stages
from multimodalseg.tasks import get_task

FUSION_KIND = "fusion"
PAD_TO = (512, 512)  # the spine paper pads every slice to 512 x 512
PAD_MODE = "replicate"  # edge values; chosen by measurement over zeros (see the module docstring)
# Slices with at least this many (padded) pixels are fused strip by strip on the CPU (CDDFuse.forward_strips):
# exact, and 2.4-4x fewer CPU seconds at 512 x 512 (the full-slice layers are memory-bound); small slices gain nothing.
STRIP_PIXELS = 160 * 160
BATCH_PIXELS = 2 * 512 * 512  # padded pixels per forward pass (memory: ~1 GB at 16 features on CPU)
# Progress of ``multimodalseg fuse`` (multimodalseg.progress.Stages): the fusion itself dominates.
FUSE_STAGE_WEIGHTS = {"load": 0.05, "preprocess": 0.05, "fusion": 0.8, "metrics": 0.07, "write": 0.03}
FUSION_TASK = "spine"
DEFAULT_SETTINGS: dict[str, Any] = {"ct_window": list(CT_WINDOW_HU), "mr_percentile": MR_PERCENTILE, "axis": 0}


MALLOC_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed threshold; strips and 16-channel 512² maps fit
MALLOC_TRIM_THRESHOLD = 256 * 2**20  # free heap kept for reuse instead of being returned after every layer


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve blocks up to :data:`MALLOC_MMAP_THRESHOLD` from its heap and keep up to
    :data:`MALLOC_TRIM_THRESHOLD` of freed heap (``mallopt``), for the whole process; see the module docstring.

    Returns:
        True when set; False where the C library is not glibc (nothing changes there).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold,
                                                                                   MALLOC_TRIM_THRESHOLD))


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
    bundle = catalog.load(FUSION_TASK, model, FUSION_KIND)
    if bundle.meta.get("kind") != FUSION_KIND:
        raise UserError(f"model '{bundle.id}' is not a fusion model (kind {bundle.meta.get('kind') or 'segmentation'}"
                        "); give a fusion bundle", bundle.path)
    return bundle


class FusionRunner:
    """Fuses CT and MR volumes on one grid slice by slice with a CDDFuse bundle.

    By default each slice is padded as the bundle was trained: to its network config's ``pad_to``, or to
    :data:`PAD_TO` (512 × 512, the spine paper's size) when the bundle does not say (a larger slice keeps its
    size, rounded up to the network's ``pad_multiple``), with :data:`PAD_MODE`, and the output cropped back
    exactly (``CDDFuse.forward``): the Restormer channel attention is global over the slice, so the padded size
    changes the result. ``pad=False`` fuses the slices as they are (and is much faster on small slices: the cost
    grows with the padded area).

    Args:
        bundle: a fusion bundle (:func:`load_fusion_model`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        batch: slices per forward pass; None: as many as fit :data:`BATCH_PIXELS` padded pixels (1 to 8).
        pad: pad the slices as the bundle was trained (see above); False: never.
        pad_mode: ``constant`` (zeros), ``reflect`` or ``replicate``; None: the bundle's ``pad_mode``, else
            :data:`PAD_MODE`.
        pad_size: the minimum padded (H, W) instead of the bundle's (tests, experiments).
        strips: on the CPU, fuse slices of at least :data:`STRIP_PIXELS` pixels strip by strip (same result,
            faster); False: whole slices.
    """

    def __init__(self, bundle: Bundle, device: str = "auto", batch: int | None = None, *, pad: bool = True,
                 pad_mode: str | None = None, pad_size: tuple[int, int] | None = None, strips: bool = True,
                 workers: int | None = None) -> None:
        if batch is not None and batch < 1:
            raise UserError(f"batch must be at least 1, got {batch}")
        self.bundle = bundle
        self.settings = {**DEFAULT_SETTINGS, **dict(bundle.meta.get("fusion") or {})}
        if int(self.settings["axis"]) not in (0, 1, 2):
            raise UserError(f"fusion bundle axis must be 0, 1 or 2, got {self.settings['axis']}", bundle.path)
        config = (bundle.meta.get("network") or {}).get("config") or {}
        mode = pad_mode or config.get("pad_mode") or PAD_MODE
        if mode not in PAD_MODES:
            raise UserError(f"unknown pad mode '{mode}' (use one of {', '.join(PAD_MODES)})")
        # Inference pads as training did: a bundle's explicit ``pad_to: null`` means it learnt unpadded slices.
        trained = config.get("pad_to", PAD_TO)
        wanted = pad_size if pad_size is not None else trained
        size = None if wanted is None else (int(wanted[0]), int(wanted[1]))
        if size is not None and min(size) < 1:
            raise UserError(f"pad size must be positive, got {wanted}")
        self.pad_to = size if pad else None
        self.pad_mode = mode
        self.device = resolve_device(device)
        self.model = bundle.build_model().to(self.device)
        self.model.pad_to, self.model.pad_mode = self.pad_to, self.pad_mode
        self.batch = batch
        self.strips = strips
        self.workers = workers  # strip-wise slices side by side; None: torch's intra-op thread count

    def batch_size(self, height: int, width: int) -> int:
        """Slices per forward pass for slices of ``height`` × ``width`` (before padding)."""
        if self.batch is not None:
            return self.batch
        h, w = self.model.padded_size(height, width)
        if self._use_strips(h, w):
            return 1  # measured: 1.24 s/slice one by one against 1.44 in pairs (strips stay in the caches);
            # channels-last strips of a batch are not dense in memory either (nets.cddfuse_strips)
        return max(1, min(8, BATCH_PIXELS // (h * w)))

    def _use_strips(self, padded_h: int, padded_w: int) -> bool:
        return self.strips and self.device.type == "cpu" and padded_h * padded_w >= STRIP_PIXELS

    def fuse(self, ct01: np.ndarray, mr01: np.ndarray,
             on_progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Fused ``(Z, Y, X)`` float32 in [0, 1] from two scaled volumes of one shape.

        ``on_progress(fraction)`` is called after each batch of slices with the fraction of slices done
        (increasing, the last call 1.0).
        """
        if ct01.shape != mr01.shape or ct01.ndim != 3:
            raise ValueError(f"CT and MR volumes must be 3D of one shape, got {ct01.shape} and {mr01.shape}")
        axis = int(self.settings["axis"])
        ct_s, mr_s = np.moveaxis(ct01, axis, 0), np.moveaxis(mr01, axis, 0)
        out = np.empty(ct_s.shape, np.float32)
        n = ct_s.shape[0]
        batch = self.batch_size(*ct_s.shape[1:])
        spans = [(start, min(n, start + batch)) for start in range(0, n, batch)]
        strips = self._use_strips(*self.model.padded_size(*ct_s.shape[1:]))
        if strips:
            keep_freed_memory()
        threads = torch.get_num_threads()
        # strip-wise slices with several workers allowed: that many slices at once, one thread each (the small
        # strip ops scale badly over OpenMP threads, and OpenMP barriers stall when the machine is shared)
        workers = min(self.workers or threads, len(spans)) if strips else 1

        def fuse_span(span: tuple[int, int]) -> np.ndarray:
            start, stop = span
            with torch.inference_mode():  # per thread
                ct_t = torch.from_numpy(np.ascontiguousarray(ct_s[start:stop]))[:, None].to(self.device)
                mr_t = torch.from_numpy(np.ascontiguousarray(mr_s[start:stop]))[:, None].to(self.device)
                return self._forward(ct_t, mr_t)[:, 0].float().cpu().numpy()

        def collect(results: Iterable[np.ndarray]) -> None:
            for (start, stop), fused in zip(spans, results):  # in slice order
                out[start:stop] = fused
                if on_progress is not None:
                    on_progress(stop / n)

        if workers == 1:
            collect(map(fuse_span, spans))  # in this thread, as before
            return np.moveaxis(out, 0, axis)
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                collect(pool.map(fuse_span, spans))
        finally:
            torch.set_num_threads(threads)
        return np.moveaxis(out, 0, axis)

    def _forward(self, ct: torch.Tensor, mr: torch.Tensor) -> torch.Tensor:
        if self._use_strips(*self.model.padded_size(*ct.shape[-2:])):
            return self.model.forward_strips(ct, mr)
        return self.model(ct, mr)

    def describe(self) -> dict[str, Any]:
        """The settings as JSON-ready report data."""
        return {"ct_window": list(self.settings["ct_window"]), "mr_percentile": float(self.settings["mr_percentile"]),
                "axis": int(self.settings["axis"]), "pad_to": None if self.pad_to is None else list(self.pad_to),
                "pad_mode": self.pad_mode if self.pad_to is not None else None,
                "slice_workers": self.workers or torch.get_num_threads()}


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


def fuse_case(runner: FusionRunner, ct: sitk.Image, mr: sitk.Image, *, transform: sitk.Transform | None = None,
              paths: Mapping[str, str | os.PathLike] | None = None, metrics: bool = True,
              on_progress: Callable[[float], None] | None = None, stages: Stages | None = None) -> FusionResult:
    """Fuse one CT/MR pair onto the CT grid (see the module docstring); ``metrics=False`` skips EN/MI/SF/VIF.

    Progress: ``on_progress(fraction of slices fused)`` after each batch of slices; or ``stages``
    (:data:`FUSE_STAGE_WEIGHTS`), which gets the stages ``preprocess``, ``fusion`` (per batch) and ``metrics``.
    """
    if stages is not None:
        stages.start("preprocess")
        on_progress = stages.update
    t0 = time.perf_counter()
    ct_hu, mr_raw = inputs_on_ct_grid(ct, mr, transform=transform, paths=paths)
    ct01, mr01 = scale_inputs(ct_hu, mr_raw, runner.settings)
    t1 = time.perf_counter()
    if stages is not None:
        stages.start("fusion")
    fused = runner.fuse(ct01, mr01, on_progress)
    t2 = time.perf_counter()
    image = fused_on_ct_grid(fused, ct)
    scores: dict[str, dict[str, float]] = {}
    if metrics:
        if stages is not None:
            stages.start("metrics")
        # the sources as the grey levels of the written image (fusion_metrics.source_gray8 of the same inputs)
        scores = comparison_metrics(sitk.GetArrayFromImage(image), unit_to_gray8(ct01), unit_to_gray8(mr01),
                                    int(runner.settings["axis"]))
    t3 = time.perf_counter()
    meta = runner.bundle.meta
    report = {
        "model": {"id": runner.bundle.id, "version": str(meta.get("version")), "sha256": runner.bundle.sha256,
                  "path": os.fspath(runner.bundle.path), "demo": bool(meta.get("demo", False))},
        "device": str(runner.device),
        "settings": {**runner.describe(), "transform": transform is not None, "grid": "ct"},
        "metrics": scores,
        "timings": {"preprocess": round(t1 - t0, 4), "fusion": round(t2 - t1, 4), "metrics": round(t3 - t2, 4),
                    "total": round(t3 - t0, 4)},
    }
    return FusionResult(image, scores, report)


def write_fused(result: FusionResult, path: str | os.PathLike) -> str:
    """Write the fused volume atomically; returns the path."""
    return os.fspath(io.write_image(result.fused, path))
