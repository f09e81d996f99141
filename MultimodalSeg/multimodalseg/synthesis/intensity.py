"""Intensities from labels, SynthSeg-style: a Gaussian per label group, bias field, gamma, low resolution, noise.

All draws come from the caller's numpy generator. Images are float32 (z, y, x); spacing is (x, y, z) mm.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

Prior = Mapping[int, tuple[float, float]]  # painted value -> (mean, sd)


def random_prior(groups: Mapping[int, int], rng: np.random.Generator, mean=(0.0, 250.0), sd=(0.0, 30.0)) -> Prior:
    """SynthSeg's contrast-agnostic prior: each group (painted value -> group id) gets mean U(0, 250) and
    sd U(0, 30), drawn anew for every sample; values of one group share them."""
    drawn: dict[int, tuple[float, float]] = {}
    for gid in sorted(set(groups.values())):
        drawn[gid] = (float(rng.uniform(*mean)), float(rng.uniform(*sd)))
    return {v: drawn[g] for v, g in groups.items()}


def jittered_prior(base: Mapping[int, tuple[float, float]], rng: np.random.Generator, rel: float = 0.1,
                   sd_scale=(0.5, 1.5), groups: Mapping[int, int] | None = None) -> Prior:
    """A modality-aware prior: each base (mean, sd) moved by up to ``rel`` of the mean, sd scaled; values of one
    group (e.g. a left/right pair) move together."""
    groups = groups or {}
    factors: dict[int, tuple[float, float]] = {}
    out = {}
    for v in sorted(base):
        g = groups.get(v, v)
        if g not in factors:
            factors[g] = (float(1 + rng.uniform(-rel, rel)), float(rng.uniform(*sd_scale)))
        m, s = base[v]
        out[v] = (float(m * factors[g][0]), float(s * factors[g][1]))
    return out


class Painter:
    """Paints one label map many times (one per role or contrast): the label lookup and a smooth unit-noise
    texture are computed once. Sharing the texture across roles is deliberate: it stands for tissue structure,
    which every sequence of one patient sees."""

    def __init__(self, labels: np.ndarray, rng: np.random.Generator, texture_voxels: float = 0.6) -> None:
        self.values, inverse = np.unique(labels, return_inverse=True)
        self.inverse = inverse.reshape(labels.shape)
        noise = rng.standard_normal(labels.shape).astype(np.float32)
        if texture_voxels > 0:
            noise = ndimage.gaussian_filter(noise, texture_voxels, truncate=3.0)
            noise /= max(float(noise.std()), 1e-6)
        self.noise = noise

    def __call__(self, prior: Prior, default: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        means = np.array([prior.get(int(v), default)[0] for v in self.values], np.float32)
        sds = np.array([prior.get(int(v), default)[1] for v in self.values], np.float32)
        return means[self.inverse] + sds[self.inverse] * self.noise


def paint(labels: np.ndarray, prior: Prior, rng: np.random.Generator, default: tuple[float, float] = (0.0, 0.0),
          texture_voxels: float = 0.6) -> np.ndarray:
    """Each voxel: its label's mean plus sd times unit noise (smoothed a little, so the texture is not white)."""
    values, inverse = np.unique(labels, return_inverse=True)
    means = np.array([prior.get(int(v), default)[0] for v in values], np.float32)
    sds = np.array([prior.get(int(v), default)[1] for v in values], np.float32)
    noise = rng.standard_normal(labels.shape).astype(np.float32)
    if texture_voxels > 0:
        noise = ndimage.gaussian_filter(noise, texture_voxels, truncate=3.0)
        noise /= max(float(noise.std()), 1e-6)
    inverse = inverse.reshape(labels.shape)
    return means[inverse] + sds[inverse] * noise


def bias_field(shape, rng: np.random.Generator, strength: float = 0.3, control: int = 4) -> np.ndarray:
    """A smooth multiplicative field exp(f), f from a coarse Gaussian grid (sd ``strength``) upsampled."""
    coarse = rng.normal(0.0, strength, (control, control, control)).astype(np.float32)
    zoom = [s / control for s in shape]
    f = ndimage.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True)
    return np.exp(f[: shape[0], : shape[1], : shape[2]]).astype(np.float32)


def gamma(img: np.ndarray, rng: np.random.Generator, sd: float = 0.5) -> np.ndarray:
    """Rescale to [0, 1] and raise to exp(N(0, sd)) (a monotonic change: tissue order is kept)."""
    lo, hi = float(img.min()), float(img.max())
    norm = (img - lo) / max(hi - lo, 1e-6)
    return np.power(np.clip(norm, 0.0, 1.0), np.float32(np.exp(rng.normal(0.0, sd)))).astype(np.float32)


