"""Vessels in the subarachnoid space of a painted brain, for the tumour task's contrast-enhanced T1.

A real post-contrast T1 shows cortical veins, dural sinuses and other vessels as thin bright lines in the
sulci and at the brain's surface, about as bright as enhancing tumour. A model that never saw them calls them
tumour (the shipped 0.2.0 demo did, on real MR). SynthSeg's maps hold almost no vessel voxels, so they are drawn:
tubes where the zero level sets of two smooth random fields meet (a random network of curves), kept in the CSF
around and between the gyri. They are painted with the aseg vessel value, whose priors are bright on T1ce and
dark (flow voids) on T2 and FLAIR, and are predicted as background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from multimodalseg.phantoms.geometry import Grid
from multimodalseg.synthesis import labels as lt

VESSEL = 30  # aseg Left-vessel; its pair 62 shares the prior, so the mirror's swap changes nothing painted
_CSF = (lt.OUTER_CSF, 24)
_TISSUE_FREE = (0, *_CSF)


def add_vessels(painted: np.ndarray, grid: Grid, rng: np.random.Generator, *,
                fraction: tuple[float, float] = (0.02, 0.08), scale_mm: tuple[float, float] = (6.0, 14.0),
                reach_mm: float = 5.0) -> tuple[np.ndarray, dict]:
    """A copy of ``painted`` with vessels in the CSF within ``reach_mm`` of brain tissue; returns it and facts.

    Args:
        fraction: share of that CSF turned into vessel, drawn per sample.
        scale_mm: smoothness of the random fields (how far a vessel runs before it bends), drawn per sample.
    """
    sp = np.asarray(grid.spacing, float)[::-1]  # (z, y, x) mm
    csf = np.isin(painted, _CSF)
    tissue = ~np.isin(painted, _TISSUE_FREE)
    if not csf.any() or not tissue.any():
        return painted.copy(), {"vessel_ml": 0.0}
    near = csf & (ndimage.distance_transform_edt(~tissue, sampling=sp) <= reach_mm)
    sigma = float(rng.uniform(*scale_mm)) / sp
    fields = [ndimage.gaussian_filter(rng.standard_normal(painted.shape).astype(np.float32), sigma) for _ in range(2)]
    closeness = np.maximum(*(np.abs(f) / max(float(f.std()), 1e-6) for f in fields))
    share = float(rng.uniform(*fraction))
    threshold = np.quantile(closeness[near], share) if near.any() else -1.0
    vessels = near & (closeness <= threshold)
    out = painted.copy()
    out[vessels] = VESSEL
    return out, {"vessel_ml": round(float(vessels.sum()) * float(np.prod(sp)) / 1000.0, 2)}
