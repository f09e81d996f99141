"""3D UX-Net, the dual-branch PET/MR network and its cross-fusion block (METHODS §A.2-A.4)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from multimodalseg.nets import build_network
from multimodalseg.nets.blocks.cross_fusion import ChannelCrossAttention, CrossFusionBlock, SpatialCrossAttention
from multimodalseg.nets.dual_uxnet import DEMO_CONFIG, DualUXNet
from multimodalseg.nets.uxnet import UXBlock, UXNet


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_uxnet_paper_width_has_53_01_m_parameters():
    net = UXNet(3, 1, 46)
    assert abs(count(net) - 53.01e6) <= 0.05 * 53.01e6
    # The encoder alone is small because the 1×1×1 convolutions are grouped (METHODS §A.2: 1.31 M).
    assert abs(count(net.encoder) - 1.31e6) <= 0.01e6
    # The reference's literal 48 in the output block is the first stage width here.
    assert UXNet(3, 1, 46, feature_size=24).out.conv.conv.in_channels == 24


def test_dual_uxnet_paper_width_parameters():
    net = DualUXNet(3, 2, 46)
    assert abs(count(net) - 94.5e6) <= 0.05 * 94.5e6  # METHODS §A.3, counted from the spec
    light = DualUXNet(3, 2, 46, shared_bottleneck=True)
    assert abs(count(light) - 81.8e6) <= 0.05 * 81.8e6


def test_demo_width_fits_an_8_mb_bundle():
    assert count(DualUXNet(3, 2, 46, **DEMO_CONFIG)) * 4 <= 8e6


def test_ux_block_structure():
    block = UXBlock(3, 16)
    assert block.dwconv.kernel_size == (7, 7, 7) and block.dwconv.groups == 16
    assert block.pwconv1.groups == 16 and block.pwconv1.out_channels == 64
    assert block.pwconv2.groups == 16 and block.pwconv2.out_channels == 16
    assert torch.allclose(block.gamma, torch.full((16,), 1e-6))
    x = torch.randn(2, 16, 8, 8, 8)
    # With γ ≈ 0 the block starts as the identity; with γ = 1 it does not.
    assert torch.allclose(block(x), x, atol=1e-4)
    block.gamma.data.fill_(1.0)
    assert not torch.allclose(block(x), x, atol=1e-2)


@pytest.mark.parametrize("fusion", ["channel", "spatial"])
def test_dual_uxnet_shapes_and_gradients_at_32(fusion):
    torch.manual_seed(0)
    net = build_network("dual_uxnet", spatial_dims=3, in_channels=2, out_channels=46, fusion=fusion, **DEMO_CONFIG)
    x = torch.randn(1, 2, 32, 32, 32, requires_grad=True)
    y = net(x)
    assert y.shape == (1, 46, 32, 32, 32)
    y.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Both modalities reach the output.
    assert x.grad[:, 0].abs().sum() > 0 and x.grad[:, 1].abs().sum() > 0
    kinds = [f.attention for f in net.fusions]
    assert kinds == (["channel"] * 4 if fusion == "channel" else ["channel", "channel", "spatial", "spatial"])


def test_uxnet_shapes_2d_and_3d():
    net = build_network("uxnet", spatial_dims=3, in_channels=1, out_channels=5, feature_size=6)
    assert net(torch.randn(1, 1, 16, 32, 16)).shape == (1, 5, 16, 32, 16)
    net2d = UXNet(2, 3, 4, feature_size=6)
    assert net2d(torch.randn(2, 3, 32, 32)).shape == (2, 4, 32, 32)
    dual2d = DualUXNet(2, 2, 3, feature_size=6, fusion="spatial", level0_input="mr")
    assert dual2d(torch.randn(1, 2, 32, 48)).shape == (1, 3, 32, 48)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: DualUXNet(3, 1, 46), "pet_channels"),
        (lambda: DualUXNet(3, 2, 46, fusion="window"), "fusion"),
        (lambda: DualUXNet(3, 2, 46, feature_size=6, fusion_heads=(1, 2, 4, 7)), "divisible"),
        (lambda: DualUXNet(3, 2, 46, spatial_stages=(5,)), "spatial_stages"),
        (lambda: DualUXNet(3, 2, 46, level0_input="ct"), "level0_input"),
        (lambda: DualUXNet(4, 2, 46), "spatial_dims"),
        (lambda: UXNet(3, 1, 46, feature_size=0), "feature_size"),
        (lambda: UXNet(3, 1, 46, depths=(2, 2, 2)), "4 stages"),
        (lambda: DualUXNet(3, 2, 46, fusion_heads=(1, 2)), "4 stages"),
        (lambda: UXNet(3, 1, 0), "out_channels"),
        (lambda: UXBlock(3, 8, kernel_size=6), "kernel_size"),
        (lambda: CrossFusionBlock(3, 8, 2, residual="max"), "residual"),
    ],
)
def test_invalid_arguments_raise_value_error(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_spatial_size_not_divisible_by_16_is_refused():
    net = DualUXNet(3, 2, 4, feature_size=4)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.zeros(1, 2, 32, 32, 24))


def test_spatial_attention_attends_over_positions_channel_attention_over_channels():
    """Spatial CA treats the other modality's voxels as a set of positions; channel CA keeps them in place.

    Shuffling the context's voxels leaves spatial attention unchanged (every query attends to every position,
    whatever its place) but changes channel attention (each output voxel mixes the channels of the context at
    that voxel). A distant context voxel changes a query voxel's output in spatial attention.
    """
    torch.manual_seed(0)
    net = DualUXNet(3, 2, 46, fusion="spatial", **DEMO_CONFIG)
    deep = net.fusions[3]  # stage 4, the bottleneck: spatial in this mode
    assert isinstance(deep.ca1, SpatialCrossAttention)
    channels = deep.fuse[0].out_channels
    channel_block = CrossFusionBlock(3, channels, 8, attention="channel")
    assert isinstance(channel_block.ca1, ChannelCrossAttention)

    pet = torch.randn(1, channels, 6, 6, 6)
    mr = torch.randn(1, channels, 6, 6, 6)
    perm = torch.randperm(6**3)
    mr_shuffled = mr.flatten(2)[:, :, perm].reshape(mr.shape)
    with torch.no_grad():
        assert torch.allclose(deep.ca1(pet, mr), deep.ca1(pet, mr_shuffled), atol=1e-5)
        assert not torch.allclose(channel_block.ca1(pet, mr), channel_block.ca1(pet, mr_shuffled), atol=1e-3)

        far = mr.clone()
        # A voxel at the far corner from the query voxel (0, 0, 0); random, since the token LayerNorm would
        # erase a constant shift.
        far[0, :, 5, 5, 5] += 3.0 * torch.randn(channels)
        change = (deep.ca1(pet, far) - deep.ca1(pet, mr))[0, :, 0, 0, 0].abs().max()
        assert change > 1e-4


def test_channel_attention_matrix_does_not_grow_with_the_patch():
    torch.manual_seed(0)
    ca = ChannelCrossAttention(3, 24, 2)
    shapes = []
    for size in (4, 12):
        attn, values = ca.attention(torch.randn(1, 24, size, size, size), torch.randn(1, 24, size, size, size))
        shapes.append(tuple(attn.shape))
        assert values.shape[-1] == size**3
        assert torch.allclose(attn.sum(-1), torch.ones(1, 2, 12), atol=1e-5)  # rows of a softmax over channels
    assert shapes == [(1, 2, 12, 12), (1, 2, 12, 12)]


# 96³ forward of the demo-width network in a fresh process, so its peak RSS is that forward's alone.
_FORWARD_96 = textwrap.dedent(
    """
    import json, resource, time
    import torch
    from multimodalseg.nets.dual_uxnet import DEMO_CONFIG, DualUXNet
    net = DualUXNet(3, 2, 46, **DEMO_CONFIG).eval()
    start = time.perf_counter()
    with torch.no_grad():
        y = net(torch.randn(1, 2, 96, 96, 96))
    print(json.dumps({"shape": list(y.shape), "finite": bool(torch.isfinite(y).all()),
                      "seconds": time.perf_counter() - start,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


@pytest.mark.slow
def test_channel_cross_fusion_forward_at_96_on_cpu_completes_with_bounded_memory():
    proc = subprocess.run([sys.executable, "-c", _FORWARD_96], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1, 46, 96, 96, 96] and result["finite"]
    # Spatial attention at stage 1 would need 110,592² fp32 scores = 45.6 GiB per head (METHODS §A.4);
    # the whole channel-wise forward, interpreter and libraries included, stays within a few GiB.
    assert result["peak_rss_mib"] < 4096, result
    print(f"96³ forward: {result['seconds']:.1f} s, peak RSS {result['peak_rss_mib']:.0f} MiB")
