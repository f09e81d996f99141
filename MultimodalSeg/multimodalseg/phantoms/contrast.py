"""From tissue codes to an image: per-tissue values, partial volume, point-spread blur, bias field and noise.

Every function takes its random generator explicitly so a seed reproduces a case voxel for voxel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def lookup(codes: np.ndarray, table: Mapping[int, float], default: float = 0.0) -> np.ndarray:
    """float32 array of ``table[code]`` per voxel (``default`` for codes not in the table)."""
    lut = np.full(int(codes.max(initial=0)) + 1, default, np.float32)
    for code, value in table.items():
        if code < lut.size:
            lut[code] = value
    return lut[codes]


def label_map(codes: np.ndarray, code_to_label: Mapping[int, int]) -> np.ndarray:
    """uint16 label map: tissue codes listed in ``code_to_label`` get their label value, all others 0."""
    lut = np.zeros(int(codes.max(initial=0)) + 1, np.uint16)
    for code, value in code_to_label.items():
        if code < lut.size:
            lut[code] = value
    return lut[codes]


def jitter(table: Mapping[int, float], rng: np.random.Generator, relative: float) -> dict[int, float]:
    """Per-case tissue values: each multiplied by ``1 + N(0, relative)`` (scanner and subject variation).

    Codes are visited in sorted order so the draw does not depend on the table's insertion order.
    """
    return {k: float(table[k]) * float(1.0 + rng.normal(0.0, relative)) for k in sorted(table)}


def partial_volume(image: np.ndarray, sigma_voxels: float = 0.5) -> np.ndarray:
    """Blend tissue values across edges as a voxel's finite extent does (a blur of about one voxel width)."""
    return ndimage.gaussian_filter(image, sigma_voxels, mode="nearest", truncate=2.0)


def psf_blur(image: np.ndarray, fwhm_mm: float | Sequence[float], spacing_xyz: Sequence[float]) -> np.ndarray:
    """Gaussian point-spread function of ``fwhm_mm`` (scalar or per axis x, y, z), in physical units."""
    fwhm = np.broadcast_to(np.asarray(fwhm_mm, float), (3,))
    sigma_zyx = (fwhm * FWHM_TO_SIGMA / np.asarray(spacing_xyz, float))[::-1]
    return ndimage.gaussian_filter(image, sigma_zyx, mode="nearest", truncate=3.0)


def bias_field(shape_zyx: Sequence[int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """Smooth multiplicative field ``exp(quadratic polynomial)`` over the grid, log-amplitude about ``strength``.

    Like an MR receive-coil sensitivity: a few percent to tens of percent, varying over the whole field of view.
    """
    c = rng.normal(0.0, strength / 2.0, 9)
    w, v, u = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape_zyx)
    u, v = u[None, :], v[:, None]
    # log field = in-plane part + through-plane part + w * (in-plane gradient): two full-size passes only
    plane = c[0] * u + c[1] * v + c[3] * (u * u - 1 / 3) + c[4] * (v * v - 1 / 3) + c[6] * u * v
    slope = c[7] * v + c[8] * u
    through = c[2] * w + c[5] * (w * w - 1 / 3)
    log_field = plane.astype(np.float32)[None] + (w[:, None, None] * slope.astype(np.float32)[None])
    log_field += through.astype(np.float32)[:, None, None]
    return np.exp(log_field, out=log_field)


def rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude MR noise: ``|S + sigma (n1 + i n2)|`` with independent Gaussians per channel."""
    real = rng.standard_normal(image.shape, dtype=np.float32)
    real *= np.float32(sigma)
    real += image
    imag = rng.standard_normal(image.shape, dtype=np.float32)
    imag *= np.float32(sigma)
    real *= real
    imag *= imag
    real += imag
    return np.sqrt(real, out=real)


def gaussian(image: np.ndarray, sigma: float | np.ndarray, rng: np.random.Generator,
             correlation_voxels: float = 0.0) -> np.ndarray:
    """Additive Gaussian noise of standard deviation ``sigma``; spatially correlated like reconstructed CT/PET
    noise when ``correlation_voxels`` > 0 (the blurred field is rescaled to keep its standard deviation)."""
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    if correlation_voxels > 0:
        noise = ndimage.gaussian_filter(noise, correlation_voxels, mode="wrap", truncate=2.0)
        noise /= max(float(noise.std()), 1e-6)
    return image + np.asarray(sigma, np.float32) * noise
