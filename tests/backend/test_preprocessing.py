"""Input preparation shared by inference and training: roles, reference grid, normalisation, spacing, labels."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg import io
from multimodalseg import preprocessing as prep
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task

PETMR = get_task("petmr-brain")
BRATS = get_task("brain-tumor")
SPINE = get_task("spine")
OBLIQUE = tuple(np.array([[0.9659258, -0.2588190, 0], [0.2588190, 0.9659258, 0], [0, 0, 1]]).ravel())


def _block(shape=(20, 24, 28), box=(slice(6, 14), slice(8, 16), slice(10, 20)), value=100.0) -> np.ndarray:
    a = np.zeros(shape, np.float32)
    a[box] = value
    return a


def test_load_inputs_reports_unknown_and_missing_roles(volume_file):
    t1 = volume_file("t1.nii.gz", _block())
    with pytest.raises(UserError, match="unknown input role 'flair2'.*roles: pet, t1"):
        prep.load_inputs(PETMR, {"t1": t1, "flair2": t1})
    with pytest.raises(UserError, match="needs input pet"):
        prep.load_inputs(PETMR, {"t1": t1})
    with pytest.raises(UserError, match="needs input t1ce"):  # the reference; FLAIR, T1, T2 are optional
        prep.load_inputs(BRATS, {"flair": t1})
    assert set(prep.load_inputs(BRATS, {"t1ce": t1})) == {"t1ce"}  # the bundle decides about the rest


def test_load_inputs_refuses_2d_and_nan(volume_file):
    t1 = volume_file("t1.nii.gz", _block())
    flat = volume_file("pet2d.nii.gz", np.ones((10, 12), np.float32))
    with pytest.raises(UserError, match=r"pet2d\.nii\.gz: image is 2D"):
        prep.load_inputs(PETMR, {"t1": t1, "pet": flat})
    bad = _block()
    bad[3, 3, 3] = np.nan
    nan = volume_file("petnan.nrrd", bad)  # SimpleITK's NIfTI reader turns NaN into 0
    with pytest.raises(UserError, match=r"petnan\.nrrd: image holds 1 NaN"):
        prep.load_inputs(PETMR, {"t1": t1, "pet": nan})


def test_load_inputs_reads_side_by_side_and_names_the_first_bad_input_in_role_order(volume_file):
    """The inputs are read in parallel threads; the result keeps the task's role order, and with two bad files
    the error is always the one of the first role (flair before t2), whichever thread finished first."""
    good = {role: volume_file(f"{role}.nii.gz", _block(value=10.0 * (i + 1))) for i, role in enumerate(BRATS.roles)}
    images = prep.load_inputs(BRATS, dict(reversed(list(good.items()))))
    assert list(images) == list(BRATS.roles)
    assert [float(sitk.GetArrayViewFromImage(images[r]).max()) for r in BRATS.roles] == [10.0, 20.0, 30.0, 40.0]
    flat = volume_file("flair2d.nii.gz", np.ones((10, 12), np.float32))
    for _ in range(3):
        with pytest.raises(UserError, match=r"flair2d\.nii\.gz: image is 2D"):
            prep.load_inputs(BRATS, {**good, "flair": flat, "t2": good["t2"].with_name("missing.nii.gz")})


def test_shifted_structure_lands_in_place_on_reference_grid():
    """PET on another grid (coarser, oblique, other origin) whose block sits at the same physical place as T1's."""
    t1 = io.make_image(_block(), spacing=(1.0, 1.0, 1.5), origin=(-5.0, 3.0, 7.0))
    # Build the PET by resampling T1's block onto a coarse oblique grid: same physical object, other voxels.
    grid = sitk.Image([20, 18, 14], sitk.sitkFloat32)
    grid.SetSpacing((1.7, 1.6, 2.2))
    grid.SetOrigin((-12.0, -4.0, 4.0))
    grid.SetDirection(OBLIQUE)
    pet = io.resample_to_reference(t1, grid)
    array, reference = prep.to_reference_grid(PETMR, {"t1": t1, "pet": pet})
    assert array.shape == (2, 20, 24, 28) and array.dtype == np.float32
    assert reference is t1
    inside = _block(value=1.0) > 0
    # Channel order follows task.inputs: pet first. The PET block, resampled twice, still sits on T1's block.
    assert array[0][inside].mean() > 70
    core = np.zeros_like(inside)
    core[8:12, 10:14, 12:18] = True
    assert array[0][core].min() > 90
    far = np.zeros_like(inside)
    far[:3] = True
    assert array[0][far].max() < 1
    np.testing.assert_array_equal(array[1], sitk.GetArrayFromImage(t1))


def test_non_overlapping_input_is_refused_with_its_file(volume_file):
    t1 = volume_file("t1.nii.gz", _block())
    pet = volume_file("pet.nii.gz", _block(), origin=(500.0, 0.0, 0.0))
    images = prep.load_inputs(PETMR, {"t1": t1, "pet": pet})
    with pytest.raises(UserError, match=r"pet\.nii\.gz: does not overlap the reference.*register it first"):
        prep.to_reference_grid(PETMR, images, {"t1": t1, "pet": pet})


