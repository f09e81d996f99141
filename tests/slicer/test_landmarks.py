"""The landmark panel's numbers: fit, per-pair errors, RMS and the messages for incomplete or degenerate sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from MultimodalSegLib.Landmarks import MODES, PairRow, summarizeFit


def rotation_z(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


@pytest.fixture
def pairs():
    """Six moving points and their fixed partners under a known rigid transform (RAS mm)."""
    rng = np.random.default_rng(4)
    moving = rng.uniform(-60, 60, size=(6, 3))
    fixed = moving @ rotation_z(12).T + np.array([5.0, -8.0, 3.0])
    return fixed, moving


def test_rigid_fit_recovers_the_transform(pairs):
    fixed, moving = pairs
    summary = summarizeFit(fixed, moving, "rigid")
    assert summary.fit is not None and summary.message == ""
    assert summary.rms < 1e-6 and len(summary.rows) == 6
    np.testing.assert_allclose(summary.fit.matrix[:3, :3], rotation_z(12), atol=1e-9)
    np.testing.assert_allclose(summary.fit.matrix[:3, 3], [5.0, -8.0, 3.0], atol=1e-9)
    # the matrix is the moving -> fixed ("to parent") map in RAS
    np.testing.assert_allclose(moving @ summary.fit.matrix[:3, :3].T + summary.fit.matrix[:3, 3], fixed, atol=1e-9)
    assert summary.rmsText.startswith("RMS: 0.00 mm (leave-one-out mean 0.00 mm)")


def test_noisy_pair_shows_in_its_error(pairs):
    fixed, moving = pairs
    fixed = fixed.copy()
    fixed[2] += [4.0, 0.0, 0.0]
    summary = summarizeFit(fixed, moving, "rigid")
    residuals = [row.residual for row in summary.rows]
    assert int(np.argmax(residuals)) == 2 and summary.rms > 0.5
    loo = [row.looError for row in summary.rows]
    assert int(np.argmax(loo)) == 2 and loo[2] > residuals[2]  # left out, the outlier is predicted worst


def test_incomplete_and_degenerate_sets_explain_themselves(pairs):
    fixed, moving = pairs
    partial = summarizeFit(fixed[:4], moving[:3], "rigid")
    assert partial.fit is None and "place the moving partner of pair 4" in partial.message
    assert [r.pair for r in partial.rows] == [1, 2, 3] and partial.rmsText == "RMS: -"
    line = np.array([[0, 0, 0], [10, 0, 0], [20, 0, 0], [30, 0, 0]], float)
    collinear = summarizeFit(line, line + 1.0, "rigid")
    assert collinear.fit is None and "collinear" in collinear.message
    too_few = summarizeFit(fixed[:3], moving[:3], "affine")
    assert too_few.fit is None and "at least 4" in too_few.message
    empty = summarizeFit(np.zeros((0, 3)), np.zeros((0, 3)), "rigid")
    assert empty.fit is None and empty.rows == []


def test_every_mode_and_tps_note(pairs):
    fixed, moving = pairs
    for mode, _text in MODES:
        summary = summarizeFit(fixed, moving, mode)
        assert summary.fit is not None and summary.fit.mode == mode
    tps = summarizeFit(fixed, moving, "tps")
    assert tps.fit.matrix is None and "leave-one-out" in tps.message
    source, target = tps.fit.tps_landmarks
    np.testing.assert_allclose(source, fixed)
    np.testing.assert_allclose(target, moving, atol=1e-6)  # resampling direction: fixed -> moving


def test_row_cells():
    assert PairRow(3, 1.234, float("nan")).cells() == ["3", "1.23", "-"]
    assert PairRow(1, None, 0.5).cells() == ["1", "-", "0.50"]
