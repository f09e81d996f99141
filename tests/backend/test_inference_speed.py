"""Inference speed-ups that must not change results: oneDNN routing of small 3D convs, DMFNet's head order."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.inference import Predictor
from multimodalseg.inference.onednn import OneDNNConv3d, route_convolutions
from multimodalseg.nets.dmfnet import DEMO_CONFIG, DMFNet
from multimodalseg.tasks import get_task
from torch.profiler import ProfilerActivity, profile

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


def _pair(**conv):
    torch.manual_seed(0)
    native = torch.nn.Conv3d(**conv)
    routed = copy.deepcopy(native)
    return native, routed, route_convolutions(routed)


def _ops(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("conv, batch", [
    ({"in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": 1, "bias": False}, 1),
    ({"in_channels": 4, "out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1}, 1),
    ({"in_channels": 1, "out_channels": 8, "kernel_size": 3, "padding": 2, "dilation": 2}, 2),
    ({"in_channels": 6, "out_channels": 6, "kernel_size": (1, 3, 3), "padding": (0, 1, 1), "groups": 2}, 1),
    ({"in_channels": 2, "out_channels": 3, "kernel_size": 2, "stride": 2}, 1),
])
def test_routed_conv_matches_native(conv, batch):
    native, routed, n = _pair(**conv)
    assert n == 1 and isinstance(routed, OneDNNConv3d) and isinstance(routed, torch.nn.Conv3d)
    x = torch.randn(batch, conv["in_channels"], 12, 16, 20)
    with torch.inference_mode():
        expected, got = native(x), routed(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # The state dict is the module's own: same keys, same tensors.
    a, b = native.state_dict(), routed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_small_conv_really_switches_kernel():
    # 1 * 4 * 16 * 16 <= 20480: PyTorch's own choice for one window is the slow im2col path.
    native, routed, _ = _pair(in_channels=4, out_channels=4, kernel_size=3, padding=1)
    x = torch.randn(1, 4, 16, 16, 16)
    torch.set_num_threads(1)
    with torch.inference_mode():
        assert "aten::slow_conv3d_forward" in _ops(lambda: native(x))
        ops = _ops(lambda: routed(x))
    assert "aten::mkldnn_convolution" in ops and "aten::slow_conv3d_forward" not in ops


def test_ineligible_convs_keep_their_class():
    model = torch.nn.Sequential(
        torch.nn.Conv3d(4, 4, 1),  # 1x1x1: the native GEMM path was faster
        torch.nn.Conv3d(4, 4, 3, padding="same"),
        torch.nn.Conv3d(4, 4, 3, padding=1, padding_mode="replicate"),
        torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.ConvTranspose3d(4, 4, 2, stride=2),
        torch.nn.Conv3d(4, 4, 3, padding=1),
    )
    assert route_convolutions(model) == 1
    assert [type(m).__name__ for m in model] == ["Conv3d", "Conv3d", "Conv3d", "Conv2d", "ConvTranspose3d",
                                                 "OneDNNConv3d"]


def test_training_and_autocast_take_the_native_path():
    native, routed, _ = _pair(in_channels=3, out_channels=5, kernel_size=3, padding=1)
    x = torch.randn(1, 3, 8, 8, 8, requires_grad=True)
    for m in (native, routed):
        m(x).square().sum().backward()
    torch.testing.assert_close(routed.weight.grad, native.weight.grad)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert routed(x.detach()).dtype == torch.bfloat16  # autocast still applies


def test_dmfnet_head_runs_before_the_last_upsampling():
    """The forward's up(head(y)) equals the reference order head(up(y)) to float noise."""
    torch.manual_seed(0)
    net = DMFNet(3, 4, 3, **DEMO_CONFIG).eval()
    seen = {}
    net.decoder3.register_forward_hook(lambda m, i, out: seen.update(y=out))
    x = torch.randn(1, 4, 32, 32, 48)
    with torch.inference_mode():
        out = net(x)
        reference = net.head(F.interpolate(seen["y"], scale_factor=2, mode="trilinear", align_corners=False))
    assert out.shape == (1, 3, 32, 32, 48)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


def test_predictor_routes_and_keeps_probabilities(tmp_path):
    task = get_task("brain-tumor")
    torch.manual_seed(0)
    model = DMFNet(3, 4, 3, **DEMO_CONFIG)
    meta = {"id": "speed-dmfnet", "version": "1", "task": task.id,
            "network": {"name": "dmfnet", "config": {"spatial_dims": 3, "in_channels": 4, "out_channels": 3,
                                                     **DEMO_CONFIG}},
            "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in task.labels],
            "preprocessing": {"spacing": None, "patch_size": [32, 32, 32]}}
    save_bundle(tmp_path / "b.pt", model.state_dict(), meta)
    bundle = load_bundle(tmp_path / "b.pt", task=task.id)
    rng = np.random.default_rng(0)
    from multimodalseg import io

    images = {r: io.make_image(rng.normal(100, 20, (20, 36, 40)).astype(np.float32)) for r in task.roles}
    routed = Predictor(bundle, "cpu", crop=False, keep_probabilities=True)
    assert isinstance(routed.model.mie.conv1.conv, OneDNNConv3d)
    native = Predictor(bundle, "cpu", crop=False, keep_probabilities=True)
    native.model = bundle.build_model()  # PyTorch's own kernel choice
    a = routed.predict(images).probabilities
    b = native.predict(images).probabilities
    # Float noise only: one conv differs by ~1e-6 (test above); 40 convs and norms deep it stays below 1e-4.
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.abs(a - b).max() > 0  # the two predictors really ran different kernels