def test_normalize_schemes():
    rng = np.random.default_rng(0)
    mr = np.zeros((10, 10, 10), np.float32)
    mr[2:8, 2:8, 2:8] = rng.normal(300, 40, (6, 6, 6))
    z = prep.normalize(mr, "zscore")
    fg = mr != 0
    assert abs(z[fg].mean()) < 1e-4 and abs(z[fg].std() - 1) < 1e-3
    assert (z[~fg] == 0).all()
    ct = np.array([-3000.0, -1000.0, 0.0, 1000.0, 5000.0], np.float32)
    np.testing.assert_allclose(prep.normalize(ct, "ct"), [-1, -1, 0, 1, 2])
    pet = rng.gamma(2.0, 1000.0, (10, 10, 10)).astype(np.float32)
    p = prep.normalize(pet, "pet")
    assert abs(np.percentile(p, 99) - 1) < 1e-4
    np.testing.assert_array_equal(prep.normalize(pet, "none"), pet)
    with pytest.raises(ValueError):
        prep.normalize(pet, "minmax")


def test_resampling_round_off_is_background():
    """A skull-stripped image resampled linearly through a near-identity transform gets a ring of ~1e-12 values
    around the brain (``multimodalseg register --moving``); normalisation and the crop must treat it as zero."""
    rng = np.random.default_rng(1)
    mr = np.zeros((12, 12, 12), np.float32)
    mr[3:9, 3:9, 3:9] = rng.normal(500, 60, (6, 6, 6))
    halo = mr.copy()
    ring = (np.pad(np.ones((8, 8, 8), bool), 2) & (mr == 0))
    halo[ring] = 1e-12
    for scheme in ("zscore", "zscore_clip"):
        np.testing.assert_array_equal(prep.normalize(halo, scheme)[mr != 0], prep.normalize(mr, scheme)[mr != 0])
        assert (prep.normalize(halo, scheme)[mr == 0] == 0).all()
    task = get_task("brain-tumor")
    stack = np.stack([halo] * len(task.inputs))
    np.testing.assert_array_equal(prep.foreground_mask(task, stack), mr != 0)


def test_spacing_round_trip_keeps_extent_and_labels():
    ref = io.make_image(np.zeros((30, 40, 50), np.float32), spacing=(0.8, 0.8, 1.2), origin=(3, -2, 5),
                        direction=OBLIQUE)
    grid = prep.grid_with_spacing(ref, (1.6, 1.6, 2.4))
    assert grid.GetSize() == (25, 20, 15)
    # The outer voxel edges coincide (first corner here, far corner below).
    corner_r = np.asarray(ref.TransformContinuousIndexToPhysicalPoint((-0.5, -0.5, -0.5)))
    corner_g = np.asarray(grid.TransformContinuousIndexToPhysicalPoint((-0.5, -0.5, -0.5)))
    np.testing.assert_allclose(corner_g, corner_r, atol=1e-6)
    far_r = np.asarray(ref.TransformContinuousIndexToPhysicalPoint([s - 0.5 for s in ref.GetSize()]))
    far_g = np.asarray(grid.TransformContinuousIndexToPhysicalPoint([s - 0.5 for s in grid.GetSize()]))
    np.testing.assert_allclose(far_g, far_r, atol=1e-6)
    labels = np.zeros((30, 40, 50), np.uint8)
    labels[10:20, 10:30, 10:40] = 3
    array, g2 = prep.to_spacing(labels[None].astype(np.float32), ref, (1.6, 1.6, 2.4))
    assert array.shape == (1, 15, 20, 25) and io.same_geometry(g2, grid)
    assert array.min() >= 0.0 and array.max() <= 3.0  # linear interpolation stays within the data's range
    # anti-aliasing softens the block's edges but keeps its mass (8 old voxels per new one) and its core
    assert abs(array.sum() * 8 - labels.sum()) < 0.02 * labels.sum()
    assert np.isclose(array, 3.0, atol=0.03).sum() > 0.3 * (labels == 3).sum() / 8
    back = prep.labels_to_grid(np.round(array[0]).astype(np.uint8), g2, ref)
    assert back.shape == labels.shape
    dice = 2 * ((back == 3) & (labels == 3)).sum() / ((back == 3).sum() + (labels == 3).sum())
    assert dice > 0.85
    same, g3 = prep.to_spacing(array, g2, (1.6, 1.6, 2.4))
    assert same is array and g3 is g2


