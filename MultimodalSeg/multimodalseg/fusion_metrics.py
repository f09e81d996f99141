"""Image fusion metrics EN, MI, SF and VIF, as CDDFuse's ``utils/Evaluator.py`` computes them (METHODS §E.4).

All metrics are defined on 8-bit grey images: arrays of grey levels in [0, 255] (uint8, or floats on that
scale; :func:`to_gray8` converts any image). F is the fused image, A and B the two sources (CT and MR slices
on the same grid). Implemented once here, with numpy and scipy only (no torch), for ``multimodalseg fuse``,
``multimodalseg evaluate --fused`` and ``segment --task spine``; the sources' grey levels come from
:func:`source_gray8` (the fusion network's input scaling, so every caller scores the same images).

- EN (bits, [0, 8]): −Σ_i p_i log2 p_i over F's 256-bin grey histogram (levels: rounded, clipped to 0..255).
- MI (nats, [0, 2 ln 256 ≈ 11.09]): MI(F, A) + MI(F, B), each from the 256 × 256 joint histogram of the integer
  grey levels with the natural log, as ``sklearn.metrics.mutual_info_score`` computes it.
- SF (grey levels, ≥ 0): √(RF² + CF²), RF² = mean squared difference of horizontal neighbours, CF² of vertical
  ones, on the values as given.
- VIF (≥ 0): VIFp(A → F) + VIFp(B → F), the pixel-domain visual information fidelity of Sheikh & Bovik: 4 scales,
  Gaussian windows N = 2^(5−s) + 1 with σ = N/5, σ_n² = 2, 'valid' filtering. Each VIFp is 1 when F equals that
  source, below 1 for information loss, above 1 for contrast gain; so VIF is 2 for F = A = B.

The spine paper reports EN 5.02, MI 2.60, SF 33.83, VIF 0.51 on its data (METHODS §E.1). Its own VIF formula is a
block SSIM between CT and MR, which is not a fusion metric; VIFF as above is what CDDFuse reports.

Example:
    >>> import numpy as np
    >>> img = np.tile(np.array([0, 255], np.uint8), (32, 16))
    >>> entropy(img)
    1.0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

GRAY_LEVELS = 256
VIF_NOISE_VARIANCE = 2.0  # σ_n², for 0-255 grey levels
_EPS = 1e-10
# How the sources become images in [0, 1] (the fusion network's inputs) and grey levels (the metrics' A and B).
CT_WINDOW_HU = (-250.0, 1250.0)  # fat and muscle stay apart, cortical bone saturates last
MR_PERCENTILE = 99.5


def to_gray8(image: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Map ``image`` to uint8 grey levels: [lo, hi] (default: its min and max) → [0, 255], clipped and rounded.

    A constant image (hi == lo) maps to zeros.
    """
    x = np.asarray(image, dtype=np.float64)
    lo = float(np.nanmin(x)) if lo is None else float(lo)
    hi = float(np.nanmax(x)) if hi is None else float(hi)
    if not hi > lo:
        return np.zeros(x.shape, np.uint8)
    return np.round(np.clip((x - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


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


def unit_to_gray8(x01: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 grey levels (clipped, rounded): how the fused image is written and the sources are scored."""
    return np.round(np.clip(np.asarray(x01, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def source_gray8(ct_hu: np.ndarray, mr: np.ndarray, ct_window: tuple[float, float] | list[float] = CT_WINDOW_HU,
                 mr_percentile: float = MR_PERCENTILE) -> tuple[np.ndarray, np.ndarray]:
    """The CT (HU) and MR (on one grid) as the grey images A and B of the metrics: scaled as the fusion
    network's inputs (:func:`scale_ct`, :func:`scale_mr`), then :func:`unit_to_gray8`."""
    return unit_to_gray8(scale_ct(ct_hu, ct_window)), unit_to_gray8(scale_mr(mr, mr_percentile))


def _image(name: str, image: np.ndarray) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim != 2 or min(x.shape) < 2:
        raise ValueError(f"{name} must be a 2D image of at least 2x2 pixels, got shape {x.shape}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return x


def _same_shape(**images: np.ndarray) -> list[np.ndarray]:
    arrays = [_image(k, v) for k, v in images.items()]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        listed = ", ".join(f"{k} {a.shape}" for k, a in zip(images, arrays))
        raise ValueError(f"images must have the same shape, got {listed}")
    return arrays


def _levels(x: np.ndarray) -> np.ndarray:
    """Integer grey levels 0..255 (values are rounded and clipped: 8-bit images are expected)."""
    return np.clip(np.round(x), 0, GRAY_LEVELS - 1).astype(np.int64)


def entropy(image: np.ndarray) -> float:
    """EN: Shannon entropy of the grey histogram, in bits, [0, 8]."""
    counts = np.bincount(_levels(_image("image", image)).ravel(), minlength=GRAY_LEVELS)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """MI(X, Y) in nats from the joint histogram of the integer grey levels (sklearn's ``mutual_info_score``)."""
    a, b = _same_shape(x=x, y=y)
    joint = np.bincount((_levels(a) * GRAY_LEVELS + _levels(b)).ravel(), minlength=GRAY_LEVELS**2)
    joint = joint.reshape(GRAY_LEVELS, GRAY_LEVELS) / a.size
    px, py = joint.sum(axis=1), joint.sum(axis=0)
    i, j = np.nonzero(joint)
    pxy = joint[i, j]
    return max(float((pxy * np.log(pxy / (px[i] * py[j]))).sum()), 0.0)


def fusion_mutual_information(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """MI: MI(F, A) + MI(F, B), nats."""
    return mutual_information(fused, a) + mutual_information(fused, b)


def spatial_frequency(image: np.ndarray) -> float:
    """SF: √(mean (F[:, j+1] − F[:, j])² + mean (F[i+1, :] − F[i, :])²), in grey levels."""
    f = _image("image", image)
    return float(np.sqrt(np.mean(np.diff(f, axis=1) ** 2) + np.mean(np.diff(f, axis=0) ** 2)))


def _gaussian_1d(n: int) -> np.ndarray:
    # MATLAB's fspecial('gaussian', N, N/5) is exp(-(x²+y²)/2σ²) normalised: the outer product of this 1D kernel.
    # (Its cut-off at eps·max never triggers for N <= 17, so filtering separably is exact.)
    r = (n - 1) / 2.0
    g = np.exp(-(np.arange(n) - r) ** 2 / (2.0 * (n / 5.0) ** 2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """2D 'valid' convolution with the separable symmetric window outer(g, g)."""
    r = len(g) // 2
    y = ndimage.correlate1d(ndimage.correlate1d(x, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    return y[r:-r, r:-r]


def vifp(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Pixel-domain visual information fidelity of ``distorted`` w.r.t. ``reference`` (Evaluator's ``compare_viff``).

    1 when the two are equal; 0 when ``distorted`` carries no information of ``reference`` (e.g. constant);
    above 1 for a contrast-enhanced copy. A constant reference gives 0/0, reported as 1 like the reference code.
    Images must be at least 41 × 41 (the four scales' valid windows).
    """
    ref, dist = _same_shape(reference=reference, distorted=distorted)
    if min(ref.shape) < 41:
        raise ValueError(f"VIF needs images of at least 41x41 pixels, got {ref.shape}")
    num = den = 0.0
    for scale in range(1, 5):
        g = _gaussian_1d(2 ** (5 - scale) + 1)
        if scale > 1:
            ref, dist = _filter_valid(ref, g)[::2, ::2], _filter_valid(dist, g)[::2, ::2]
        mu1, mu2 = _filter_valid(ref, g), _filter_valid(dist, g)
        s1 = np.maximum(_filter_valid(ref * ref, g) - mu1 * mu1, 0.0)
        s2 = np.maximum(_filter_valid(dist * dist, g) - mu2 * mu2, 0.0)
        s12 = _filter_valid(ref * dist, g) - mu1 * mu2
        gain = s12 / (s1 + _EPS)
        sv = s2 - gain * s12
        flat_ref = s1 < _EPS
        gain[flat_ref], sv[flat_ref], s1[flat_ref] = 0.0, s2[flat_ref], 0.0
        flat_dist = s2 < _EPS
        gain[flat_dist], sv[flat_dist] = 0.0, 0.0
        negative = gain < 0
        sv[negative], gain[negative] = s2[negative], 0.0
        sv = np.maximum(sv, _EPS)
        num += float(np.sum(np.log10(1.0 + gain * gain * s1 / (sv + VIF_NOISE_VARIANCE))))
        den += float(np.sum(np.log10(1.0 + s1 / VIF_NOISE_VARIANCE)))
    return 1.0 if den == 0.0 else num / den


def fusion_vif(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF (VIFF): VIFp(A → F) + VIFp(B → F)."""
    return vifp(a, fused) + vifp(b, fused)


def fusion_metrics(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """EN, MI, SF and VIF of one fused 2D image F with sources A and B (8-bit grey levels)."""
    f, a, b = _same_shape(fused=fused, a=a, b=b)
    return {"EN": entropy(f), "MI": fusion_mutual_information(f, a, b), "SF": spatial_frequency(f),
            "VIF": fusion_vif(f, a, b)}


def volume_fusion_metrics(fused: np.ndarray, a: np.ndarray, b: np.ndarray, axis: int = 0) -> dict[str, float]:
    """Mean of :func:`fusion_metrics` over the slices along ``axis`` of 3D volumes (the paper averages 2D images).

    Slices where all three images are constant (outside the field of view) are skipped; ``slices`` in the result
    says how many were averaged.

    Raises:
        ValueError: volumes of different shapes, not 3D, or with no non-constant slice.
    """
    volumes = [np.moveaxis(np.asarray(v), axis, 0) for v in (fused, a, b)]
    if any(v.ndim != 3 for v in volumes) or len({v.shape for v in volumes}) != 1:
        raise ValueError(f"fused, a and b must be 3D volumes of one shape, got {[np.shape(v) for v in (fused, a, b)]}")
    rows = [fusion_metrics(*s) for s in zip(*volumes) if any(np.ptp(x) > 0 for x in s)]
    if not rows:
        raise ValueError("every slice is constant: nothing to measure")
    return {**{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}, "slices": len(rows)}


def comparison_metrics(fused8: np.ndarray, ct8: np.ndarray, mr8: np.ndarray, axis: int = 0
                       ) -> dict[str, dict[str, float]]:
    """:func:`volume_fusion_metrics` of the fused volume and, for comparison, of the CT and of the MR as if each
    were the fusion: ``{"fused": {...}, "ct": {...}, "mr": {...}}`` (what ``fuse`` and ``evaluate`` report)."""
    return {name: volume_fusion_metrics(f, ct8, mr8, axis=axis)
            for name, f in (("fused", fused8), ("ct", ct8), ("mr", mr8))}


def format_metrics(metrics: Mapping[str, float]) -> str:
    """One line: ``EN 5.02 bits, MI 2.60 nats, SF 33.83, VIF 0.51``."""
    units = {"EN": " bits", "MI": " nats", "SF": "", "VIF": ""}
    return ", ".join(f"{k} {metrics[k]:.2f}{units[k]}" for k in units if k in metrics)


def fused_gray8(fused: np.ndarray) -> tuple[np.ndarray, str]:
    """A fused volume as grey levels: as stored when its values are integers in 0..255 (what ``fuse`` writes),
    else min-max scaled to 0..255 (:func:`to_gray8`). Returns the levels and which of the two was done."""
    x = np.asarray(fused)
    if x.size and x.min() >= 0 and x.max() <= 255 and (np.issubdtype(x.dtype, np.integer) or np.all(x == np.round(x))):
        return x.astype(np.uint8), "as stored"
    return to_gray8(x), "min-max scaled to 0-255"


def evaluate_fusion_files(fused_path: str | os.PathLike, ct_path: str | os.PathLike, mr_path: str | os.PathLike, *,
                          ct_window: tuple[float, float] | list[float] = CT_WINDOW_HU,
                          mr_percentile: float = MR_PERCENTILE, axis: int = 0) -> dict[str, Any]:
    """EN, MI, SF and VIF of a fused volume file against its CT and MR files, all on the CT grid (never resampled).

    The sources are scored as ``fuse`` scores them (:func:`source_gray8`); the result also holds the CT and the MR
    taken as the fusion (:func:`comparison_metrics`): ``{"inputs": {...}, "settings": {...}, "metrics": {"fused",
    "ct", "mr"}}``.

    Raises:
        UserError: unreadable file, a fused image or MR not on the CT grid (naming that file), nothing to measure.
    """
    from multimodalseg.errors import UserError
    from multimodalseg.io import read_image
    from multimodalseg.metrics.evaluate import check_same_grid

    if axis not in (0, 1, 2):
        raise UserError(f"slice axis must be 0, 1 or 2, got {axis}")
    ct = read_image(ct_path)
    others = {"fused": (fused_path, read_image(fused_path)), "mr": (mr_path, read_image(mr_path))}
    for name, (path, image) in others.items():
        try:
            check_same_grid(image, ct, path)
        except UserError as exc:
            detail = exc.problem.partition(": ")[2] or exc.problem
            how = "resample it onto the CT grid first" if name == "mr" else "fuse on the CT grid ('multimodalseg fuse')"
            raise UserError(f"not on the CT grid ({detail}); {how}", path) from None
    import SimpleITK as sitk

    fused8, levels = fused_gray8(sitk.GetArrayViewFromImage(others["fused"][1]))
    try:
        ct8, mr8 = source_gray8(sitk.GetArrayViewFromImage(ct), sitk.GetArrayViewFromImage(others["mr"][1]),
                                ct_window, mr_percentile)
        scores = comparison_metrics(fused8, ct8, mr8, axis=axis)
    except ValueError as exc:  # a window with hi <= lo, slices under 41 x 41 (VIF), only constant slices
        raise UserError(f"cannot compute the fusion metrics: {exc}", fused_path) from None
    return {"inputs": {"fused": os.fspath(fused_path), "ct": os.fspath(ct_path), "mr": os.fspath(mr_path)},
            "settings": {"ct_window": [float(v) for v in ct_window], "mr_percentile": float(mr_percentile),
                         "axis": int(axis), "fused_levels": levels},
            "metrics": scores}
