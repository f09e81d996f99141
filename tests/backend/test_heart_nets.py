"""Whole-heart cascade stages (METHODS §C.3-C.5): localisation, ROI crop/paste-back, MAUNet, SCN; 32³ on CPU."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.networks.nets.attentionunet import AttentionBlock
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.io import make_image
from multimodalseg.nets import build_network
from multimodalseg.nets.blocks.position_attention import PositionAttention
from multimodalseg.nets.cin import ConditionalInstanceNorm
from multimodalseg.nets.heart_localization import HeartLocalizationNet
from multimodalseg.nets.maunet import DEMO_CONFIG, PAPER_CONFIG, MAUNet
from multimodalseg.nets.scn import DEMO_CONFIG as SCN_DEMO
from multimodalseg.nets.scn import PAPER_CONFIG as SCN_PAPER
from multimodalseg.nets.scn import SCN, MAUNetSCN
from multimodalseg.phantoms import make_case
from multimodalseg.postprocessing import heart as roi
from scipy.spatial.transform import Rotation


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def assert_all_gradients(net: torch.nn.Module, *modules: torch.nn.Module) -> None:
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for module in modules:
        assert sum(float(p.grad.abs().sum()) for p in module.parameters()) > 0, type(module).__name__


# ---------------------------------------------------------------- MAUNet


@pytest.mark.parametrize(("gates", "pab"), [(True, True), (False, True), (True, False), (False, False)])
def test_maunet_shapes_and_gradients_for_every_switch(gates, pab):
    torch.manual_seed(0)
    net = MAUNet(3, 1, 8, **DEMO_CONFIG, attention_gates=gates, position_attention=pab)
    assert sum(isinstance(m, AttentionBlock) for m in net.modules()) == (3 if gates else 0)
    assert (net.bottom_attention is not None) == pab
    if pab:
        with torch.no_grad():
            net.bottom_attention.gamma.fill_(0.5)  # γ starts at 0, which would block the query/key gradients
    y = net(torch.randn(2, 1, 32, 32, 32))
    assert y.shape == (2, 8, 32, 32, 32)
    assert (y < 0).any() and (y > 1).any()  # logits
    y.square().mean().backward()
    assert_all_gradients(net, *net.gates if gates else (), *[net.bottom_attention] if pab else ())


def test_maunet_at_32_cubed():
    torch.manual_seed(0)
    net = build_network("maunet", spatial_dims=3, in_channels=1, out_channels=8, **DEMO_CONFIG)
    assert isinstance(net, MAUNet) and n_params(net) == pytest.approx(0.48e6, rel=0.01)
    y = net(torch.randn(1, 1, 32, 32, 32))
    assert y.shape == (1, 8, 32, 32, 32)
    y.square().mean().backward()
    assert_all_gradients(net, net.encoders[0], net.decoders[-1], net.head)


def test_maunet_paper_parameter_count():
    # METHODS §C.4 reconstruction: ≈ 7.7 M (encoder 4.7 M, PAB 0.08 M, AGs 0.02 M, up-convs 1.2 M, decoder 1.8 M).
    net = MAUNet(3, 1, 8, **PAPER_CONFIG)
    assert n_params(net) == pytest.approx(7.7e6, rel=0.10)
    assert n_params(net.encoders) == pytest.approx(4.7e6, rel=0.02)
    assert n_params(net.bottom_attention) == pytest.approx(0.08e6, rel=0.05)
    assert n_params(net.gates) == pytest.approx(0.02e6, rel=0.15)
    assert n_params(net.ups) == pytest.approx(1.2e6, rel=0.05)
    assert n_params(net.decoders) == pytest.approx(1.8e6, rel=0.02)


def test_position_attention_matches_its_definition():
    torch.manual_seed(1)
    pam = PositionAttention(3, 16, reduction=8)
    x = torch.randn(2, 16, 3, 4, 5)
    assert torch.equal(pam(x), x)  # γ = 0: identity at initialisation
    with torch.no_grad():
        pam.gamma.fill_(0.7)
    a = x.flatten(2)  # (B, C, N)
    q = torch.einsum("oc,bcn->bon", pam.query.weight[..., 0, 0, 0], a) + pam.query.bias[None, :, None]
    k = torch.einsum("oc,bcn->bon", pam.key.weight[..., 0, 0, 0], a) + pam.key.bias[None, :, None]
    v = torch.einsum("oc,bcn->bon", pam.value.weight[..., 0, 0, 0], a) + pam.value.bias[None, :, None]
    s = torch.softmax(torch.einsum("bci,bcj->bij", q, k), dim=-1)  # S[i, j]: position i attends to j
    expected = 0.7 * torch.einsum("bcj,bij->bci", v, s) + a
    assert torch.allclose(pam(x).flatten(2), expected, atol=1e-5)
    assert torch.allclose(pam.attention(x).sum(-1), torch.ones(2, 60))


def test_maunet_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="2 levels"):
        MAUNet(3, 1, 8, channels=(16,))
    with pytest.raises(ValueError, match="spatial_dims"):
        MAUNet(1, 1, 8)
    with pytest.raises(ValueError, match="conditional_scope"):
        MAUNet(3, 1, 8, **DEMO_CONFIG, conditional_modality=True, conditional_scope="decoder")
    with pytest.raises(ValueError, match="instance norms"):
        MAUNet(3, 1, 8, **DEMO_CONFIG, norm="batch", conditional_modality=True)
    net = MAUNet(3, 1, 8, **DEMO_CONFIG)
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.zeros(1, 1, 20, 32, 32))
    with pytest.raises(ValueError, match="not conditioned"):
        net(torch.zeros(1, 1, 16, 16, 16), modality=1)
    conditional = MAUNet(3, 1, 8, **DEMO_CONFIG, conditional_modality=True)
    with pytest.raises(ValueError, match="modality"):
        conditional(torch.zeros(1, 1, 16, 16, 16))


# ---------------------------------------------------------------- SCN


def test_scn_is_local_appearance_times_spatial_configuration():
    torch.manual_seed(0)
    net = SCN(3, 9, 8, **SCN_DEMO)
    x = torch.randn(1, 9, 32, 32, 32)
    local, spatial = net.stages(x)
    assert local.shape == spatial.shape == (1, 8, 32, 32, 32)
    assert local.abs().max() < 1  # tanh
    y = net(x)
    assert torch.allclose(y, local * spatial)
    # The spatial branch works at 1/4 resolution with 9×9×5 kernels, "5" on the slice axis (Z of (Z, Y, X)).
    assert net.spatial[0].conv.kernel_size == (5, 9, 9)
    assert net.pool(local).shape[2:] == (8, 8, 8)
    y.square().mean().backward()
    assert_all_gradients(net, net.local, net.spatial)


def test_scn_paper_parameter_count():
    # METHODS §C.5: 0.24 M (local) + 3.73 M (SC) ≈ 4.0 M, input = 8 MAUNet probabilities + the image.
    net = SCN(3, 9, 8, **SCN_PAPER)
    assert n_params(net) == pytest.approx(4.0e6, rel=0.10)
    assert n_params(net.local) + n_params(net.local_out) == pytest.approx(0.24e6, rel=0.02)
    assert n_params(net.spatial) == pytest.approx(3.73e6, rel=0.01)


def test_scn_rejects_bad_sizes():
    with pytest.raises(ValueError, match="odd"):
        SCN(3, 8, 8, sc_kernel_size=(4, 9, 9))
    with pytest.raises(ValueError, match="sc_factor"):
        SCN(3, 8, 8, **SCN_DEMO)(torch.zeros(1, 8, 18, 16, 16))


@pytest.mark.parametrize("refine", [True, False])
def test_maunet_scn_stages_and_switch(refine):
    torch.manual_seed(0)
    net = MAUNetSCN(3, 1, 8, maunet={**DEMO_CONFIG, "conditional_modality": True}, scn=SCN_DEMO, refine=refine)
    x, modality = torch.randn(2, 1, 32, 32, 32), torch.tensor([0, 1])
    coarse, refined = net.forward_stages(x, modality=modality)
    assert coarse.shape == (2, 8, 32, 32, 32)
    if not refine:
        assert refined is None and net.scn is None
        assert torch.equal(net(x, modality=modality), coarse)
        return
    assert refined.shape == coarse.shape and torch.equal(net(x, modality=modality), refined)
    assert net.scn.local[0].conv.in_channels == 9  # probabilities + image
    (coarse.square().mean() + refined.square().mean()).backward()
    assert_all_gradients(net, net.maunet.encoders, net.scn)


@pytest.mark.parametrize("residual", [False, True])
def test_maunet_scn_detach_keeps_scn_loss_out_of_maunet(residual):
    torch.manual_seed(0)
    net = MAUNetSCN(3, 1, 8, maunet=DEMO_CONFIG, scn=SCN_DEMO, detach=True, residual=residual)
    x = torch.randn(1, 1, 16, 16, 16)
    coarse, refined = net.forward_stages(x)
    scn_out = net.scn(torch.cat([torch.softmax(coarse, 1), x], 1))
    assert torch.allclose(refined, coarse + scn_out if residual else scn_out, atol=1e-6)
    refined.square().mean().backward()
    assert all(p.grad is None for p in net.maunet.parameters())
    assert all(p.grad is not None for p in net.scn.parameters())


# ---------------------------------------------------------------- localisation network and ROI geometry


def test_localization_net_shapes_gradients_and_size():
    torch.manual_seed(0)
    net = HeartLocalizationNet(3, 1, 1, features=16)
    y = net(torch.randn(1, 1, 32, 32, 32))
    assert y.shape == (1, 1, 32, 32, 32)
    y.square().mean().backward()
    assert_all_gradients(net, net.down[0], net.down[-1], net.up[0])
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in net.modules())  # Payer: no norm
    assert n_params(HeartLocalizationNet(3, 1, 1)) == pytest.approx(1.77e6, rel=0.01)  # 64 filters, 4 levels
    with pytest.raises(ValueError, match="divisible"):
        net(torch.zeros(1, 1, 30, 32, 32))


def oblique_grid(size=(80, 90, 40), spacing=(0.9, 1.1, 2.5), angles=(20.0, -15.0, 30.0)) -> sitk.Image:
    direction = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    return make_image(np.zeros(size[::-1], np.uint16), spacing, (-30.0, 20.0, -50.0), direction.ravel())


def physical_points(image: sitk.Image) -> np.ndarray:
    """LPS coordinates of every voxel centre, (z, y, x, 3)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in image.GetSize()[::-1]], indexing="ij"), -1)[..., ::-1]
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    return np.asarray(image.GetOrigin()) + (idx * np.asarray(image.GetSpacing())) @ d.T


