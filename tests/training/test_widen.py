"""Function-preserving widening of the dual 3D UX-Net (training.petmr_brain.widen)."""

from __future__ import annotations

import pytest
import torch
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.nets.dual_uxnet import DualUXNet

from training.petmr_brain.widen import main, source_index, widen_state_dict


def trained_like(feature_size: int, **kwargs) -> DualUXNet:
    """A narrow net whose layer scales and temperatures are far from their init, so every block matters."""
    torch.manual_seed(0)
    net = DualUXNet(3, 2, 46, feature_size=feature_size, **kwargs).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.3, 1.0)
            elif name.endswith("temperature"):
                p.uniform_(0.5, 2.0)
    return net


@pytest.mark.parametrize("kwargs", [{}, {"shared_bottleneck": True}])
def test_widened_net_computes_the_narrow_output(kwargs):
    narrow = trained_like(6, **kwargs)
    wide = DualUXNet(3, 2, 46, feature_size=12, **kwargs).eval()
    wide.load_state_dict(widen_state_dict(narrow, wide))
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        a, b = narrow(x), wide(x)
    assert a.abs().max() > 1.0
    assert torch.allclose(a, b, atol=1e-4 * a.abs().max().item())


def test_copies_differ_so_training_can_separate_them():
    narrow = trained_like(6)
    wide = DualUXNet(3, 2, 46, feature_size=12)
    state = widen_state_dict(narrow, wide)
    w = state["head.layer.conv2.conv.weight"]  # (12, 12, 3, 3, 3): inputs split unevenly per pair
    assert torch.equal(w[0], w[1])  # output copies are identical
    assert not torch.allclose(w[:, 0], w[:, 1])  # input halves are not
    old = narrow.state_dict()["head.layer.conv2.conv.weight"]
    assert torch.allclose(w[:, 0] + w[:, 1], old[:, 0].repeat_interleave(2, 0))  # their sum is the old weight


def test_source_index_keeps_segments_and_groups():
    assert source_index(8, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert source_index(8, 4, segments=2).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert source_index(12, 6, segments=2).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert source_index(8, 4, segments=2)[4:].tolist() == [2, 2, 3, 3]
    # 4 outputs per group (the UX block's expanding conv): group g's block is copied whole
    assert source_index(16, 8, group=4).tolist() == [0, 1, 2, 3] * 2 + [4, 5, 6, 7] * 2
    with pytest.raises(ValueError):
        source_index(10, 4)


def test_cli_widens_a_bundle_and_refuses_an_existing_output(tmp_path, capsys):
    narrow = trained_like(4)
    meta = {"id": "petmr-brain-test", "task": "petmr-brain", "version": "0.0.1",
            "network": {"name": "dual_uxnet", "config": {"spatial_dims": 3, "in_channels": 2, "out_channels": 46,
                                                         "feature_size": 4}},
            "labels": [], "preprocessing": {}}
    src = tmp_path / "narrow.pt"
    save_bundle(src, narrow.state_dict(), meta)
    out = tmp_path / "wide.pt"
    assert main(["--bundle", str(src), "--out", str(out)]) == 0
    wide = load_bundle(out)
    assert wide.meta["network"]["config"]["feature_size"] == 8
    assert wide.meta["widened_from"]["version"] == "0.0.1"
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(narrow(x), wide.build_model()(x), atol=1e-4)
    before = out.read_bytes()
    assert main(["--bundle", str(src), "--out", str(out)]) == 2
    assert out.read_bytes() == before
    assert "exists" in capsys.readouterr().err
