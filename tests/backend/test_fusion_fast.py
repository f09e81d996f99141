"""The fast CPU fusion path of issue 18 (``nets.cddfuse_strips``: channels-last strips, the Lite-Transformer's
folded qkv conv; ``inference.fusion.keep_freed_memory``) against the reference whole-slice network."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg.inference.fusion import STRIP_PIXELS, FusionRunner, fuse_case, keep_freed_memory, load_fusion_model
from multimodalseg.nets.blocks.fusion_blocks import LiteTransformerBlock, RestormerBlock
from multimodalseg.nets.cddfuse import DEMO_CONFIG, CDDFuse
from multimodalseg.nets.cddfuse_strips import fuse_in_strips, qkv_function
from multimodalseg.phantoms import make_case

CL = torch.channels_last
METRICS = ("EN", "MI", "SF", "VIF")


@pytest.mark.parametrize("bias", [False, True])
def test_lite_qkv_conv_folded_exactly_only_without_bias(bias):
    torch.manual_seed(0)
    attn = LiteTransformerBlock(16, 2, bias=bias).eval().attn
    calls: list[int] = []
    attn.qkv.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(1, 16, 23, 17).contiguous(memory_format=CL)
    x[..., :2, :] += 3.0  # bright top border: the zero padding of the intermediate must be reproduced
    with torch.inference_mode():
        folded = qkv_function(attn)(x)
        calls_fast = len(calls)
        reference = attn.qkv_dwconv(attn.qkv(x))
    torch.testing.assert_close(folded, reference, atol=2e-5, rtol=1e-5)
    # bias-free: one 3x3 conv with the product weight (the 1x1 module is not called); with a bias: the two convs
    assert calls_fast == (1 if bias else 0)
    # Restormer's depthwise qkv conv is never folded (it would cost more multiply-adds, not fewer)
    restormer = RestormerBlock(16, 2).eval().attn
    restormer.qkv.register_forward_hook(lambda *_: calls.append(2))
    with torch.inference_mode():
        qkv_function(restormer)(x)
    assert calls[-1] == 2


def test_strip_convs_get_dense_channels_last_input():
    """The point of the rewrite: no conv of the strip path falls back to NCHW (or to a strided batch strip)."""
    torch.manual_seed(1)
    net = CDDFuse(2, 1, 1, **{**DEMO_CONFIG, "pad_to": None}).eval()
    seen: list[bool] = []
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d) and module.in_channels > 1:
            module.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(memory_format=CL)))
    ct, mr = torch.rand(2, 1, 40, 36), torch.rand(2, 1, 40, 36)
    with torch.inference_mode():
        fuse_in_strips(net, ct, mr, rows=8)
    assert len(seen) > 100 and all(seen)


@pytest.fixture(scope="module")
def phantom_slices():
    """Four 192 x 192 axial slices of a spine phantom (CT and MR on one grid): large enough for the strip path."""
    case = make_case("spine", 971, misregister=False, shape=(4, 192, 192))
    ct = case.images["ct"]
    mr = sitk.Resample(case.images["mr"], ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return ct, mr


def test_shipped_demo_fast_path_matches_reference_and_metrics_within_1_percent(phantom_slices, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))
    ct, mr = phantom_slices
    assert STRIP_PIXELS <= 192 * 192
    bundle = load_fusion_model(None)
    fast_runner, reference_runner = FusionRunner(bundle, "cpu"), FusionRunner(bundle, "cpu", strips=False)
    assert fast_runner._use_strips(192, 192) and not reference_runner._use_strips(192, 192)
    fast, reference = fuse_case(fast_runner, ct, mr), fuse_case(reference_runner, ct, mr)
    a, b = (sitk.GetArrayFromImage(r.fused).astype(int) for r in (fast, reference))
    # 8-bit grey levels: float rounding moves a value across a level boundary at most by one, on few voxels
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01
    for name in METRICS:
        ref = reference.metrics["fused"][name]
        assert abs(fast.metrics["fused"][name] - ref) <= 0.01 * abs(ref), name
    assert reference.metrics["fused"]["VIF"] > 0.3  # a real fused image, not a blank one


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_keep_freed_memory_sets_glibc_malloc():
    assert keep_freed_memory() is True


def _tiny_fusion_bundle(path, model_id: str) -> None:
    """A 4-feature CDDFuse bundle with the shipped demo's fusion settings, unpadded."""
    from multimodalseg.bundles import save_bundle

    config = {**DEMO_CONFIG, "features": 4, "num_heads": 1, "pad_to": None}
    torch.manual_seed(0)
    meta = {k: v for k, v in load_fusion_model(None).meta.items() if k not in ("format", "metrics", "seconds")}
    meta.update(id=model_id, network={"name": "cddfuse", "config": {"spatial_dims": 2, "in_channels": 1,
                                                                     "out_channels": 1, **config}})
    save_bundle(path, CDDFuse(2, 1, 1, **config).state_dict(), meta)


