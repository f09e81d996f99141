"""Modality-aware intensity priors per painted value: (mean, sd), before per-sample jitter.

MR values are on a white-matter-is-100 scale (the chain rescales them); CT is Hounsfield units; PET is SUV.
Tumour values keep the sub-region order of real sequences (checked on ../shared/data/real-mr): enhancing tumour
brightest on T1ce, necrosis dark on T1ce and bright on T2, oedema bright on FLAIR and T2.
"""

from __future__ import annotations

import numpy as np

from multimodalseg.synthesis import labels as lt
from multimodalseg.synthesis.tumour import ED, ET, NCR

_GM = (3, 42)
_DEEP = {10: 88, 49: 88, 11: 75, 50: 75, 12: 80, 51: 80, 13: 95, 52: 95, 17: 68, 53: 68, 18: 70, 54: 70,
         26: 72, 58: 72, 28: 90, 60: 90, 16: 95, 85: 95}
_CSF = (4, 43, 5, 44, 14, 15, 24, 72, lt.OUTER_CSF)
EXTRA = tuple(v - 400 for v in lt.SYNTHSEG_EXTRA)


def brain_groups() -> dict[int, int]:
    """Painted brain value -> intensity group: a left/right pair shares one; the corpus callosum is white matter."""
    values = set(lt.BRAIN_LABELS) | set(EXTRA) | {0, lt.OTHER, lt.OUTER_CSF, NCR, ED, ET}
    groups = {v: v for v in values}
    groups[lt.OUTER_CSF] = 24
    for a, b in lt.brain_pairs():
        groups[b] = groups.get(a, a)
    for v in lt.CC_VALUES:
        groups[v] = 2
    return groups


def t1_brain() -> dict[int, tuple[float, float]]:
    """T1-weighted (MPRAGE-like): WM bright, GM mid, CSF dark."""
    p = {0: (0.0, 0.0), 2: (100, 4), 41: (100, 4), 7: (95, 4), 46: (95, 4), 8: (66, 6), 47: (66, 6),
         30: (60, 10), 62: (60, 10), 31: (55, 8), 63: (55, 8), 77: (75, 6), 80: (60, 6), lt.OTHER: (50, 10)}
    p.update({v: (65.0, 6.0) for v in _GM})
    p.update({v: (float(m), 4.0) for v, m in _DEEP.items()})
    p.update({v: (22.0, 5.0) for v in _CSF})
    p.update({v: (100.0, 4.0) for v in lt.CC_VALUES})
    # extra-cerebral (SynthSeg 5xx: skin, muscle, fat, bone, eyes, ...): spread from dark to bright
    for i, v in enumerate(EXTRA):
        p[v] = (float(15 + (i * 37) % 130), 10.0)
    return p


def tumour_sequences() -> dict[str, dict[int, tuple[float, float]]]:
    """FLAIR, T1, T1ce and T2 priors of a skull-stripped brain with a tumour (BraTS)."""
    base = t1_brain()
    seq = {}
    # (WM, GM, deep scale, CSF, choroid, vessel, WM lesion, NCR, ED, ET)
    rows = {
        "t1": (100, 65, 1.0, 25, 50, 50, 75, 40, 72, 75),
        "t1ce": (100, 70, 1.0, 25, 140, 200, 75, 35, 75, 175),
        "t2": (60, 90, 0.9, 200, 120, 35, 130, 185, 150, 115),
        "flair": (80, 100, 1.0, 22, 60, 40, 150, 110, 175, 140),
    }
    for name, (wm, gm, deep, csf, chor, ves, les, ncr, ed, et) in rows.items():
        p = dict(base)
        for v in (2, 41, 7, 46, *lt.CC_VALUES):
            p[v] = (float(wm), 4.0)
        for v in (*_GM, 8, 47):
            p[v] = (float(gm), 6.0)
        for v, m in _DEEP.items():  # deep grey matter sits between WM and GM on every sequence
            p[v] = (float(wm + (gm - wm) * (100 - m) / 35.0 * deep), 4.0)
        p.update({v: (float(csf), 5.0) for v in _CSF})
        p.update({31: (float(chor), 8.0), 63: (float(chor), 8.0), 30: (float(ves), 8.0), 62: (float(ves), 8.0),
                  77: (float(les), 6.0), NCR: (float(ncr), 10.0), ED: (float(ed), 8.0), ET: (float(et), 10.0)})
        seq[name] = p
    return seq


def tumour_appearance(rng: np.random.Generator) -> dict[str, dict[int, tuple[float, float]]]:
    """One tumour's look on the four sequences, drawn once per case and coherent across them (real lesions vary
    far more than one table row): a fluid-filled cystic core (dark on T1/T1ce, very bright on T2, dark on FLAIR
    where the fluid is suppressed) in 35 % of cases, else a necrotic core; oedema of any FLAIR/T2 brightness above
    white matter; an enhancing rim of any T1ce brightness above white matter. Same scale as
    :func:`tumour_sequences` (T1 white matter 100)."""
    u = rng.uniform
    if rng.random() < 0.35:
        ncr = {"t1": u(15, 35), "t1ce": u(15, 35), "t2": u(190, 235), "flair": u(20, 95)}
    else:
        ncr = {"t1": u(30, 65), "t1ce": u(25, 65), "t2": u(140, 200), "flair": u(90, 170)}
    ed = {"t1": u(55, 90), "t1ce": u(55, 90), "t2": u(115, 190), "flair": u(120, 215)}
    et = {"t1": u(55, 95), "t1ce": u(125, 240), "t2": u(85, 150), "flair": u(95, 175)}
    return {role: {NCR: (float(ncr[role]), 10.0), ED: (float(ed[role]), 8.0), ET: (float(et[role]), 10.0)}
            for role in ncr}


