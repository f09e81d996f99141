"""MI-Seg's own models (CIN 3D UNet, conditional UNETR, conditional Swin-UNETR) have paper configs and train through
the supervised recipe with the modality-conditioned trainer (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from multimodalseg import io
from multimodalseg.bundles import load_bundle
from multimodalseg.nets import build_network
from multimodalseg.nets.cin import ConditionalInstanceNorm
from multimodalseg.phantoms import make_case
from training_helpers import one_thread, tiny_config

from training.core.config import load_config
from training.core.export import export_checkpoint
from training.core.supervised import fit
from training.whole_heart.conditioned import ModalityConditionedTrainer

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
TINY = {"cin_unet": {"channels": [4, 8, 8], "strides": [1, 2], "num_res_units": 1},
        "cin_unetr": {"img_size": [32, 32, 32], "feature_size": 4, "hidden_size": 48, "mlp_dim": 96, "num_heads": 4},
        "cin_swinunetr": {"feature_size": 12, "num_heads": [1, 1, 1, 1]}}


@pytest.mark.parametrize("net", ["unet", "unetr", "swinunetr"])
def test_paper_config_builds_an_encoder_conditioned_network(net):
    config = load_config(CONFIGS / f"whole-heart-mi-seg-{net}-paper.yaml")
    assert config.recipe.config["trainer"] == "modality_conditioned" and config.model.config["scope"] == "encoder"
    spec = {**config.model.config, **TINY[config.model.network]}
    model = build_network(config.model.network, spatial_dims=3, in_channels=1, out_channels=8, **spec)
    assert any(isinstance(m, ConditionalInstanceNorm) for m in model.modules())
    size = 64 if net == "swinunetr" else 32  # C-Swin's stage norms need more than one voxel at 1/32
    with torch.no_grad():
        out = model(torch.randn(2, 1, size, size, size), modality=torch.tensor([0, 1]))
    assert out.shape == (2, 8, size, size, size)


def test_cin_unet_trains_and_exports_a_conditional_bundle(tmp_path):
    root = tmp_path / "data"
    for modality in ("ct", "mr"):
        for i in range(2):
            case = make_case("whole-heart", 60 + i, modality=modality, shape=(32, 32, 32))
            io.write_image(case.images["image"], root / f"{modality}_train_{1001 + i}_image.nii.gz")
            io.write_image(case.label, root / f"{modality}_train_{1001 + i}_label.nii.gz")
    paper = load_config(CONFIGS / "whole-heart-mi-seg-unet-paper.yaml")
    config = tiny_config("whole-heart", root, data={"val_fraction": 0.5},
                         model={"network": "cin_unet", "config": {**paper.model.config, **TINY["cin_unet"]}},
                         loss={"name": paper.loss.name, "config": dict(paper.loss.config)}, train={"epochs": 1})
    with one_thread():
        assert fit(config, tmp_path / "run", trainer_cls=ModalityConditionedTrainer).last_epoch == 1
    bundle, _ = export_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", tmp_path / "mi.pt")
    loaded = load_bundle(bundle)
    assert loaded.meta["conditional_modality"] is True and loaded.meta["network"]["name"] == "cin_unet"
    loaded.build_model()  # strict load of the trained weights
