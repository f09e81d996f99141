"""BraTS losses (METHODS §B.5-B.6): DMFNet's generalized Dice vs MONAI, key boundary points, the BSC loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.losses import GeneralizedDiceLoss as MonaiGDL
from scipy import ndimage

from training.brain_tumor.keypoints import (
    BoundaryKeyPointsd,
    boundary,
    key_point_image,
    key_point_mask,
    select_key_points,
)
from training.brain_tumor.losses import BoundaryShapeCorrectionLoss, BratsLoss, GeneralizedDiceLoss, brats_loss

torch.set_num_threads(2)


def sphere(shape, center, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius**2


def nested_regions(shape=(24, 24, 24), center=(12, 12, 12)) -> np.ndarray:
    """WT ⊇ TC ⊇ ET masks (3, *shape) bool."""
    return np.stack([sphere(shape, center, r) for r in (9, 6, 3)])


# --- generalized Dice -------------------------------------------------------------------------------------------

def test_gdl_regions_matches_monai():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 16, 16, 16)
    target = (torch.rand(2, 3, 16, 16, 16) > 0.7).float()  # every channel present
    ours = GeneralizedDiceLoss(sigmoid=True)(logits, target)
    monai = MonaiGDL(sigmoid=True, w_type="square", batch=True, smooth_nr=0.0, smooth_dr=1e-5)(logits, target)
    assert ours.item() == pytest.approx(monai.item(), rel=1e-5)
    # MONAI's default smoothing (1e-5 in the numerator too) is not DMFNet's: the values must differ.
    default = MonaiGDL(sigmoid=True, w_type="square", batch=True)(logits, target)
    assert abs(default.item() - ours.item()) > 1e-3


def test_gdl_dmfnet_softmax_form_matches_monai():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 16, 16, 16)
    target = torch.randint(0, 4, (2, 1, 16, 16, 16))
    ours = GeneralizedDiceLoss(sigmoid=False, softmax=True, to_onehot_y=True, include_background=False)
    monai = MonaiGDL(include_background=False, to_onehot_y=True, softmax=True, w_type="square", batch=True,
                     smooth_nr=0.0, smooth_dr=1e-5)
    assert ours(logits, target).item() == pytest.approx(monai(logits, target).item(), rel=1e-5)


def test_gdl_formula_by_hand():
    p = torch.tensor([[[0.9, 0.2, 0.6, 0.1], [0.3, 0.8, 0.5, 0.5]]])
    r = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]]])
    w = [1 / (2**2 + 1e-5), 1 / (3**2 + 1e-5)]
    inter = [0.9 + 0.6, 0.8 + 0.5 + 0.5]
    den = [0.9 + 0.2 + 0.6 + 0.1 + 2, 0.3 + 0.8 + 0.5 + 0.5 + 3]
    expected = 1 - 2 * (w[0] * inter[0] + w[1] * inter[1]) / (w[0] * den[0] + w[1] * den[1] + 1e-5)
    assert GeneralizedDiceLoss(sigmoid=False)(p, r).item() == pytest.approx(expected, rel=1e-6)


def test_gdl_perfect_and_absent_channel():
    target = torch.as_tensor(nested_regions()[None]).float()
    # Perfect prediction: 1 - 2Σw·n / (2Σw·n + eps) with w = 1/(n² + eps). Not ~0: the square weights are small,
    # so DMFNet's denominator eps is felt (here ~5e-4), as METHODS §B.6 notes.
    n = target.sum((0, 2, 3, 4)).double()
    s = (2 * n / (n * n + 1e-5)).sum()
    expected = (1e-5 / (s + 1e-5)).item()
    assert GeneralizedDiceLoss(sigmoid=False)(target, target).item() == pytest.approx(expected, rel=1e-3)
    assert expected < 1e-3
    empty_et = target.clone()
    empty_et[:, 2] = 0
    value = GeneralizedDiceLoss(sigmoid=False)(target, empty_et)  # predicted ET where there is none
    assert math.isfinite(value.item()) and 0 < value.item() <= 1
    with pytest.raises(ValueError, match="mutually exclusive"):
        GeneralizedDiceLoss(sigmoid=True, softmax=True)


# --- key boundary points ----------------------------------------------------------------------------------------

def covering_radius(selected: np.ndarray, points: np.ndarray) -> float:
    d = np.sqrt(((points[:, None, :] - selected[None, :, :]) ** 2).sum(-1))
    return float(d.min(1).max())


def test_boundary_is_the_inner_surface():
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8, 2:8, 2:8] = True
    b = boundary(mask)
    assert b.sum() == 6**3 - 4**3
    assert not b[3:7, 3:7, 3:7].any() and (b <= mask).all()


def test_key_point_selection():
    pts = np.argwhere(boundary(sphere((32, 32, 32), (16, 16, 16), 12))).astype(np.float32)
    keys = select_key_points(pts, iterations=20, ratio=0.015, min_points=8)
    assert len(keys) == max(8, math.ceil(0.015 * len(pts)))
    assert {tuple(k) for k in keys} <= {tuple(p) for p in pts}
    # Farthest-point sets cover the surface far better than random subsets of the same size.
    rng = np.random.default_rng(0)
    random_cover = min(covering_radius(pts[rng.choice(len(pts), len(keys), replace=False)], pts) for _ in range(5))
    assert covering_radius(keys, pts) < 0.75 * random_cover
    # Trying every start gives a set at least as good as any single start.
    one = select_key_points(pts, iterations=1, rng=np.random.default_rng(3))
    many = select_key_points(pts, iterations=len(pts), rng=np.random.default_rng(3))
    assert covering_radius(many, pts) <= covering_radius(one, pts)
    # Chunking does not change the result.
    a = select_key_points(pts, iterations=10, rng=np.random.default_rng(7), chunk=3)
    b = select_key_points(pts, iterations=10, rng=np.random.default_rng(7), chunk=16)
    assert np.array_equal(a, b)
    assert len(select_key_points(pts[:5], min_points=8)) == 5
    with pytest.raises(ValueError, match="score"):
        select_key_points(pts, score="hausdorff")


def test_key_point_image_balls_straddle_the_boundary():
    mask = sphere((32, 32, 32), (16, 16, 16), 10)
    image = key_point_mask(mask, 2, iterations=10)
    near = ndimage.distance_transform_edt(~boundary(mask)) <= 2
    assert image.any() and (image <= near).all()
    assert (image & mask).any() and (image & ~mask).any()
    assert not key_point_mask(np.zeros_like(mask), 2).any()
    regions = nested_regions()
    kp = key_point_image(regions, (2, 1, 1), iterations=5)
    assert kp.shape == regions.shape and kp.dtype == np.float32 and set(np.unique(kp)) <= {0.0, 1.0}
    # A larger radius covers more voxels around the same points.
    small, large = (key_point_image(regions[:1], (r,), iterations=5).sum() for r in (1, 2))
    assert small < large
    with pytest.raises(ValueError, match="one radius per region"):
        key_point_image(regions, (2, 1))


def test_key_points_transform_is_deterministic_and_keeps_meta():
    label = MetaTensor(torch.as_tensor(nested_regions()).float(), affine=torch.diag(torch.tensor([2.0, 1, 1, 1])))
    t = BoundaryKeyPointsd("label", iterations=5)
    a, b = t({"label": label}), t({"label": label})
    assert a["keypoints"].shape == label.shape
    assert torch.equal(a["keypoints"], b["keypoints"])
    assert torch.equal(a["keypoints"].affine, label.affine)
    assert np.array_equal(np.asarray(a["keypoints"]), key_point_image(nested_regions(), iterations=5))


# --- boundary shape correction ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def case():
    regions = nested_regions()
    target = torch.as_tensor(regions[None]).float()
    keypoints = torch.as_tensor(key_point_image(regions, (2, 1, 1), iterations=10)[None])
    return target, keypoints


def test_bsc_zero_on_perfect_prediction(case):
    target, kp = case
    assert BoundaryShapeCorrectionLoss(sigmoid=False)(target, target, kp).item() == 0.0
    logits = (target * 2 - 1) * 30.0
    assert BoundaryShapeCorrectionLoss()(logits, target, kp).item() < 1e-6


def test_bsc_positive_and_growing_with_the_error(case):
    target, kp = case
    bsc = BoundaryShapeCorrectionLoss(sigmoid=False)
    losses = []
    for shift in (1, 2, 4):
        shifted = torch.roll(target, shift, dims=-1)
        losses.append(bsc(shifted, target, kp).item())
    assert 0 < losses[0] < losses[1] < losses[2] <= 1
    grown = torch.as_tensor(np.stack([ndimage.binary_dilation(m) for m in target[0].numpy() > 0])[None]).float()
    assert bsc(grown, target, kp).item() > 0  # over-segmentation is penalised too


def test_bsc_gradient(case):
    target, kp = case
    torch.manual_seed(0)
    logits = torch.randn_like(target, requires_grad=True)
    BoundaryShapeCorrectionLoss()(logits, target, kp).backward()
    grad = logits.grad
    assert torch.isfinite(grad).all() and grad[kp > 0].abs().sum() > 0
    assert (grad[kp == 0] == 0).all()  # only the key-point neighbourhoods are supervised


def test_bsc_gradcheck():
    torch.manual_seed(0)
    target = (torch.rand(1, 2, 5, 5, 5) > 0.5).double()
    kp = (torch.rand(1, 2, 5, 5, 5) > 0.5).double()
    logits = torch.randn(1, 2, 5, 5, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: BoundaryShapeCorrectionLoss()(x, target, kp), (logits,))


def test_bsc_without_key_points_is_zero_and_differentiable(case):
    target, kp = case
    logits = torch.randn_like(target, requires_grad=True)
    loss = BoundaryShapeCorrectionLoss()(logits, target, torch.zeros_like(kp))
    loss.backward()
    assert loss.item() == 0.0 and (logits.grad == 0).all()
    # A channel without key points (e.g. no ET in the crop) does not dilute the others.
    only_wt = kp.clone()
    only_wt[:, 1:] = 0
    shifted = torch.roll(target, 2, dims=-1)
    bsc = BoundaryShapeCorrectionLoss(sigmoid=False)
    assert bsc(shifted, target, only_wt).item() == pytest.approx(
        bsc(shifted[:, :1], target[:, :1], kp[:, :1]).item())


def test_total_loss_switch_and_target_channels(case):
    target, kp = case
    torch.manual_seed(0)
    logits = torch.randn_like(target)
    gdl = GeneralizedDiceLoss()(logits, target)
    bsc = BoundaryShapeCorrectionLoss()(logits, target, kp)
    assert BratsLoss(use_bsc=False)(logits, target).item() == pytest.approx(gdl.item())
    full = BratsLoss(lambda_bsc=0.5)
    assert full(logits, target, kp).item() == pytest.approx(gdl.item() + 0.5 * bsc.item(), rel=1e-6)
    # Key points riding in the target as extra channels, for trainers calling loss(logits, target).
    assert full(logits, torch.cat([target, kp], 1)).item() == pytest.approx(full(logits, target, kp).item())
    with pytest.raises(ValueError, match="key-point image"):
        BratsLoss()(logits, target)
    assert isinstance(brats_loss("regions", lambda_bsc=2.0), BratsLoss)
    with pytest.raises(ValueError, match="region outputs"):
        brats_loss("labels")
