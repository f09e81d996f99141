"""DMFNet with the MIE/SIE switches (METHODS §B.2-B.4): shapes, gradients, parameter counts, bad arguments."""

from __future__ import annotations

import pytest
import torch
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.nets import build_network
from multimodalseg.nets.blocks.attention import ChannelSpatialSELayer
from multimodalseg.nets.blocks.mfunit import MFUnit
from multimodalseg.nets.dmfnet import DEMO_CONFIG, PAPER_CONFIG, DMFNet

torch.set_num_threads(2)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("use_mie", [False, True])
@pytest.mark.parametrize("use_sie", [False, True])
def test_shapes_and_gradients_for_every_switch(use_mie, use_sie):
    torch.manual_seed(0)
    net = DMFNet(3, 4, 3, **DEMO_CONFIG, use_mie=use_mie, use_sie=use_sie)
    assert (net.mie is not None) == use_mie and (net.sie is not None) == use_sie
    x = torch.randn(2, 4, 32, 32, 32)
    y = net(x)
    assert y.shape == (2, 3, 32, 32, 32)
    assert (y < 0).any() and (y > 1).any()  # logits, no activation inside the model
    y.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # The switched modules and the DMF branch weights really take part in the forward pass.
    groups = {"encoder1": net.encoder1, "dmf weights": net.encoder2[0]}
    if use_mie:
        groups["mie"] = net.mie
    if use_sie:
        groups.update({f"sie{i}": block for i, block in enumerate(net.sie)})
    for name, module in groups.items():
        assert sum(p.grad.abs().sum() for p in module.parameters()) > 0, name


def test_64_cubed_window_default_modules():
    net = DMFNet(3, 4, 3, **DEMO_CONFIG).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 4, 64, 64, 64))
    assert y.shape == (1, 3, 64, 64, 64) and torch.isfinite(y).all()


def test_paper_config_parameter_count():
    # DMFNet_16x.py: c=4, n=32, channels=128, groups=16, num_classes=4 -> 3.876 M (METHODS §B.2, counted [code]).
    net = DMFNet(3, 4, 4, **PAPER_CONFIG, use_mie=False, use_sie=False)
    assert n_params(net) == pytest.approx(3.876e6, rel=5e-4)
    assert sum(isinstance(m, MFUnit) and m.branch_weights is not None for m in net.modules()) == 6


def test_mie_and_sie_overhead_match_their_definitions():
    base = n_params(DMFNet(3, 4, 3, **PAPER_CONFIG, use_mie=False, use_sie=False))
    sie = n_params(DMFNet(3, 4, 3, **PAPER_CONFIG, use_mie=False, use_sie=True)) - base
    mie = n_params(DMFNet(3, 4, 3, **PAPER_CONFIG, use_mie=True, use_sie=False)) - base
    g = 16
    # Per SIE block of width C: 3 dilated grouped 3³ convs + BN, then a 1×1×1 conv 3C -> C with bias.
    expected_sie = sum(3 * (c * (c // g) * 27 + 2 * c) + 3 * c * c + c for c in (32, 128, 256))
    assert sie == expected_sie
    # MIE, C_m = 16: conv 4->16 and 16->16 (3³, no bias) + BN, cSE 16->8->16, sSE 16->1, and the first backbone
    # conv widening from 4 to 16 input channels.
    cm = 16
    expected_mie = (4 * cm * 27 + 2 * cm) + (cm * cm * 27 + 2 * cm) + (cm * 8 + 8 + 8 * cm + cm) + (cm + 1)
    expected_mie += (cm - 4) * 32 * 27
    assert mie == expected_mie


def test_registry_and_demo_bundle_round_trip(tmp_path):
    net = build_network("dmfnet", spatial_dims=3, in_channels=4, out_channels=3, **DEMO_CONFIG)
    assert isinstance(net, DMFNet)
    path = tmp_path / "demo.pt"
    meta = {"id": "dmfnet-demo", "version": "0", "task": "brain-tumor", "labels": [],
            "network": {"name": "dmfnet", "config": {"spatial_dims": 3, "in_channels": 4, "out_channels": 3,
                                                     **DEMO_CONFIG}}}
    save_bundle(path, net.state_dict(), meta)
    assert path.stat().st_size <= 8 * 1024 * 1024
    loaded = load_bundle(path, task="brain-tumor").build_model()
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))


def test_scse_combinations():
    x = torch.randn(2, 8, 8, 8, 8)
    block = ChannelSpatialSELayer(3, 8, combine="max")
    c, s = block.cse(x), block.sse(x)
    assert torch.equal(block(x), torch.maximum(c, s))
    block.combine = "add"
    assert torch.allclose(block(x), c + s)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spatial_dims": 2}, "3D only"),
        ({"channels": 36}, "divisible by groups"),
        ({"stem_channels": 0}, "positive"),
        ({"mie_combine": "mean"}, "combine"),
        ({"dilations": ()}, "dilations"),
        ({"use_sie": True, "sie_dilations": (0, 1)}, "dilations"),
    ],
)
def test_invalid_arguments(kwargs, match):
    config = {**DEMO_CONFIG, **kwargs}
    spatial_dims = config.pop("spatial_dims", 3)
    with pytest.raises(ValueError, match=match):
        DMFNet(spatial_dims, 4, 3, **config)


def test_input_size_not_divisible_by_16():
    net = DMFNet(3, 4, 3, **DEMO_CONFIG)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.zeros(1, 4, 32, 32, 24))
