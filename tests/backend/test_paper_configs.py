"""The paper configs select the papers' choices (issue 16); the nets' defaults keep the shipped demos' behaviour."""

from pathlib import Path

import torch
import yaml
from multimodalseg.nets import build_network

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def paper(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}-paper.yaml").read_text(encoding="utf-8"))


def test_petmr_paper_config_uses_batchnorm_in_the_residual_blocks():
    model = paper("petmr-brain")["model"]
    assert model["config"]["norm_name"] == "batch"
    small = {**model["config"], "feature_size": 12}  # tiny width: the layout is what matters
    net = build_network(model["network"], spatial_dims=3, in_channels=2, out_channels=3, **small)
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    default = build_network(model["network"], spatial_dims=3, in_channels=2, out_channels=3, feature_size=12)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in default.modules())  # the demo's instance norm
