"""Fusion metrics EN, MI, SF, VIF (METHODS §E.4) on hand-made images with known answers."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from multimodalseg import fusion_metrics as fm
from scipy.signal import convolve2d


def smooth_random(shape=(96, 80), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return convolve2d(rng.uniform(0, 255, shape), np.ones((5, 5)) / 25, mode="same", boundary="symm")


def joint_entropy_nats(a: np.ndarray, b: np.ndarray) -> float:
    pairs = np.stack([np.round(a).ravel(), np.round(b).ravel()], axis=1)
    _, counts = np.unique(pairs, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_entropy_known_values():
    assert fm.entropy(np.full((40, 40), 77, np.uint8)) == 0.0
    two_levels = np.zeros((40, 40), np.uint8)
    two_levels[:, 20:] = 200
    assert fm.entropy(two_levels) == pytest.approx(1.0, abs=1e-12)
    four_levels = np.repeat(np.array([0, 60, 120, 250], np.uint8), 100).reshape(20, 20)
    assert fm.entropy(four_levels) == pytest.approx(2.0, abs=1e-12)
    all_levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert fm.entropy(all_levels) == pytest.approx(8.0, abs=1e-12)
    # 3:1 split: H = -(3/4 log2 3/4 + 1/4 log2 1/4)
    skewed = np.zeros((40, 40))
    skewed[:10] = 255
    assert fm.entropy(skewed) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_entropy_bins_rounded_grey_levels():
    img = np.zeros((10, 10))
    img[:5] = 10.4  # rounds to 10; values above 255 clip to 255
    img[5:] = 300.0
    assert fm.entropy(img) == pytest.approx(1.0)


def test_mutual_information_known_values():
    a = smooth_random()
    h_a = fm.entropy(a) * math.log(2)  # nats
    assert fm.mutual_information(a, a) == pytest.approx(h_a, rel=1e-12)
    # MI does not care which grey level stands for which: an inverted copy shares all information
    assert fm.mutual_information(a, 255 - a) == pytest.approx(h_a, rel=1e-12)
    # row stripes and column stripes are exactly independent
    rows = np.repeat((np.arange(32) % 2 * 255)[:, None], 32, axis=1)
    assert fm.mutual_information(rows, rows.T) == pytest.approx(0.0, abs=1e-12)
    assert fm.mutual_information(rows, np.full_like(rows, 9)) == 0.0


def test_mutual_information_matches_entropy_identity_and_fusion_sum():
    a, b = smooth_random(seed=1), smooth_random(seed=2)
    f = 0.5 * a + 0.5 * b
    for x, y in ((f, a), (f, b), (a, b)):
        expected = (fm.entropy(x) + fm.entropy(y)) * math.log(2) - joint_entropy_nats(x, y)
        assert fm.mutual_information(x, y) == pytest.approx(expected, rel=1e-9)
    assert fm.fusion_mutual_information(f, a, b) == pytest.approx(
        fm.mutual_information(f, a) + fm.mutual_information(f, b))


def test_spatial_frequency_known_values():
    assert fm.spatial_frequency(np.full((30, 30), 100.0)) == 0.0
    columns = np.tile(np.array([0.0, 10.0]), (30, 15))  # every horizontal step is 10, vertical steps 0
    assert fm.spatial_frequency(columns) == pytest.approx(10.0)
    checker = (np.indices((30, 30)).sum(axis=0) % 2) * 10.0
    assert fm.spatial_frequency(checker) == pytest.approx(10.0 * math.sqrt(2))
    ramp = np.tile(np.arange(40.0) * 3, (20, 1))  # horizontal steps 3
    assert fm.spatial_frequency(ramp) == pytest.approx(3.0)


def test_vif_known_behaviour():
    a = smooth_random()
    assert fm.vifp(a, a) == pytest.approx(1.0, abs=1e-6)
    assert fm.vifp(a, np.full_like(a, 128.0)) == 0.0
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 1, a.shape)
    v_small, v_large = fm.vifp(a, a + 5 * noise), fm.vifp(a, a + 40 * noise)
    assert 0 < v_large < v_small < 1
    assert fm.vifp(a, 1.5 * (a - a.mean()) + a.mean()) > 1.0  # contrast gain raises VIF above 1
    assert fm.fusion_vif(a, a, a) == pytest.approx(2.0, abs=1e-6)
    assert fm.vifp(np.full_like(a, 50.0), a) == 1.0  # 0/0 with a flat reference, reported as 1 like CDDFuse


def test_vif_separable_filter_equals_matlab_window():
    x = smooth_random((60, 50), seed=4)
    for n in (17, 9, 5, 3):
        sd = n / 5.0
        r = (n - 1) / 2
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        window = np.exp(-(xx**2 + yy**2) / (2 * sd * sd))
        window /= window.sum()
        np.testing.assert_allclose(fm._filter_valid(x, fm._gaussian_1d(n)), convolve2d(x, window, mode="valid"),
                                   rtol=1e-10, atol=1e-9)


def test_fusion_metrics_and_volume_mean():
    a, b = smooth_random(seed=5), smooth_random(seed=6)
    f = np.maximum(a, b)
    one = fm.fusion_metrics(f, a, b)
    assert set(one) == {"EN", "MI", "SF", "VIF"}
    assert one["EN"] == fm.entropy(f) and one["SF"] == fm.spatial_frequency(f)
    # a volume of the same slice twice, plus an empty (constant) slice that is skipped
    vol = lambda s: np.stack([s, s, np.zeros_like(s)], axis=1)  # noqa: E731  slices along axis 1
    mean = fm.volume_fusion_metrics(vol(f), vol(a), vol(b), axis=1)
    assert mean["slices"] == 2
    for k in one:
        assert mean[k] == pytest.approx(one[k])
    assert fm.format_metrics({"EN": 5.02, "MI": 2.6}) == "EN 5.02 bits, MI 2.60 nats"


def test_to_gray8():
    x = np.array([[-1000.0, 500.0], [2000.0, 3000.0]])
    np.testing.assert_array_equal(fm.to_gray8(x), [[0, 96], [191, 255]])  # 1500/4000*255 = 95.6
    np.testing.assert_array_equal(fm.to_gray8(x, lo=0, hi=1000), [[0, 128], [255, 255]])
    assert not fm.to_gray8(np.full((3, 3), 7.0)).any()


@pytest.mark.parametrize("call", [
    lambda: fm.entropy(np.zeros((4, 4, 4))),
    lambda: fm.entropy(np.array([[1.0, np.nan], [0, 0]])),
    lambda: fm.mutual_information(np.zeros((4, 4)), np.zeros((4, 5))),
    lambda: fm.vifp(np.zeros((30, 60)), np.zeros((30, 60))),
    lambda: fm.volume_fusion_metrics(np.zeros((2, 50, 50)), np.zeros((2, 50, 50)), np.zeros((2, 50, 50))),
])
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_metrics_and_spine_postprocessing_import_without_torch():
    code = ("import sys, multimodalseg.fusion_metrics, multimodalseg.postprocessing.spine; "
            "assert 'torch' not in sys.modules and 'monai' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
