"""The landmark panel's numbers as plain data: fit the pairs, per-pair errors, RMS and a message.

Plain Python around ``multimodalseg.registration`` (numpy/scipy/SimpleITK, no torch): Slicer's own process calls
it on every point move. ``LandmarkPanel.py`` shows the result and builds the transform node from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from multimodalseg.errors import UserError
from multimodalseg.registration.landmarks import LandmarkFit, fit_landmarks

# (mode passed to fit_landmarks, what the selector shows)
MODES: tuple[tuple[str, str], ...] = (
    ("rigid", "Rigid"),
    ("similarity", "Similarity (rigid + scale)"),
    ("affine", "Affine"),
    ("tps", "Thin-plate spline"),
)


@dataclass
class PairRow:
    """One row of the error table: pair number (1-based), fit residual and leave-one-out error in mm."""

    pair: int
    residual: float | None
    looError: float | None

    def cells(self) -> list[str]:
        def mm(v: float | None) -> str:
            return "-" if v is None or not math.isfinite(v) else f"{v:.2f}"

        return [str(self.pair), mm(self.residual), mm(self.looError)]


@dataclass
class FitSummary:
    """What the panel shows after each point move.

    Attributes:
        fit: the fitted transform, or None when the point sets cannot define one yet.
        message: empty when fine, else a sentence for the user (e.g. why the set is degenerate).
        rows: one :class:`PairRow` per pair present in both lists.
        rms: fit RMS in mm (None without a fit).
    """

    fit: LandmarkFit | None
    message: str
    rows: list[PairRow] = field(default_factory=list)
    rms: float | None = None

    @property
    def rmsText(self) -> str:
        if self.rms is None:
            return "RMS: -"
        meanLoo = [r.looError for r in self.rows if r.looError is not None and math.isfinite(r.looError)]
        text = f"RMS: {self.rms:.2f} mm"
        if meanLoo:
            text += f" (leave-one-out mean {sum(meanLoo) / len(meanLoo):.2f} mm)"
        return text


def summarizeFit(fixedRas: np.ndarray, movingRas: np.ndarray, mode: str) -> FitSummary:
    """Fit ``mode`` to the pairs (row i of each list is pair i; RAS mm) and summarise it for the panel.

    Never raises for the user's points: degenerate or incomplete sets come back with ``fit`` None and the reason.
    """
    fixed = np.asarray(fixedRas, float).reshape(-1, 3)
    moving = np.asarray(movingRas, float).reshape(-1, 3)
    pairs = min(len(fixed), len(moving))
    emptyRows = [PairRow(i + 1, None, None) for i in range(pairs)]
    if len(fixed) != len(moving):
        more, fewer = ("fixed", "moving") if len(fixed) > len(moving) else ("moving", "fixed")
        return FitSummary(None, f"{max(len(fixed), len(moving))} {more} points but {pairs} {fewer}: place the "
                                f"{fewer} partner of pair {pairs + 1} (pairs are matched in order).", emptyRows)
    try:
        fit = fit_landmarks(fixed, moving, mode, frame="RAS")
    except UserError as exc:
        return FitSummary(None, str(exc), emptyRows)
    loo = fit.loo_errors
    rows = [PairRow(i + 1, float(fit.residuals[i]), float(loo[i])) for i in range(pairs)]
    message = ""
    if mode == "tps":
        message = "Thin-plate spline interpolates the pairs exactly; judge it by the leave-one-out errors."
    return FitSummary(fit, message, rows, fit.rms)
