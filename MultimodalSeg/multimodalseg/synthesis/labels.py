"""Label tables: every source label of the real anatomy goes somewhere, stated here and tested.

Anatomy maps are kept in *painted* values (uint8): the values a generator paints, one intensity group each.
The output label map of a task keeps only the painted values that are among the task's labels (the rest,
such as skull or lung, is painted but predicted as background).

- Brain (SynthSeg's 20 maps, fsaverage, any FreeSurfer aseg): aseg values stay; choroid-plexus sub-labels
  136/137 -> 31, 163/164 -> 63; periventricular lesions 25/57 and 78/79 -> 77; 81/82 -> 80; SynthSeg's
  extra-cerebral 5xx -> 5xx - 400 (102..130, painted only); in SynthSeg's maps (those with 5xx) 24 labels all
  extra-cerebral CSF, so it becomes :data:`OUTER_CSF` (painted as CSF, predicted as background); aparc
  cortex 1000-1035/2000-2035 -> 3/42; anything else -> :data:`OTHER` (painted only). Corpus callosum 251-255
  is derived when absent (:func:`derive_corpus_callosum`).
- Heart: MM-WHS order 1..7 (Myo, LA, LV, RA, RV, AA, PA) -> 205, 420, 500, 550, 600, 820, 850; the body
  model's tissues (:data:`THORAX`) are painted only.
- Spine (panoptica / tptbox subregions): vertebra subregions 41-50, endplate 62, sacrum 26 -> vertebra (1);
  disc 100 -> disc (2); cord 60 and canal 61 painted only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# The PET/MR task's 45 structures: exactly the labels FreeSurfer's aseg.mgz holds (the fidelity issue's list).
BRAIN_LABELS: tuple[int, ...] = (2, 3, 4, 5, 7, 8, *range(10, 19), 24, 26, 28, 30, 31, 41, 42, 43, 44, 46, 47,
                                 *range(49, 55), 58, 60, 62, 63, 72, 77, 80, 85, *range(251, 256))
OTHER = 99  # painted only: a source label no table names
OUTER_CSF = 124  # painted only: SynthSeg's 24 (all extra-cerebral CSF), far more than aseg's "CSF" structure
SYNTHSEG_EXTRA = (502, 506, 507, 508, 509, 511, 512, 514, 515, 516, 530)
CC_VALUES = (251, 252, 253, 254, 255)  # posterior -> anterior, as FreeSurfer numbers them

_BRAIN_MERGE = {136: 31, 137: 31, 163: 63, 164: 63, 25: 77, 57: 77, 78: 77, 79: 77, 81: 80, 82: 80,
                # FreeSurfer <= 6 thalamus naming is the same value; 9/48 (old thalamus) -> thalamus
                9: 10, 48: 49}

# Paired left/right painted values (the L/R swap of a flip). Cortex/WM and every "Left-"/"Right-" aseg pair.
BRAIN_PAIRS: tuple[tuple[int, int], ...] = (
    (2, 41), (3, 42), (4, 43), (5, 44), (7, 46), (8, 47), (10, 49), (11, 50), (12, 51), (13, 52), (17, 53),
    (18, 54), (26, 58), (28, 60), (30, 62), (31, 63),
)

HEART_SOURCE = {1: 205, 2: 420, 3: 500, 4: 550, 5: 600, 6: 820, 7: 850}  # MM-WHS order -> task values
HEART_VALUES = tuple(HEART_SOURCE.values())
# Painted-only thorax tissues of the body model (uint16 in memory next to the heart values).
THORAX = {"soft": 10, "fat": 11, "muscle": 12, "lung": 13, "bone": 14, "liver": 15, "blood": 16, "marrow": 17,
          "csf": 18, "airway": 19}

SPINE_VERTEBRA = (26, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 62)
SPINE_DISC = (100,)
SPINE_PAINTED_ONLY = (60, 61)
# Painted-only body tissue around the spine crops.
SPINE_BODY = {"muscle": 200, "fat": 201, "soft": 202, "air": 0}
SPINE_OUTPUT = {**{v: 1 for v in SPINE_VERTEBRA}, **{v: 2 for v in SPINE_DISC}}


def brain_table(values) -> dict[int, int]:
    """Source value -> painted value for every value in ``values`` (nothing is dropped silently)."""
    table = {}
    values = [int(x) for x in values]
    synthseg = any(500 <= v < 600 for v in values)  # a whole-head SynthSeg map
    for v in values:
        if v == 24 and synthseg:
            table[v] = OUTER_CSF
        elif v == 0 or v in BRAIN_LABELS:
            table[v] = v
        elif v in _BRAIN_MERGE:
            table[v] = _BRAIN_MERGE[v]
        elif 500 <= v < 600:
            table[v] = v - 400
        elif 102 <= v < 200:  # already painted (a packaged map): idempotent
            table[v] = v
        elif 1000 <= v < 1036 or 1100 <= v < 1200 or 11100 <= v < 11200:
            table[v] = 3
        elif 2000 <= v < 2036 or 2100 <= v < 2200 or 12100 <= v < 12200:
            table[v] = 42
        else:
            table[v] = OTHER
    return table


def apply_table(labels: np.ndarray, table: Mapping[int, int], dtype=np.uint16) -> np.ndarray:
    """Relabel ``labels`` through ``table`` (values not in it raise KeyError, so every value is accounted for)."""
    values, inverse = np.unique(labels, return_inverse=True)
    lut = np.array([table[int(v)] for v in values], dtype=dtype)
    return lut[inverse].reshape(labels.shape)


def output_labels(painted: np.ndarray, keep: Mapping[int, int] | tuple[int, ...]) -> np.ndarray:
    """The task's label map from painted values: ``keep`` is a value -> output table or a tuple of kept values;
    every other painted value becomes background."""
    table = dict(keep) if isinstance(keep, Mapping) else {int(v): int(v) for v in keep}
    lut = np.zeros(int(max(painted.max(), max(table, default=0))) + 1, np.uint16)
    for k, v in table.items():
        lut[k] = v
    return lut[painted]


def swap_table(pairs: tuple[tuple[int, int], ...], size: int = 1024) -> np.ndarray:
    """A lookup array that swaps each left/right pair and leaves every other value."""
    lut = np.arange(size, dtype=np.int64)
    for a, b in pairs:
        lut[a], lut[b] = b, a
    return lut


def lateral_pairs_from_names(labels) -> tuple[tuple[int, int], ...]:
    """Left/right pairs of a task's labels by their "Left-"/"Right-" names (until the task spec has its own
    lateral-pairs helper, which is then used instead)."""
    by_name = {lab.name: lab.value for lab in labels}
    pairs = []
    for name, value in by_name.items():
        if name.startswith("Left-") and "Right-" + name[5:] in by_name:
            pairs.append((value, by_name["Right-" + name[5:]]))
    return tuple(pairs)


def brain_pairs() -> tuple[tuple[int, int], ...]:
    """The brain's L/R pairs: the task spec's helper when it has one, else names; always cortex and WM."""
    from multimodalseg.tasks import get_task

    task = get_task("petmr-brain")
    helper = getattr(task, "lateral_pairs", None)
    found = helper().values if callable(helper) else lateral_pairs_from_names(task.labels)
    return tuple(sorted(set(found) | set(BRAIN_PAIRS)))


def brain_output_values() -> tuple[int, ...]:
    """Painted values the PET/MR label map keeps: the task's label values when they are the 45 aseg labels."""
    from multimodalseg.tasks import get_task

    values = tuple(lab.value for lab in get_task("petmr-brain").labels)
    return values if set(values) == set(BRAIN_LABELS) else BRAIN_LABELS


