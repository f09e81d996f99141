"""Paper normalisations (issue 16): DMFNet's 0.2/99.8 percentile clip before z-score, Dual-UXNet's min-max."""

import numpy as np
import pytest
from multimodalseg import preprocessing as prep


def test_zscore_clip_is_robust_to_a_hot_voxel_and_keeps_background():
    rng = np.random.default_rng(0)
    x = np.zeros((20, 20, 20), np.float32)
    x[2:18, 2:18, 2:18] = rng.normal(100.0, 10.0, (16, 16, 16))
    x[5, 5, 5] = 1e5  # one hot voxel: dominates the plain z-score's std
    clipped, plain = prep.normalize(x, "zscore_clip"), prep.normalize(x, "zscore")
    fg = x != 0
    assert (clipped[~fg] == 0).all()
    assert clipped[fg].mean() == pytest.approx(0.0, abs=1e-4) and clipped[fg].std() == pytest.approx(1.0, abs=1e-3)
    high = np.percentile(x[fg], 99.8)
    assert clipped[5, 5, 5] == pytest.approx(clipped[fg][x[fg] >= high].max(), abs=1e-5)  # clipped to p99.8
    assert plain[fg].std() == pytest.approx(1.0, abs=1e-3) and np.abs(plain[fg]).max() > 50 > np.abs(clipped).max()


def test_minmax_maps_the_image_to_unit_range():
    x = np.linspace(-3.0, 5.0, 1000, dtype=np.float32).reshape(10, 10, 10)
    out = prep.normalize(x, "min_max")
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0) and out.dtype == np.float32
    assert (prep.normalize(np.full((4, 4, 4), 7.0, np.float32), "min_max") == 0).all()  # flat: no division by 0