def blur_mm(img: np.ndarray, fwhm_mm, spacing) -> np.ndarray:
    """Gaussian blur with a FWHM per axis (x, y, z mm)."""
    sigma = np.asarray(fwhm_mm, float) / 2.3548 / np.asarray(spacing, float)
    if not np.any(sigma > 0.1):
        return img
    return ndimage.gaussian_filter(img, sigma[::-1], truncate=3.0).astype(np.float32)


def low_resolution(img: np.ndarray, spacing, rng: np.random.Generator, p: float = 0.9, max_mm: float = 8.0,
                   ) -> tuple[np.ndarray, dict]:
    """With probability ``p`` one random axis is acquired at U(1, ``max_mm``) mm: blurred with that slice profile,
    resampled down to it and back (linear). Otherwise a mild isotropic blur."""
    axis = int(rng.integers(3))
    thick = float(rng.uniform(1.0, max_mm))
    use = bool(rng.random() < p)
    sp = np.asarray(spacing, float)
    if not use or thick <= sp[axis] * 1.05:
        return blur_mm(img, sp * 0.5, sp), {"low_res_axis": None}
    fwhm = sp * 0.5
    fwhm[axis] = thick
    out = blur_mm(img, fwhm, sp)
    zaxis = 2 - axis  # numpy axis of the (x, y, z) axis
    factor = sp[axis] / thick
    small = ndimage.zoom(out, [factor if i == zaxis else 1.0 for i in range(3)], order=1, mode="nearest")
    back = ndimage.zoom(small, [img.shape[i] / small.shape[i] for i in range(3)], order=1, mode="nearest")
    return back[: img.shape[0], : img.shape[1], : img.shape[2]].astype(np.float32), {
        "low_res_axis": "xyz"[axis], "low_res_mm": round(thick, 2)}


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, sd: float) -> np.ndarray:
    return (img + rng.normal(0.0, sd, img.shape).astype(np.float32)).astype(np.float32)


def rician(img: np.ndarray, rng: np.random.Generator, sd: float) -> np.ndarray:
    """MR magnitude noise: |signal + complex Gaussian|."""
    re = img + rng.normal(0.0, sd, img.shape).astype(np.float32)
    im = rng.normal(0.0, sd, img.shape).astype(np.float32)
    return np.sqrt(re * re + im * im).astype(np.float32)


def mr_chain(img: np.ndarray, spacing, rng: np.random.Generator, *, bias: float = 0.25,
             gamma_sd: float = 0.5, noise: tuple[float, float] = (0.005, 0.03), scale: float = 1000.0,
             background_mask: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """A painted image -> low resolution -> bias -> gamma -> Rician noise, scaled to ``scale``; (image, facts)."""
    img = np.maximum(img, 0.0)
    img, facts = low_resolution(img, spacing, rng)
    img *= bias_field(img.shape, rng, float(rng.uniform(0.0, bias)))
    img = gamma(img, rng, gamma_sd)
    sd = float(rng.uniform(*noise))
    img = rician(img, rng, sd)
    if background_mask is not None:  # skull-stripped data: exact zeros outside the brain
        img[background_mask] = 0.0
    return (img * np.float32(scale)).astype(np.float32), {**facts, "noise_sd": round(sd, 4)}


def ct_chain(img: np.ndarray, spacing, rng: np.random.Generator, noise_hu=(5.0, 25.0),
             ) -> tuple[np.ndarray, dict]:
    """A painted image in Hounsfield units -> slice thickness, quantum noise; int16, clipped to [-1024, 3071]."""
    img, facts = low_resolution(img, spacing, rng, max_mm=5.0)
    sd = float(rng.uniform(*noise_hu))
    img = gaussian_noise(img, rng, sd)
    return np.clip(np.round(img), -1024, 3071).astype(np.int16), {**facts, "noise_hu": round(sd, 2)}


def pet_prior(suv: Mapping[int, float]) -> Prior:
    """FDG uptake per tissue class in SUV, with a +-10 % texture."""
    return {v: (float(s), 0.1 * float(s)) for v, s in suv.items()}


def pet_chain(img: np.ndarray, spacing, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A painted SUV image -> a point-spread blur of U(4, 8) mm FWHM and Poisson counting noise at a random
    count level; returns (SUV image, facts)."""
    img = np.maximum(img, 0.0)
    fwhm = float(rng.uniform(4.0, 8.0))
    img = np.maximum(blur_mm(img, [fwhm] * 3, spacing), 0.0)
    counts_per_suv = float(rng.uniform(8.0, 40.0))  # fewer counts, more noise
    img = rng.poisson(img * counts_per_suv).astype(np.float32) / np.float32(counts_per_suv)
    img = ndimage.gaussian_filter(img, 0.5)  # reconstruction smooths the counting noise a little
    return img.astype(np.float32), {"pet_fwhm_mm": round(fwhm, 2), "counts_per_suv": round(counts_per_suv, 2)}