def derive_corpus_callosum(labels: np.ndarray, matrix: np.ndarray, origin, half_width_mm: float = 3.0) -> np.ndarray:
    """Split the midline cerebral white matter into FreeSurfer's 5 corpus-callosum segments, like mri_cc.

    Args:
        labels: painted brain map (Z, Y, X) with cerebral WM 2/41; returned unchanged when it has 251-255.
        matrix, origin: the grid's ``D @ diag(spacing)`` and origin (LPS mm): physical = origin + matrix @ (x, y, z).
        half_width_mm: the slab around the mid-sagittal plane that counts as callosal.

    The mid-sagittal plane is where left (2) and right (41) white matter touch (median x of those voxels).
    Within the slab, the largest connected WM component is the callosum; it is cut into 5 equal parts along
    posterior-anterior: 251 (posterior) .. 255 (anterior).
    """
    from scipy import ndimage

    out = labels.copy()
    if np.isin(labels, CC_VALUES).any():
        return out
    wm_l, wm_r = labels == 2, labels == 41
    if not wm_l.any() or not wm_r.any():
        return out
    touch = (wm_l & ndimage.binary_dilation(wm_r)) | (wm_r & ndimage.binary_dilation(wm_l))
    if not touch.any():
        return out

    def physical(mask: np.ndarray) -> np.ndarray:
        zyx = np.nonzero(mask)
        return np.asarray(origin, float) + np.stack(zyx[::-1], 1) @ np.asarray(matrix, float).T

    x_mid = float(np.median(physical(touch)[:, 0]))
    wm = wm_l | wm_r
    slab = np.zeros_like(wm)
    idx = np.nonzero(wm)
    slab[idx] = np.abs(physical(wm)[:, 0] - x_mid) <= half_width_mm
    comp, n = ndimage.label(slab)
    if n == 0:
        return out
    sizes = ndimage.sum(slab, comp, range(1, n + 1))
    cc = comp == (1 + int(np.argmax(sizes)))
    y = physical(cc)[:, 1]
    y0, y1 = float(y.min()), float(y.max())
    # y grows posterior in LPS: the most posterior fifth is 251, the most anterior 255.
    part = np.clip(((y1 - y) / max(y1 - y0, 1e-6) * 5).astype(int), 0, 4)
    out[np.nonzero(cc)] = np.asarray(CC_VALUES)[part]
    return out
