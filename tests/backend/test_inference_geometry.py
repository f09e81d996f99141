"""Inputs on different grids are segmented onto the reference grid, in physical space.

The network is a real torch module run through the real pipeline (bundle file, sha256, weights-only load,
resampling, normalisation, crop, MONAI sliding window, label mapping, writing): a 1x1x1 convolution whose
output we can predict, registered as the TEST network ``test_intensity_threshold``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg import io
from multimodalseg.bundles import save_bundle
from multimodalseg.nets import register_network
from multimodalseg.tasks import get_task

SPINE = get_task("spine")


class ThresholdNet(torch.nn.Module):
    """TEST network: label 1 where input channel ``source`` exceeds ``threshold``, else background.

    A 1x1x1 Conv3d with fixed weights: logit of class 1 = gain * (x[source] - threshold), class 0 = 0, every other
    class -gain (never chosen). Its weights are saved in the bundle like any network's.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *, source: int = 1,
                 threshold: float = 0.0, gain: float = 50.0) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(in_channels, out_channels, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.fill_(-gain)
            self.conv.bias[0] = 0.0
            self.conv.weight[1, source] = gain
            self.conv.bias[1] = -gain * threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


register_network("test_intensity_threshold", f"{__name__}:ThresholdNet")


def _rotation(z_deg: float, x_deg: float) -> np.ndarray:
    a, b = np.radians(z_deg), np.radians(x_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _physical_points(image: sitk.Image) -> np.ndarray:
    """LPS coordinates (Z, Y, X, 3) of every voxel centre."""
    size = image.GetSize()
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")[::-1], -1).astype(float)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return idx * np.asarray(image.GetSpacing()) @ direction.T + np.asarray(image.GetOrigin())


BOX_LO, BOX_HI = np.array([-6.0, -3.0, -7.5]), np.array([5.0, 8.0, 7.5])  # the structure, LPS mm


def _inside(points: np.ndarray) -> np.ndarray:
    return np.all((points >= BOX_LO) & (points <= BOX_HI), axis=-1)


def _grid(size, spacing, origin, direction) -> sitk.Image:
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(np.asarray(direction, float).ravel()))
    return image


def _case(tmp_path):
    """CT reference (oblique, anisotropic) and an MR on another oblique grid, showing the box at its true place."""
    ct_grid = _grid((60, 54, 24), (1.0, 1.1, 1.6), (-30.0, -29.0, -18.0), _rotation(8, 0))
    ct_pts = _physical_points(ct_grid)
    body = np.linalg.norm(ct_pts[..., :2] - np.array([0.0, 1.0]), axis=-1) < 12  # a cylinder of soft tissue
    ct = np.where(body, 40.0, -1000.0).astype(np.float32)
    ct_image = io.copy_geometry(ct, ct_grid)
    mr_grid = _grid((34, 34, 30), (1.3, 1.25, 1.4), (-26.0, -14.0, -25.0), _rotation(-20, 12))
    mr_pts = _physical_points(mr_grid)
    mr_body = np.linalg.norm(mr_pts[..., :2] - np.array([0.0, 1.0]), axis=-1) < 12
    mr = np.where(_inside(mr_pts), 300.0, np.where(mr_body, 60.0, 0.0)).astype(np.float32)
    mr_image = io.copy_geometry(mr, mr_grid)
    paths = {"ct": io.write_image(ct_image, tmp_path / "ct.nrrd"), "mr": io.write_image(mr_image, tmp_path / "mr.nrrd")}
    return paths, ct_image, mr_image, _inside(ct_pts)


def _bundle(tmp_path, spacing) -> str:
    config = {"spatial_dims": 3, "in_channels": 2, "out_channels": 3, "source": 1, "threshold": 1.0}
    net = ThresholdNet(**config)
    meta = {"id": "test-threshold", "version": "1.0", "task": "spine",
            "network": {"name": "test_intensity_threshold", "config": config},
            "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in SPINE.labels],
            "preprocessing": {"spacing": spacing, "patch_size": [16, 16, 16], "roles": ["ct", "mr"]}}
    path = tmp_path / "model" / "test-threshold.pt"
    save_bundle(path, net.state_dict(), meta)
    return str(path)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("spacing, min_dice", [(None, 0.9), ([2.0, 2.0, 2.0], 0.8)])
def test_structure_lands_at_its_physical_place_on_the_reference_grid(cli, tmp_path, spacing, min_dice):
    paths, ct_image, mr_image, truth = _case(tmp_path)
    out = tmp_path / "out" / "labels.nrrd"
    report = tmp_path / "out" / "report.json"
    r = cli("segment", "--task", "spine", "--input", f"ct={paths['ct']}", "--input", f"mr={paths['mr']}",
            "-o", out, "--model", _bundle(tmp_path, spacing), "--device", "cpu", "--progress", "none",
            "--overlap", "0.5", "--report", report)
    assert r.code == 0, r.err
    labels = sitk.ReadImage(str(out))
    # Exactly the reference geometry (NRRD keeps doubles), with the task's label values.
    assert labels.GetSize() == ct_image.GetSize()
    assert labels.GetOrigin() == ct_image.GetOrigin()
    assert labels.GetSpacing() == ct_image.GetSpacing()
    assert labels.GetDirection() == ct_image.GetDirection()
    arr = sitk.GetArrayFromImage(labels)
    assert set(np.unique(arr)) == {0, 1}
    pred = arr == 1
    assert _dice(pred, truth) > min_dice
    # The centroid in physical space is the box's centre.
    pts = _physical_points(ct_image)
    np.testing.assert_allclose(pts[pred].mean(0), pts[truth].mean(0), atol=1.0)
    # Control: resizing the MR array to the CT shape (what this pipeline must not do) misplaces the box.
    resized = sitk.Resample(mr_image, ct_image.GetSize(), sitk.Transform(), sitk.sitkLinear, (0, 0, 0),
                            [m * s / c for m, s, c in zip(mr_image.GetSpacing(), mr_image.GetSize(),
                                                           ct_image.GetSize())])
    assert _dice(sitk.GetArrayFromImage(resized) > 200, truth) < 0.5
    data = json.loads(report.read_text())
    assert data["settings"]["crop_zyx"] is not None  # the air around the body was cropped away
    assert data["volumes_ml"]["vertebra"] == pytest.approx(pred.sum() * np.prod(ct_image.GetSpacing()) / 1000,
                                                           abs=1e-3)
    assert data["model"]["id"] == "test-threshold" and data["device"] == "cpu"


def test_without_crop_gives_the_same_labels(tmp_path):
    from multimodalseg.bundles import load_bundle
    from multimodalseg.inference import Predictor

    paths, ct_image, _, truth = _case(tmp_path)
    bundle = load_bundle(_bundle(tmp_path, None), task="spine")
    cropped = Predictor(bundle, "cpu").predict(paths)
    whole = Predictor(bundle, "cpu", crop=False, keep_probabilities=True).predict(paths)
    np.testing.assert_array_equal(cropped.indices, whole.indices)
    assert cropped.report["settings"]["crop_zyx"] is not None and whole.report["settings"]["crop_zyx"] is None
    assert whole.probabilities.shape == (3, *truth.shape)
    np.testing.assert_allclose(whole.probabilities.sum(0), 1.0, atol=1e-5)
    assert io.same_geometry(whole.probability_grid, ct_image)