def ellipsoid_labels(reference: sitk.Image, centre: np.ndarray) -> sitk.Image:
    pts = physical_points(reference)
    labels = np.zeros(pts.shape[:3], np.uint16)
    for value, offset, radii in [(500, (0, 0, 0), (15, 12, 10)), (600, (14, 6, -4), (8, 9, 11)),
                                 (205, (-12, -8, 8), (6, 6, 6))]:
        labels[((((pts - centre - offset) / radii) ** 2).sum(-1) <= 1)] = value
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    return image


def centroid(mask: np.ndarray, image: sitk.Image) -> np.ndarray:
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(np.argwhere(mask).mean(0)[::-1].tolist()))


def test_heatmap_centre_round_trip_on_an_oblique_grid():
    reference = oblique_grid()
    grid = roi.centred_grid(reference, roi.image_centre(reference), 32, 10.0)
    assert np.allclose(grid.GetDirection(), reference.GetDirection())
    rng = np.random.default_rng(0)
    for _ in range(5):
        centre = roi.image_centre(reference) + rng.uniform(-40, 40, 3)
        heatmap = roi.heatmap_target(grid, centre)
        assert heatmap.max() <= 1 and heatmap.max() > np.exp(-0.75 / 1.5**2)  # peak within √3/2 voxel
        assert np.linalg.norm(roi.centre_from_heatmap(heatmap, grid) - centre) < 1e-3
        # Without the sub-voxel fit the error is up to half a 10 mm voxel per axis.
        assert np.linalg.norm(roi.centre_from_heatmap(heatmap, grid, refine=False) - centre) <= 5 * np.sqrt(3)
    with pytest.raises(ValueError, match="shape"):
        roi.centre_from_heatmap(np.zeros((8, 8, 8)), grid)


