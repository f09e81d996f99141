"""The degraded grids of benchmarks/regrid_robustness.py: what each input becomes before the model sees it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("regrid_robustness", ROOT / "benchmarks/regrid_robustness.py")
rr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rr)


def _ramp(z_mm: float = 1.0) -> sitk.Image:
    z, y, x = np.meshgrid(np.arange(40), np.arange(12), np.arange(10), indexing="ij")
    image = sitk.GetImageFromArray((z * z_mm + 0.1 * x).astype(np.float32))
    image.SetSpacing((1.0, 1.0, z_mm))
    image.SetOrigin((3.0, -2.0, 7.0))
    return image


def test_thick_slices_keep_the_plane_and_the_physical_place():
    image = _ramp()
    thick = rr.thick_slices(image, 5.0)
    assert thick.GetSize() == (10, 12, 8) and thick.GetSpacing() == (1.0, 1.0, 5.0)
    assert thick.GetOrigin() == image.GetOrigin() and thick.GetDirection() == image.GetDirection()
    a = sitk.GetArrayFromImage(thick)
    # a linear ramp in z survives a symmetric slice profile away from the ends; the x ramp is untouched
    np.testing.assert_allclose(a[2:6, 5, 4], 5.0 * np.arange(2, 6) + 0.4, atol=0.05)
    np.testing.assert_allclose(a[3, 5, :], 15.0 + 0.1 * np.arange(10), atol=0.05)


def test_thick_slices_remove_detail_along_the_slice_axis_only():
    z, y, x = np.meshgrid(np.arange(40), np.arange(12), np.arange(10), indexing="ij")
    in_plane = sitk.GetImageFromArray(((x + y) % 2).astype(np.float32))  # a 1-voxel checkerboard in each slice
    along_z = sitk.GetImageFromArray((z % 2).astype(np.float32))  # alternating 1 mm slices
    kept = sitk.GetArrayFromImage(rr.thick_slices(in_plane, 5.0))
    np.testing.assert_allclose(kept[2:6], ((x + y) % 2)[:4].astype(np.float32), atol=1e-3)
    gone = sitk.GetArrayFromImage(rr.thick_slices(along_z, 5.0))
    assert np.abs(gone[2:6] - 0.5).max() < 0.05  # the slabs average the alternation away
