"""Strip-wise CDDFuse inference (``nets.cddfuse_strips``): the same fused image as whole slices, faster on big ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from multimodalseg.nets.cddfuse import DEMO_CONFIG, PAPER_CONFIG, CDDFuse
from multimodalseg.nets.cddfuse_strips import fuse_in_strips, receptive_radius, strip_map


@pytest.mark.parametrize("config", [
    {**DEMO_CONFIG, "pad_to": None},
    {**PAPER_CONFIG, "features": 8, "num_heads": 2, "encoder_blocks": 1, "decoder_blocks": 1, "pad_to": None},
    {**DEMO_CONFIG, "pad_to": None, "residual": "none", "bias": True, "features": 8},
], ids=["demo-cnn", "inn", "no-residual-bias"])
@pytest.mark.parametrize("rows", [1, 5, 16, 100])
def test_strips_equal_whole_slices(config, rows):
    torch.manual_seed(0)
    net = CDDFuse(2, 1, 1, **config).eval()
    ct, mr = torch.rand(2, 1, 37, 29), torch.rand(2, 1, 37, 29)
    ct[:, :, :4] = 1.0  # a bright border: padding at the true image edge must be the layers' own
    with torch.inference_mode():
        whole = net.fuse_images(ct, mr)[0]
        strips = fuse_in_strips(net, ct, mr, rows)
    assert strips.shape == whole.shape
    torch.testing.assert_close(strips, whole, atol=2e-6, rtol=0)


def test_forward_strips_pads_and_crops_like_forward():
    torch.manual_seed(1)
    net = CDDFuse(2, 1, 1, **{**DEMO_CONFIG, "features": 8, "pad_to": (48, 40)}).eval()
    net.pad_mode = "replicate"
    ct, mr = torch.rand(1, 1, 30, 33), torch.rand(1, 1, 30, 33)
    with torch.inference_mode():
        torch.testing.assert_close(net.forward_strips(ct, mr, rows=7), net(ct, mr), atol=2e-6, rtol=0)


def test_strip_map_and_radius():
    conv = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, padding=1), torch.nn.Conv2d(2, 2, 5, padding=2))
    assert receptive_radius(conv) == 3
    x = torch.rand(1, 2, 23, 9)
    with torch.inference_mode():
        torch.testing.assert_close(strip_map(conv, (x,), 3, rows=4), conv(x), atol=1e-6, rtol=0)
        # too little context is not exact: the radius matters
        assert (strip_map(conv, (x,), 1, rows=4) - conv(x)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="rows must be positive"):
        fuse_in_strips(CDDFuse(2, 1, 1, **DEMO_CONFIG), x[:, :1], x[:, :1], 0)


def test_runner_uses_strips_on_big_slices_only(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))
    from multimodalseg.bundles import load_bundle, save_bundle
    from multimodalseg.inference import fusion

    config = {**DEMO_CONFIG, "features": 4, "num_heads": 1, "pad_to": None}
    torch.manual_seed(0)
    meta = {k: v for k, v in fusion.load_fusion_model(None).meta.items() if k not in ("format", "metrics", "seconds")}
    meta.update(id="tiny-strips", network={"name": "cddfuse", "config": {"spatial_dims": 2, "in_channels": 1,
                                                                          "out_channels": 1, **config}})
    path = tmp_path / "f.pt"
    save_bundle(path, CDDFuse(2, 1, 1, **config).state_dict(), meta)
    runner = fusion.FusionRunner(load_bundle(path), "cpu")
    calls = []
    original = runner.model.forward_strips
    runner.model.forward_strips = lambda *a, **k: calls.append(1) or original(*a, **k)
    rng = np.random.default_rng(0)
    small = rng.random((2, 20, 24), dtype=np.float32)
    runner.fuse(small, small)
    assert calls == []
    big = rng.random((1, 170, 160), dtype=np.float32)
    out = runner.fuse(big, big[:, ::-1].copy())
    assert len(calls) == 1 and runner.batch_size(170, 160) == 1
    whole = fusion.FusionRunner(load_bundle(path), "cpu", strips=False).fuse(big, big[:, ::-1].copy())
    np.testing.assert_allclose(out, whole, atol=2e-5)