def test_runner_fuses_strip_slices_in_parallel_when_threads_allow(tmp_path, monkeypatch):
    """``torch.set_num_threads(2)`` (``--threads 2``): two strip-wise slices at once, one intra-op thread each, the
    same image bit for bit, progress in slice order, the thread setting restored."""
    import threading

    from multimodalseg.bundles import load_bundle

    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))
    _tiny_fusion_bundle(tmp_path / "f.pt", "tiny-parallel")
    runner = FusionRunner(load_bundle(tmp_path / "f.pt"), "cpu")
    seen: list[tuple[int, int]] = []
    forward = runner._forward
    runner._forward = lambda ct, mr: seen.append((threading.get_ident(), torch.get_num_threads())) or forward(ct, mr)
    rng = np.random.default_rng(0)
    ct, mr = (rng.random((5, 170, 160), dtype=np.float32) for _ in range(2))
    torch.set_num_threads(1)
    sequential = runner.fuse(ct, mr)
    assert {t for t, _ in seen} == {threading.get_ident()}
    seen.clear()
    torch.set_num_threads(2)
    fractions: list[float] = []
    parallel = runner.fuse(ct, mr, fractions.append)
    assert len({t for t, _ in seen}) == 2 and threading.get_ident() not in {t for t, _ in seen}
    assert {n for _, n in seen} == {1} and torch.get_num_threads() == 2
    assert fractions == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5, 1.0])
    np.testing.assert_array_equal(parallel, sequential)


def test_runner_workers_override_torch_threads(tmp_path, monkeypatch):
    """``FusionRunner(workers=2)`` (the CLI's default on 2 cores) fuses two strip-wise slices at once even with one
    torch thread, bit for bit the sequential image; ``workers=1`` keeps one thread."""
    import threading

    from multimodalseg.bundles import load_bundle

    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))
    _tiny_fusion_bundle(tmp_path / "f.pt", "tiny-workers")
    rng = np.random.default_rng(1)
    ct, mr = (rng.random((4, 170, 160), dtype=np.float32) for _ in range(2))
    images = {}
    for workers in (1, 2):
        runner = FusionRunner(load_bundle(tmp_path / "f.pt"), "cpu", workers=workers)
        seen: set[int] = set()
        forward = runner._forward
        runner._forward = lambda a, b, f=forward, s=seen: s.add(threading.get_ident()) or f(a, b)
        torch.set_num_threads(1)
        images[workers] = runner.fuse(ct, mr)
        assert len(seen) == workers
    np.testing.assert_array_equal(images[1], images[2])


def test_slice_workers_default_to_every_core(monkeypatch):
    from multimodalseg.errors import UserError
    from multimodalseg.inference.devices import slice_workers

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert slice_workers(None) == 6 and slice_workers(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert slice_workers(None) == 2
    with pytest.raises(UserError, match="--threads"):
        slice_workers(0)
