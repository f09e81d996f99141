"""Spine outputs (METHODS §E): disagreement map, vertebra level names, fused volume on the CT grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg import io
from multimodalseg.phantoms import make_case
from multimodalseg.postprocessing.spine import (
    VERSE_VALUES,
    disagreement_map,
    fused_on_ct_grid,
    name_vertebrae,
    plane_axis,
    write_fused,
)


def flipped_storage(image: sitk.Image, array_axis: int = 0) -> sitk.Image:
    """The same physical image stored with one index axis reversed (direction column negated, origin moved)."""
    array = np.flip(sitk.GetArrayFromImage(image), axis=array_axis).copy()
    index_axis = 2 - array_axis
    last = [0, 0, 0]
    last[index_axis] = image.GetSize()[index_axis] - 1
    direction = np.asarray(image.GetDirection()).reshape(3, 3).copy()
    direction[:, index_axis] *= -1
    out = sitk.GetImageFromArray(array)
    out.SetSpacing(image.GetSpacing())
    out.SetDirection(direction.ravel().tolist())
    out.SetOrigin(image.TransformIndexToPhysicalPoint(last))
    return out


def value_at(image: sitk.Image, point) -> int:
    x, y, z = image.TransformPhysicalPointToIndex(tuple(float(c) for c in point))
    return int(sitk.GetArrayViewFromImage(image)[z, y, x])


# ------------------------------------------------------------------------------------------- disagreement map
def test_disagreement_map_marks_exactly_the_differing_voxels():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, (6, 7, 8))
    assert not disagreement_map(a, a.copy()).any()  # the two nets agree: empty
    b = a.copy()
    changed = [(0, 0, 0), (2, 3, 4), (5, 6, 7)]
    for z, y, x in changed:
        b[z, y, x] = (a[z, y, x] + 1) % 3
    diff = disagreement_map(a, b)
    assert diff.dtype == np.uint8 and diff.sum() == 3
    assert sorted(zip(*np.nonzero(diff))) == changed
    # binarised once as "vertebra": a vertebra/disc swap counts, a disc/background swap does not
    a2, b2 = np.array([[1, 2, 0, 1]]), np.array([[2, 0, 0, 1]])
    np.testing.assert_array_equal(disagreement_map(a2, b2, foreground=[1]), [[1, 0, 0, 0]])
    np.testing.assert_array_equal(disagreement_map(a2, b2), [[1, 1, 0, 0]])


def test_disagreement_map_of_images_keeps_geometry_and_checks_it():
    a = io.make_image(np.zeros((4, 5, 6), np.uint8), spacing=(0.5, 0.7, 2.0), origin=(1, 2, 3))
    arr = np.zeros((4, 5, 6), np.uint8)
    arr[1, 2, 3] = 2
    b = io.copy_geometry(arr, a)
    out = disagreement_map(a, b)
    assert isinstance(out, sitk.Image) and io.same_geometry(out, a)
    assert sitk.GetArrayViewFromImage(out).sum() == 1 and sitk.GetArrayViewFromImage(out)[1, 2, 3] == 1
    moved = io.make_image(arr, spacing=(0.5, 0.7, 2.0), origin=(9, 2, 3))
    with pytest.raises(ValueError, match="geometry"):
        disagreement_map(a, moved)
    with pytest.raises(ValueError, match="shape"):
        disagreement_map(np.zeros((2, 2)), np.zeros((2, 3)))


# ------------------------------------------------------------------------------------------- level naming
@pytest.fixture(scope="module")
def phantom():
    return make_case("spine", 3, oblique=True)


def body_centres(case) -> dict[str, np.ndarray]:
    """Centre of each vertebral body from the phantom's corner landmarks (CT, LPS mm)."""
    points = dict(zip(case.landmark_names, case.landmarks["ct"]))
    return {lvl: np.mean([points[f"{lvl} {c}"] for c in ("anterior superior", "anterior inferior",
                                                          "posterior superior", "posterior inferior")], axis=0)
            for lvl in ("L1", "L2", "L3", "L4", "L5")}


def test_phantom_vertebrae_named_on_oblique_and_flipped_grids(phantom):
    centres = body_centres(phantom)
    for labels in (phantom.label, flipped_storage(phantom.label, 0), flipped_storage(phantom.label, 2)):
        table, instances = name_vertebrae(labels)
        assert [row["level"] for row in table] == ["L5", "L4", "L3", "L2", "L1"]
        assert [row["value"] for row in table] == [24, 23, 22, 21, 20]
        assert all(a["superior_mm"] < b["superior_mm"] for a, b in zip(table, table[1:]))
        assert io.same_geometry(instances, labels)
        for level, centre in centres.items():  # each named instance is the right vertebra
            assert value_at(instances, centre) == VERSE_VALUES[level], level
        # every vertebra voxel belongs to one named instance, nothing else is labelled
        vert = sitk.GetArrayViewFromImage(labels) == 1
        inst = sitk.GetArrayViewFromImage(instances)
        assert (inst[vert] > 0).all() and not inst[~vert].any()