def pet_suv() -> dict[int, float]:
    """FDG SUV per painted brain value: grey matter high, white matter low, CSF near zero."""
    s = {0: 0.0, 2: 3.0, 41: 3.0, 7: 3.2, 46: 3.2, 8: 7.0, 47: 7.0, 16: 4.5, 30: 1.5, 62: 1.5, 31: 2.0, 63: 2.0,
         77: 2.5, 80: 3.0, 85: 3.0, lt.OTHER: 1.0}
    s.update({v: 9.0 for v in _GM})
    s.update({10: 8.0, 49: 8.0, 11: 8.5, 50: 8.5, 12: 9.5, 51: 9.5, 13: 6.0, 52: 6.0, 17: 6.0, 53: 6.0, 18: 5.5,
              54: 5.5, 26: 8.0, 58: 8.0, 28: 5.0, 60: 5.0})
    s.update({v: 0.5 for v in _CSF})
    s.update({v: 2.8 for v in lt.CC_VALUES})
    s.update({v: 0.9 for v in EXTRA})
    return s


T = lt.THORAX
HEART_LEFT = (420, 500, 820)
HEART_RIGHT = (550, 600, 850)


# Chest CTs come in every contrast phase: users give cardiac CTAs (left heart brightest), venous-phase chest CTs
# and plain, non-contrast ones, where blood and myocardium are both 35-55 HU and only the shape and the pericardial
# fat tell the chambers apart (the real chest CTs of the benchmark are such).
CT_PHASES = {"arterial": 0.5, "venous": 0.2, "non-contrast": 0.3}


def ct_phase(rng) -> str:
    """One contrast phase of :data:`CT_PHASES`, by its probability."""
    names = list(CT_PHASES)
    return names[int(rng.choice(len(names), p=list(CT_PHASES.values())))]


def heart_ct(rng, phase: str = "arterial") -> dict[int, tuple[float, float]]:
    """Cardiac or chest CT (HU) in a contrast phase of :data:`CT_PHASES`, drawn per sample within each tissue's
    range. An arterial case draws exactly what every case drew before the phases existed."""
    u = rng.uniform
    if phase == "arterial":
        left, right, myo = float(u(250, 500)), float(u(150, 450)), float(u(80, 150))
    elif phase == "venous":
        left = float(u(120, 250))
        right, myo = left + float(u(-30, 30)), float(u(80, 130))
    elif phase == "non-contrast":
        left = float(u(30, 55))
        right, myo = left + float(u(-5, 5)), left + float(u(-3, 12))
    else:
        raise ValueError(f"unknown CT phase {phase!r}; known: {', '.join(CT_PHASES)}")
    p = {0: (-1000.0, 5.0), 205: (myo, 15.0), T["fat"]: (float(u(-120, -80)), 15.0),
         T["lung"]: (float(u(-880, -750)), 40.0), T["bone"]: (float(u(400, 900)), 80.0),
         T["marrow"]: (float(u(150, 300)), 40.0), T["muscle"]: (float(u(35, 65)), 12.0),
         T["liver"]: (float(u(50, 110)), 12.0), T["soft"]: (float(u(20, 60)), 12.0), T["blood"]: (left, 20.0),
         T["csf"]: (float(u(0, 20)), 8.0), T["airway"]: (float(u(-1000, -950)), 10.0)}
    p.update({v: (left, 20.0) for v in HEART_LEFT})
    p.update({v: (right, 25.0) for v in HEART_RIGHT})
    return p


def heart_mr() -> dict[int, tuple[float, float]]:
    """Balanced SSFP-like cardiac MR: blood and fat bright, myocardium and lung dark."""
    p = {0: (0.0, 0.0), 205: (25, 4), T["fat"]: (75, 8), T["lung"]: (6, 3), T["bone"]: (10, 4),
         T["marrow"]: (55, 8), T["muscle"]: (25, 4), T["liver"]: (35, 5), T["soft"]: (30, 6), T["blood"]: (85, 8),
         T["csf"]: (80, 8), T["airway"]: (2, 1)}
    p.update({v: (90.0, 6.0) for v in HEART_LEFT + HEART_RIGHT})
    return p


B = lt.SPINE_BODY
_POSTERIOR = (41, 42, 43, 44, 45, 46, 47, 48)


def spine_ct(rng) -> dict[int, tuple[float, float]]:
    u = rng.uniform
    body = float(u(150, 300))
    p = {0: (-1000.0, 5.0), 49: (body, 40.0), 50: (body, 40.0), 26: (body * 1.2, 50.0),
         62: (float(u(400, 700)), 60.0), 100: (float(u(70, 110)), 12.0), 60: (float(u(20, 40)), 8.0),
         61: (float(u(0, 15)), 8.0), B["muscle"]: (float(u(40, 60)), 10.0), B["fat"]: (float(u(-110, -80)), 12.0),
         B["soft"]: (float(u(20, 50)), 12.0)}
    p.update({v: (float(u(300, 600)), 60.0) for v in _POSTERIOR})
    return p


def spine_t2() -> dict[int, tuple[float, float]]:
    p = {0: (0.0, 0.0), 49: (40, 5), 50: (40, 5), 26: (42, 6), 62: (12, 3), 100: (65, 8), 60: (35, 4), 61: (95, 6),
         B["muscle"]: (18, 3), B["fat"]: (75, 8), B["soft"]: (35, 6)}
    p.update({v: (30.0, 5.0) for v in _POSTERIOR})
    return p
