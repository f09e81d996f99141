"""Spine networks (METHODS §E.2, §E.5): CDDFuse fusion and the MCF UNet/VNet pair. Shapes, gradients, parameter
counts, padding, output modes, bad arguments, bundles."""

from __future__ import annotations

import pytest
import torch
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.nets import build_network
from multimodalseg.nets.blocks.fusion_blocks import ChannelAttention, INNDetailExtractor
from multimodalseg.nets.cddfuse import DEMO_CONFIG, PAPER_CONFIG, SPINE_CONFIG, CDDFuse, pad_slices
from multimodalseg.nets.mcf import DEMO_CONFIG as MCF_DEMO
from multimodalseg.nets.mcf import VNET_PAPER_CONFIG, MCFNet, MCFVNet, mean_log_probabilities, split_concat


def n_params(module: torch.nn.Module | list) -> int:
    params = module.parameters() if isinstance(module, torch.nn.Module) else module
    return sum(p.numel() for p in params)


# ---------------------------------------------------------------------------------------------------- CDDFuse
def test_cddfuse_parameter_counts_match_the_paper():
    net = CDDFuse(2, 1, 1, **PAPER_CONFIG)
    assert abs(n_params(net) - 1.19e6) <= 0.05 * 1.19e6
    groups = {k: n_params(v) for k, v in net.parameter_groups().items()}
    for name, expected in {"encoder": 0.60e6, "decoder": 0.21e6, "base_fusion": 0.36e6}.items():
        assert abs(groups[name] - expected) <= 0.05 * expected, (name, groups[name])
    assert sum(groups.values()) == n_params(net)
    # the spine paper's CNN detail branch has about the INN's size
    assert abs(n_params(CDDFuse(2, 1, 1, **SPINE_CONFIG)) - 1.19e6) <= 0.05 * 1.19e6


@pytest.mark.parametrize("detail", ["cnn", "inn"])
def test_cddfuse_shapes_range_and_gradients(detail):
    torch.manual_seed(0)
    net = CDDFuse(2, 1, 1, **{**DEMO_CONFIG, "detail": detail, "pad_to": None})
    ct, mr = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    fused = net(ct, mr)
    assert fused.shape == (2, 1, 64, 64)
    assert fused.min() > 0 and fused.max() < 1
    fused.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    f_ct, f_mr = net.encode(ct, mr)
    assert f_ct.base.shape == f_ct.detail.shape == f_ct.shared.shape == (2, DEMO_CONFIG["features"], 64, 64)
    rec, feats = net.reconstruct(ct)
    assert rec.shape == ct.shape and torch.equal(feats.base, f_ct.base)


def test_pad_slices_round_trip_and_forward_restores_size():
    x = torch.randn(2, 1, 37, 29)
    for mode in ("constant", "reflect", "replicate"):
        padded, crop = pad_slices(x, (64, 48), mode)
        assert padded.shape == (2, 1, 64, 48)
        assert torch.equal(padded[crop], x)
    padded, _ = pad_slices(x, (64, 48))
    assert padded[..., :13, :].abs().sum() == 0  # (64 - 37) // 2 rows of zeros on top
    with pytest.raises(ValueError):
        pad_slices(x, (30, 48))

    torch.manual_seed(0)
    net = CDDFuse(2, 1, 1, **{**DEMO_CONFIG, "pad_to": (64, 48)}).eval()
    ct, mr = torch.rand(1, 1, 37, 29), torch.rand(1, 1, 37, 29)
    with torch.no_grad():
        out = net(ct, mr)
        # the same as fusing the padded slices by hand and cropping: padding is part of the computation
        (ct_p, crop), (mr_p, _) = pad_slices(ct, (64, 48)), pad_slices(mr, (64, 48))
        by_hand = net.fuse_images(ct_p, mr_p)[0][crop]
        unpadded = net.fuse_images(ct, mr)[0]
    assert out.shape == (1, 1, 37, 29)
    torch.testing.assert_close(out, by_hand)
    assert not torch.allclose(out, unpadded, atol=1e-4)  # global channel attention sees the padded slice
    assert CDDFuse(2, 1, 1, **{**DEMO_CONFIG, "pad_to": None, "pad_multiple": 8}).padded_size(37, 29) == (40, 32)
    assert CDDFuse(2, 1, 1, **SPINE_CONFIG).padded_size(400, 600) == (512, 600)


def test_cddfuse_residual_settings():
    ct, mr = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    nets = {r: CDDFuse(2, 1, 1, **{**DEMO_CONFIG, "residual": r}) for r in ("none", "mr", "ct", "sum")}
    assert nets["none"].residual_image(ct, mr) is None
    assert nets["mr"].residual_image(ct, mr) is mr and nets["ct"].residual_image(ct, mr) is ct
    torch.testing.assert_close(nets["sum"].residual_image(ct, mr), ct + mr)


def test_channel_attention_matches_monai_cablock_layout():
    # same parameter names and shapes as MONAI's CABlock (MDTA); the LT variant swaps in a dense 3x3 conv
    mdta, lt = ChannelAttention(16, 4), ChannelAttention(16, 4, full_qkv_conv=True)
    assert mdta.qkv_dwconv.conv.groups == 48  # depthwise over q, k, v
    assert lt.qkv_dwconv.groups == 1 and lt.qkv_dwconv.weight.shape == (48, 48, 3, 3)
    x = torch.randn(2, 16, 8, 8)
    assert mdta(x).shape == x.shape and lt(x).shape == x.shape