def test_starting_level_is_configurable(phantom):
    table, _ = name_vertebrae(phantom.label, lowest="S1", instance_map=False)
    assert [row["level"] for row in table] == ["S1", "L5", "L4", "L3", "L2"]
    table, none = name_vertebrae(phantom.label, lowest="T1", instance_map=False)
    assert none is None
    assert [row["level"] for row in table] == ["T1", "C7", "C6", "C5", "C4"]
    with pytest.raises(ValueError, match="unknown vertebral level"):
        name_vertebrae(phantom.label, lowest="L7")


def synthetic_column(direction=None) -> sitk.Image:
    """Four box 'vertebrae' along z (S) with discs between, touching through a thin posterior bar, and a fragment."""
    arr = np.zeros((100, 40, 40), np.uint8)  # (z, y, x), 1 mm voxels
    for k in range(4):
        z0 = 8 + k * 22
        arr[z0:z0 + 16, 8:30, 8:32] = 1          # body, 16 mm high
        arr[z0 + 16:z0 + 22, 8:30, 8:32] = 2     # disc
    arr[8:90, 28:36, 18:21] = 1                   # posterior bar joining them all (3 mm thick)
    arr[95:97, 2:4, 2:4] = 1                      # a fragment (8 voxels)
    return io.make_image(arr, spacing=(1.0, 1.0, 1.0), origin=(-20, -20, -50), direction=direction)


def test_synthetic_touching_vertebrae_split_and_fragments_left_unnamed():
    table, instances = name_vertebrae(synthetic_column(), min_volume_ml=1.0)
    named = [row for row in table if row["level"]]
    assert [row["level"] for row in named] == ["L5", "L4", "L3", "L2"]
    assert [row["level"] for row in table].count(None) == 1  # the fragment: listed, not named
    fragment = next(row for row in table if row["level"] is None)
    assert fragment["voxels"] == 8 and fragment["value"] == 0
    inst = sitk.GetArrayViewFromImage(instances)
    assert inst[10, 20, 20] == 24 and inst[10 + 3 * 22, 20, 20] == 21  # bottom box L5, top box L2
    assert inst[96, 3, 3] == 0
    # without splitting, the bar makes one component: a single level
    table, _ = name_vertebrae(synthetic_column(), split_touching=False, min_volume_ml=1.0)
    assert [row["level"] for row in table if row["level"]] == ["L5"]


def test_synthetic_column_upside_down_storage_still_names_the_lowest_l5():
    # index z runs inferiorly: direction (1, 1, -1); the physically lowest box is now the last in the array
    flipped = io.make_image(sitk.GetArrayFromImage(synthetic_column()),
                            direction=(1, 0, 0, 0, 1, 0, 0, 0, -1), origin=(-20, -20, 50))
    table, instances = name_vertebrae(flipped, min_volume_ml=1.0)
    lowest = next(row for row in table if row["level"] == "L5")
    assert lowest["superior_mm"] == min(r["superior_mm"] for r in table if r["level"])
    inst = sitk.GetArrayViewFromImage(instances)
    assert inst[10 + 3 * 22, 20, 20] == 24 and inst[10, 20, 20] == 21


# ------------------------------------------------------------------------------------------- geometry helpers
def test_plane_axis_follows_the_direction_matrix():
    image = io.make_image(np.zeros((4, 5, 6), np.uint8))
    assert (plane_axis(image, "sagittal"), plane_axis(image, "coronal"), plane_axis(image, "axial")) == (2, 1, 0)
    # a sagittal acquisition: index x runs A-P, index y S-I, index z L-R (columns of the direction matrix)
    sagittal = io.make_image(np.zeros((4, 5, 6), np.uint8), direction=(0, 0, 1, 1, 0, 0, 0, -1, 0))
    assert plane_axis(sagittal, "sagittal") == 0 and plane_axis(sagittal, "axial") == 1
    with pytest.raises(ValueError):
        plane_axis(image, "oblique")


def test_fused_volume_on_ct_grid(tmp_path):
    ct = io.make_image(np.zeros((3, 4, 5), np.int16), spacing=(0.8, 0.8, 2.5), origin=(5, 6, 7),
                       direction=(0, 1, 0, 1, 0, 0, 0, 0, -1))
    fused = np.linspace(-0.2, 1.2, 60, dtype=np.float32).reshape(3, 4, 5)
    image = fused_on_ct_grid(fused, ct)
    assert io.same_geometry(image, ct) and image.GetPixelID() == sitk.sitkUInt8
    arr = sitk.GetArrayViewFromImage(image)
    assert arr[0, 0, 0] == 0 and arr[-1, -1, -1] == 255
    np.testing.assert_array_equal(arr, np.round(np.clip(fused, 0, 1) * 255).astype(np.uint8))
    path = write_fused(fused, ct, tmp_path / "fused.nii.gz")
    back = sitk.ReadImage(str(path))
    assert io.same_geometry(back, ct) and np.array_equal(sitk.GetArrayFromImage(back), arr)
    assert [p.name for p in tmp_path.iterdir()] == ["fused.nii.gz"]  # no temporary left behind
    with pytest.raises(ValueError):
        fused_on_ct_grid(np.zeros((3, 4, 4)), ct)
    with pytest.raises(ValueError, match="NaN"):
        fused_on_ct_grid(np.full((3, 4, 5), np.nan), ct)


def test_no_vertebra_gives_an_empty_table():
    table, instances = name_vertebrae(io.make_image(np.full((8, 8, 8), 2, np.uint8)))
    assert table == [] and not sitk.GetArrayViewFromImage(instances).any()
