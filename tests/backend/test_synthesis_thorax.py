"""The painted thorax around a real heart map: what a chest scan shows beside and above the heart."""

from __future__ import annotations

import numpy as np
import pytest
from multimodalseg.synthesis import labels as lt
from multimodalseg.synthesis import load_anatomy
from multimodalseg.synthesis.body import thorax

T = lt.THORAX


@pytest.fixture(scope="module")
def painted():
    heart = load_anatomy("whole-heart")[0]
    return [(heart, *thorax(heart.labels, heart.grid, np.random.default_rng(seed), spacing=4.0)) for seed in (0, 1)]


def _z_mm(grid, n):
    return grid.origin[2] + np.arange(n) * grid.spacing[2]


def test_thorax_keeps_the_heart_and_reaches_the_neck(painted):
    for heart, out, grid, _centre in painted:
        assert sorted(int(v) for v in np.unique(heart.labels) if v in lt.HEART_VALUES) == \
            sorted(int(v) for v in np.unique(out) if v in lt.HEART_VALUES)
        z = _z_mm(grid, out.shape[0])
        top = np.flatnonzero(np.isin(out, lt.HEART_VALUES).any(axis=(1, 2))).max()
        assert z[-1] - z[top] > 200.0  # a chest field reaching 270 mm above the heart's centre is not cut off
        neck = out[-8:]  # 32 mm, more than a disc
        assert (neck == T["bone"]).any() and (neck == T["airway"]).any()  # the column and trachea continue
        # the neck is narrower than the chest
        assert np.ptp(np.argwhere(neck[-1] > 0)[:, 1]) < 0.7 * np.ptp(np.argwhere(out[top] > 0)[:, 1])


def test_lungs_end_at_their_apices_above_the_heart(painted):
    for _heart, out, grid, _centre in painted:
        z = _z_mm(grid, out.shape[0])
        heart_z = np.flatnonzero(np.isin(out, lt.HEART_VALUES).any(axis=(1, 2)))
        lung_z = np.flatnonzero((out == T["lung"]).any(axis=(1, 2)))
        assert lung_z.min() < heart_z.max() and z[lung_z.max()] - z[heart_z.max()] < 65.0
        # tapering: the lungs' area shrinks towards the apex
        area = (out == T["lung"]).sum(axis=(1, 2))
        assert area[lung_z.max()] < 0.3 * area[heart_z].max()


def test_ribs_great_vessels_and_clavicles_are_painted_around_the_heart(painted):
    for _heart, out, grid, (x_mid, _yc, _z) in painted:
        heart_z = np.flatnonzero(np.isin(out, lt.HEART_VALUES).any(axis=(1, 2)))
        x = grid.origin[0] + np.arange(out.shape[2]) * grid.spacing[0]
        lateral = np.abs(x - x_mid) > 60.0  # away from the column, the sternum and the great vessels
        mid = out[heart_z[len(heart_z) // 2]]
        assert (mid[:, lateral] == T["bone"]).sum() > 5  # ribs in the chest wall at the heart's level
        above = out[heart_z.max() + 3: heart_z.max() + 12]
        assert (above == T["blood"]).sum() > 10  # the great vessels leave the heart upwards
        assert (above[:, :, lateral] == T["bone"]).sum() > 5  # ribs, clavicles or scapulae beside the apex


def test_the_grid_ends_in_air_beside_and_behind_the_chest(painted):
    # images are sampled with edge values beyond the grid: an edge through the body would repeat it as a band
    for _heart, out, _grid, _centre in painted:
        heart_z = np.flatnonzero(np.isin(out, lt.HEART_VALUES).any(axis=(1, 2)))
        chest = out[heart_z]
        assert (chest[:, :, 0] == 0).all() and (chest[:, :, -1] == 0).all() and (chest[:, -1, :] == 0).all()


def test_heart_at_edge_framings_cut_the_heart_and_leave_the_others_alone():
    from multimodalseg.synthesis import generate

    anatomy = load_anatomy("whole-heart")[1]
    cut = plain = 0
    for seed in range(6):
        runs = {f: generate("whole-heart", anatomy, np.random.default_rng(seed), spacing=6.0, modality="ct",
                            heart_at_edge_fraction=f) for f in (None, 0.0, 1.0)}
        default, zero, edge = runs[None], runs[0.0], runs[1.0]
        assert np.array_equal(default.label, zero.label)  # the default is 0
        if default.info["field_of_view"] != "chest":
            assert np.array_equal(default.label, edge.label)  # heart framings keep their draws
            continue
        assert not default.info["heart_at_field_edge"] and edge.info["heart_at_field_edge"]
        cut += 1
        for s in (default, edge):  # the heart's centre along the field's length, 0..1
            heart_z = np.flatnonzero((s.label > 0).any(axis=(1, 2)))
            position = (heart_z.min() + heart_z.max()) / 2 / (s.label.shape[0] - 1)
            if s is edge:
                assert position < 0.2 or position > 0.8, position
            else:
                plain += 1
                assert 0.05 < position < 0.95, position
    assert cut >= 2 and plain == cut