def test_inn_detail_branch_is_invertible():
    torch.manual_seed(0)
    inn = INNDetailExtractor(8, num_layers=2).eval()
    x = torch.randn(1, 8, 12, 12)
    with torch.no_grad():
        y = inn(x)
        z1, z2 = y.chunk(2, dim=1)
        for layer in reversed(inn.nodes):  # undo z1 = z1 exp(rho(z2)) + eta(z2); z2 = z2 + phi(z1); then the 1x1 conv
            z1 = (z1 - layer.eta(z2)) * torch.exp(-layer.rho(z2))
            z2 = z2 - layer.phi(z1)
            w = layer.shuffle.weight[:, :, 0, 0]
            merged = torch.cat((z1, z2), 1) - layer.shuffle.bias.view(1, -1, 1, 1)
            z1, z2 = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(w), merged).chunk(2, dim=1)
    torch.testing.assert_close(torch.cat((z1, z2), 1), x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 3}, {"features": 30, "num_heads": 8}, {"detail": "dense"}, {"residual": "pet"},
    {"out_channels": 2}, {"pad_to": (512,)}, {"pad_mode": "wrap"}, {"encoder_blocks": 0},
    {"features": 9, "num_heads": 3, "detail": "inn"},
])
def test_cddfuse_rejects_bad_arguments(kwargs):
    args = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, **kwargs}
    with pytest.raises(ValueError):
        CDDFuse(**args)


def test_cddfuse_rejects_mismatched_slices():
    net = CDDFuse(2, 1, 1, **DEMO_CONFIG)
    with pytest.raises(ValueError, match="same shape"):
        net(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 17))


# ---------------------------------------------------------------------------------------------------- MCF
def test_mcf_vnet_parameter_count_matches_the_reference():
    vnet = MCFVNet(3, 1, 2, **VNET_PAPER_CONFIG)
    assert abs(n_params(vnet) - 9.45e6) <= 0.05 * 9.45e6


def test_mcf_pair_shapes_gradients_and_two_different_subnets():
    torch.manual_seed(0)
    net = MCFNet(2, 2, 3, **MCF_DEMO)
    a, b = net(torch.randn(2, 2, 64, 64))
    assert a.shape == b.shape == (2, 3, 64, 64)
    assert not torch.allclose(a, b)
    (a.square().mean() + b.square().mean()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert type(net.unet).__name__ == "BasicUNet" and isinstance(net.vnet, MCFVNet)
    # 3D works too (MCF's reference setting)
    vnet3d = MCFVNet(3, 1, 2, features=4)
    assert vnet3d(torch.randn(2, 1, 16, 16, 16)).shape == (2, 2, 16, 16, 16)


def test_vnet_dropout_only_in_training_and_size_check():
    torch.manual_seed(0)
    vnet = MCFVNet(2, 1, 2, features=4, dropout=0.5)
    x = torch.randn(1, 1, 32, 32)
    vnet.eval()
    with torch.no_grad():
        assert torch.equal(vnet(x), vnet(x))
    vnet.train()
    with torch.no_grad():
        assert not torch.equal(vnet(x), vnet(x))
    with pytest.raises(ValueError, match="divisible by 16"):
        vnet(torch.randn(1, 1, 40, 32))


def test_mcf_output_modes_and_predict():
    torch.manual_seed(0)
    net = MCFNet(2, 1, 3, **MCF_DEMO).eval()
    x = torch.randn(2, 1, 48, 32)
    with torch.no_grad():
        a, b = net(x)
        mean_probs = (a.softmax(1) + b.softmax(1)) / 2
        torch.testing.assert_close(net.set_output("mean")(x).softmax(1), mean_probs)
        torch.testing.assert_close(mean_log_probabilities(a, b).exp(), mean_probs)
        ca, cb = split_concat(net.set_output("concat")(x), 3)
        torch.testing.assert_close(ca, a)
        torch.testing.assert_close(cb, b)
        net.set_output("pair")
        pred = net.predict(x)
    torch.testing.assert_close(pred.probabilities, mean_probs)
    assert torch.equal(pred.labels, mean_probs.argmax(1))
    assert torch.equal(pred.disagreement, a.argmax(1) != b.argmax(1))
    # sizes that are not multiples of 16 are padded and cropped back
    with torch.no_grad():
        odd = net.predict(torch.randn(1, 1, 37, 50))
    assert odd.probabilities.shape == (1, 3, 37, 50) and odd.labels_a.shape == (1, 37, 50)
    with pytest.raises(ValueError):
        net.set_output("median")


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 1}, {"out_channels": 1}, {"unet_features": (8, 8, 16)}, {"vnet_norm": "layer"},
    {"vnet_dropout": 1.0}, {"vnet_features": 0}, {"in_channels": 0},
])
def test_mcf_rejects_bad_arguments(kwargs):
    args = {"spatial_dims": 2, "in_channels": 1, "out_channels": 3, **MCF_DEMO, **kwargs}
    with pytest.raises(ValueError):
        MCFNet(**args)


def test_registry_and_bundle_round_trips(tmp_path):
    fusion_config = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, **DEMO_CONFIG, "pad_to": [48, 40]}
    seg_config = {"spatial_dims": 2, "in_channels": 1, "out_channels": 3, **MCF_DEMO,
                  "unet_features": list(MCF_DEMO["unet_features"])}
    x = torch.rand(1, 1, 32, 32)
    for name, config in (("cddfuse", fusion_config), ("mcf", seg_config)):
        net = build_network(name, **config)
        path = tmp_path / f"{name}.pt"
        save_bundle(path, net.state_dict(), {"id": f"{name}-demo", "version": "0", "task": "spine", "labels": [],
                                             "network": {"name": name, "config": config}})
        loaded = load_bundle(path, task="spine").build_model()
        with torch.no_grad():
            if name == "cddfuse":
                torch.testing.assert_close(loaded(x, x), net.eval()(x, x))
            else:
                for got, want in zip(loaded(x), net.eval()(x)):
                    torch.testing.assert_close(got, want)