def test_downsampling_is_anti_aliased_and_upsampling_is_not():
    """A 1 mm checkerboard (the Nyquist frequency) at 2 mm: sampling every second voxel would alias it to a flat
    0 or 1; smoothed to 2 mm resolution first, it is its mean, 0.5. A constant stays constant, the range is kept,
    and an axis that gets finer (z: 1 -> 0.5 mm) is not smoothed."""
    z, y, x = np.indices((16, 32, 32))
    board = ((x + y) % 2).astype(np.float32)
    ref = io.make_image(board, spacing=(1.0, 1.0, 1.0))
    (out,), _ = prep.to_spacing(board[None], ref, (2.0, 2.0, 0.5))
    assert out.shape == (32, 16, 16)
    inner = out[4:-4, 3:-3, 3:-3]
    assert abs(inner.mean() - 0.5) < 0.02 and inner.std() < 0.12  # not aliased to 0 / 1 (point sampling: std 0.5)
    assert out.min() >= 0.0 and out.max() <= 1.0
    (flat,), _ = prep.to_spacing(np.full((1, 16, 32, 32), 7.0, np.float32), ref, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(flat, 7.0, atol=1e-4)
    np.testing.assert_allclose(prep.antialias_sigmas((1.0, 1.0, 1.0), (2.0, 1.0, 0.5)),
                               [np.sqrt(3.0) / 2.3548, 0.0, 0.0], rtol=1e-4)
    stripes = (z % 2).astype(np.float32)  # along z, which gets finer: kept as it is, interpolated only
    (fine,), _ = prep.to_spacing(stripes[None], ref, (1.0, 1.0, 0.5))
    assert fine.max() - fine.min() > 0.9


def test_load_label_maps_values_and_conventions(volume_file):
    t1ce = io.make_image(_block(), spacing=(1, 1, 1))
    lab = np.zeros((20, 24, 28), np.uint8)
    lab[5:8] = 1
    lab[8:10] = 2
    lab[10:12] = 4
    own = volume_file("seg.nii.gz", lab)
    idx = prep.load_label(BRATS, own, t1ce)
    assert idx.dtype == np.uint8
    assert set(np.unique(idx)) == {0, 1, 2, 3}
    assert (idx[10:12] == 3).all()
    lab23 = np.where(lab == 4, 3, lab).astype(np.uint8)
    idx23 = prep.load_label(BRATS, volume_file("seg23.nii.gz", lab23), t1ce, convention="brats2023")
    np.testing.assert_array_equal(idx23, idx)
    with pytest.raises(UserError, match=r"seg23\.nii\.gz: label values 3 are not in the brain-tumor label table"):
        prep.load_label(BRATS, volume_file("seg23.nii.gz", lab23), t1ce)
    np.testing.assert_array_equal(prep.indices_to_values(idx, BRATS), lab)
    np.testing.assert_array_equal(prep.indices_to_values(idx, BRATS, "brats2023"), lab23)


def test_load_label_on_another_grid_is_resampled(volume_file):
    ref = io.make_image(np.zeros((20, 20, 20), np.float32), spacing=(1, 1, 1))
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[4:8, 4:8, 4:8] = 2
    path = volume_file("seg.nrrd", lab, spacing=(2.0, 2.0, 2.0), origin=(0.5, 0.5, 0.5))
    idx = prep.load_label(SPINE, path, ref)
    assert idx.shape == (20, 20, 20)
    assert (idx[9:15, 9:15, 9:15] == 2).all() and idx[:7].max() == 0
    far = volume_file("far.nrrd", lab, origin=(0.0, 0.0, 900.0))
    with pytest.raises(UserError, match=r"far\.nrrd: label map does not overlap"):
        prep.load_label(SPINE, far, ref)


def test_prepare_case_crops_to_foreground_consistently(volume_file):
    ct = np.full((24, 32, 32), -1000.0, np.float32)
    ct[6:18, 8:24, 10:22] = 40.0
    ct[10:14, 12:20, 14:18] = 900.0
    mr = np.zeros((24, 32, 32), np.float32)
    mr[6:18, 8:24, 10:22] = 200.0
    lab = np.zeros((24, 32, 32), np.uint8)
    lab[10:14, 12:20, 14:18] = 1
    paths = {"ct": volume_file("ct.nii.gz", ct), "mr": volume_file("mr.nii.gz", mr)}
    case = prep.prepare_case(SPINE, paths, label=volume_file("lab.nii.gz", lab), crop_margin=2)
    assert case.box == (slice(4, 20), slice(6, 26), slice(8, 24))
    assert case.image.shape == (2, 16, 20, 16) and case.label.shape == (16, 20, 16)
    assert io.same_geometry(case.grid, prep.crop_image(case.reference, case.box))
    np.testing.assert_allclose(case.image[0][case.label == 1], 0.9)
    assert (case.image[0][case.label == 0] <= 0.04 + 1e-6).all()
    coarse = prep.prepare_case(SPINE, paths, label=paths["ct"].with_name("lab.nii.gz"), spacing=(2.0, 2.0, 2.0))
    assert coarse.image.shape == (2, 12, 16, 16) and coarse.label.shape == (12, 16, 16)
    assert coarse.box is None and coarse.label.sum() == 2 * 4 * 2