def test_localization_input_and_roi_of_a_phantom():
    case = make_case("whole-heart", 5, modality="mr")
    image = case.images["image"]
    coarse = roi.localization_input(image, "mr")
    assert coarse.GetSize() == (32, 32, 32) and coarse.GetSpacing() == (12.0, 12.0, 12.0)
    assert np.allclose(roi.image_centre(coarse), roi.image_centre(image))
    centre = roi.label_centre(case.label)
    crop = roi.crop_roi(image, centre, "mr")
    assert crop.GetSize() == (64, 64, 64) and crop.GetSpacing() == (4.0, 4.0, 4.0)
    labels = roi.crop_roi(case.label, centre, "mr", label=True)
    assert labels.GetPixelID() == case.label.GetPixelID()
    # The 256 mm ROI holds the whole heart: every structure's voxel count is kept (up to resampling).
    full = np.bincount(sitk.GetArrayViewFromImage(case.label).ravel(), minlength=851)
    cropped = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=851)
    voxel_ratio = np.prod(image.GetSpacing()) / 4.0**3
    for value in (205, 420, 500, 550, 600):
        assert cropped[value] == pytest.approx(full[value] * voxel_ratio, rel=0.1)
    with pytest.raises(ValueError, match="modality"):
        roi.crop_roi(image, centre, "pet")


