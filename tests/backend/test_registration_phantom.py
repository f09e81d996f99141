"""``multimodalseg register`` on phantom pairs with a known rigid misregistration (spine CT/MR, PET/MR brain).

The phantom's landmark files are exact; a clinician's are not, so each file gets independent placement noise.
A quarter of the pairs is held out: the rigid fit on the others must bring the held-out TRUE landmarks within
one reference voxel (RMS), and the resampled moving image must land on the reference grid where the known
misregistration puts it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.io import read_image
from multimodalseg.registration import read_markups, read_transform, write_markups

phantoms = pytest.importorskip("multimodalseg.phantoms")

PLACEMENT_NOISE_MM = 0.5  # per coordinate, per file


@pytest.mark.parametrize("task", ["spine", "petmr-brain"])
def test_register_recovers_the_phantom_misregistration(cli, tmp_path, task):
    case = phantoms.make_case(task, seed=2)
    reference = case.reference_role
    (moving,) = case.misregistration
    paths = phantoms.write_case(case, tmp_path / "case")
    fixed_true, names = read_markups(paths[f"landmarks_{reference}"])
    moving_true, moving_names = read_markups(paths[f"landmarks_{moving}"])
    assert names == moving_names and len(names) >= 8
    np.testing.assert_allclose(fixed_true, case.landmarks[reference], atol=1e-6)

    rng = np.random.default_rng(7)
    held_out = np.arange(len(names)) % 4 == 1
    train = ~held_out
    noisy_fixed = fixed_true + rng.normal(scale=PLACEMENT_NOISE_MM, size=fixed_true.shape)
    noisy_moving = moving_true + rng.normal(scale=PLACEMENT_NOISE_MM, size=moving_true.shape)
    write_markups(tmp_path / "fixed_train.mrk.json", noisy_fixed[train], [n for n, t in zip(names, train) if t],
                  coordinate_system="RAS")
    write_markups(tmp_path / "moving_train.fcsv", noisy_moving[train], [n for n, t in zip(names, train) if t])
    fixed_image_file, moving_image_file = paths[reference], paths[moving]

    out = tmp_path / "out"
    result = cli("register", "--fixed-points", tmp_path / "fixed_train.mrk.json", "--moving-points",
                 tmp_path / "moving_train.fcsv", "--mode", "rigid", "--moving", moving_image_file,
                 "--reference", fixed_image_file, "-o", out)
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    assert report["pairs"] == int(train.sum())

    # held-out landmarks, without their noise: the target registration error
    transform = read_transform(out / "transform.tfm")  # fixed (reference) -> moving, LPS
    mapped = np.array([transform.TransformPoint(p.tolist()) for p in fixed_true[held_out]])
    tre = np.linalg.norm(mapped - moving_true[held_out], axis=1)
    fixed_image = read_image(fixed_image_file)
    voxel = min(fixed_image.GetSpacing())
    assert np.sqrt(np.mean(tre**2)) < voxel
    misregistration = np.linalg.norm(moving_true[held_out] - fixed_true[held_out], axis=1)
    assert misregistration.mean() > 2 * voxel  # the case was visibly misregistered to begin with
    # same direction and frame as the phantom's ground-truth transform file, over the whole reference grid
    truth_file = read_transform(paths[f"transform_{moving}"])
    fixed_image_corners = [fixed_image.TransformIndexToPhysicalPoint([i * (s - 1) for i, s in zip(c, size)])
                           for c in np.ndindex(2, 2, 2) for size in [fixed_image.GetSize()]]
    gaps = [np.linalg.norm(np.subtract(transform.TransformPoint(p), truth_file.TransformPoint(p)))
            for p in fixed_image_corners]
    assert max(gaps) < 2 * voxel

    # the resampled moving image sits on the reference grid where the known transform puts it
    resampled = read_image(out / "resampled.nii.gz")
    assert resampled.GetSize() == fixed_image.GetSize()
    np.testing.assert_allclose(resampled.GetDirection(), fixed_image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(resampled.GetOrigin(), fixed_image.GetOrigin(), atol=1e-4)
    moving_image = read_image(moving_image_file)
    truth = sitk.Resample(moving_image, fixed_image, case.misregistration[moving], sitk.sitkLinear, 0.0,
                          sitk.sitkFloat32)
    unregistered = sitk.Resample(moving_image, fixed_image, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    a, t, u = (sitk.GetArrayFromImage(img) for img in (resampled, truth, unregistered))
    inside = (t != 0) & (a != 0)
    r_fit = np.corrcoef(a[inside], t[inside])[0, 1]
    r_none = np.corrcoef(u[inside], t[inside])[0, 1]
    assert r_fit > 0.98 and r_fit > r_none + 0.05