def test_crop_and_paste_back_on_an_oblique_anisotropic_grid():
    reference = oblique_grid()
    heart = roi.image_centre(reference) + np.array([5.0, -3.0, 2.0])
    labels = ellipsoid_labels(reference, heart)
    centre = roi.label_centre(labels)
    crop = roi.crop_roi(labels, centre, size=48, spacing=1.0, label=True)
    assert np.allclose(roi.image_centre(crop), centre)
    back = roi.paste_labels(crop, reference)
    assert back.GetSize() == reference.GetSize() and back.GetDirection() == reference.GetDirection()
    ref_arr, back_arr = sitk.GetArrayViewFromImage(labels), sitk.GetArrayViewFromImage(back)
    one_hot = np.stack([sitk.GetArrayViewFromImage(crop) == v for v in (0, 500, 600, 205)]).astype(np.float32)
    from_probs = sitk.GetArrayFromImage(roi.paste_probabilities(one_hot, crop, reference))
    for index, value in enumerate((500, 600, 205), start=1):
        truth = ref_arr == value
        for pasted in (back_arr == value, from_probs == index):
            assert 2 * (pasted & truth).sum() / (pasted.sum() + truth.sum()) > 0.95
            assert np.linalg.norm(centroid(pasted, back) - centroid(truth, labels)) < 0.5  # mm
    # Nothing outside the ROI: a small ROI cuts the structures, and what lies beyond it comes back as 0.
    small = roi.crop_roi(labels, centre, size=16, spacing=1.0, label=True)
    pasted = sitk.GetArrayFromImage(roi.paste_labels(small, reference))
    inside = np.abs((physical_points(reference) - centre) @ np.asarray(reference.GetDirection()).reshape(3, 3))
    assert not pasted[(inside > 8.5).any(-1)].any()
    assert 0 < (pasted > 0).sum() < (ref_arr > 0).sum()
    # The check is sharp: pasting onto a grid that ignores the direction cosines puts the labels elsewhere.
    wrong = sitk.Image(reference)
    wrong.SetDirection(np.eye(3).ravel().tolist())
    misplaced = sitk.GetArrayFromImage(roi.paste_labels(crop, wrong)) == 500
    assert 2 * (misplaced & (ref_arr == 500)).sum() / (misplaced.sum() + (ref_arr == 500).sum()) < 0.5


def test_paste_back_of_a_roi_outside_the_image_is_empty():
    reference = oblique_grid()
    far = roi.image_centre(reference) + np.array([500.0, 0.0, 0.0])
    crop = roi.crop_roi(ellipsoid_labels(reference, roi.image_centre(reference)), far, size=8, spacing=2.0,
                        label=True)
    assert not sitk.GetArrayFromImage(roi.paste_labels(crop, reference)).any()


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize(("name", "config", "shape"), [
    ("maunet", {"channels": [8, 16, 32, 64], "conditional_modality": True}, (1, 1, 16, 16, 16)),
    ("maunet_scn", {"maunet": {"channels": [8, 16, 32, 64]}, "scn": SCN_DEMO}, (1, 1, 16, 16, 16)),
    ("scn", SCN_DEMO, (1, 1, 16, 16, 16)),
    ("heart_localization", {"features": 8}, (1, 1, 16, 16, 16)),
])
def test_registry_builds_heart_networks(name, config, shape):
    net = build_network(name, spatial_dims=3, in_channels=1, out_channels=8, **config).eval()
    kwargs = {"modality": torch.tensor([1])} if config.get("conditional_modality") else {}
    with torch.no_grad():
        assert net(torch.zeros(shape), **kwargs).shape == (1, 8, *shape[2:])


def test_conditional_cascade_bundle_round_trip(tmp_path):
    config = {"spatial_dims": 3, "in_channels": 1, "out_channels": 8, "scn": SCN_DEMO,
              "maunet": {"channels": [8, 16, 32, 64], "conditional_modality": True}}
    torch.manual_seed(0)
    net = build_network("maunet_scn", **config)
    with torch.no_grad():  # distinct CT and MR affines, as after training
        for norm in (m for m in net.modules() if isinstance(m, ConditionalInstanceNorm)):
            norm.weight.add_(0.3 * torch.randn_like(norm.weight))
            norm.bias.add_(0.3 * torch.randn_like(norm.bias))
    meta = {"id": "whole-heart-test", "version": "0", "task": "whole-heart", "labels": [],
            "conditional_modality": True, "network": {"name": "maunet_scn", "config": config}}
    path = tmp_path / "heart.pt"
    save_bundle(path, net.state_dict(), meta)
    loaded = load_bundle(path, task="whole-heart").build_model()
    copied = copy.deepcopy(loaded)  # EMA/SWA copies: the copy's norms read the copy's own modality context
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        for m in (0, 1):
            expected = net.eval()(x, modality=m)
            assert torch.equal(loaded(x, modality=m), expected) and torch.equal(copied(x, modality=m), expected)
        ct, mr = loaded.forward_stages(x, modality=0)[0], loaded.forward_stages(x, modality=1)[0]
        assert (ct - mr).abs().max() > 1e-2
