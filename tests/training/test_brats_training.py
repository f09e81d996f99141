"""The BraTS loss in training: registration, key-point images in the data pipeline, the demo and paper configs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import OneOf, RandRotated, RandSpatialCropSamplesd
from multimodalseg.errors import UserError
from multimodalseg.inference.postprocess import labels_to_regions
from multimodalseg.tasks import get_task
from scipy import ndimage
from training_helpers import tiny_config

from training.brain_tumor.keypoints import BoundaryKeyPointsd, boundary, key_point_image
from training.brain_tumor.losses import BratsLoss
from training.core.config import load_config
from training.core.losses import LOSSES, build_loss
from training.core.optim import build_optimizer, build_scheduler
from training.core.supervised import fit, make_network, network_spec
from training.core.transforms import PrepareCased, train_transforms
from training.datasets import find_cases

TASK = get_task("brain-tumor")
CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
BSC = {"name": "brats", "config": {"use_bsc": True, "key_points": {"radii": [2, 1, 1], "iterations": 10}}}


@pytest.fixture(scope="module")
def brats_data(tmp_path_factory) -> Path:
    from conftest import write_dataset

    return write_dataset("brain-tumor", tmp_path_factory.mktemp("brats"), 3, first_seed=1000)


def _samples(config, root: Path) -> list[dict]:
    _, cases = find_cases(TASK, root, "auto")
    return train_transforms(config, TASK)(cases[0].to_record())


def test_brats_loss_is_registered():
    assert LOSSES["brats"] == "training.brain_tumor.losses:brats_loss"
    loss = build_loss("brats", "regions", use_bsc=True, lambda_bsc=0.5, key_points={"radii": [2, 1, 1]})
    assert isinstance(loss, BratsLoss) and loss.use_bsc and loss.lambda_bsc == 0.5
    with pytest.raises(ValueError, match="region outputs"):
        build_loss("brats", "labels")


def test_target_carries_the_key_points_of_the_whole_case(brats_data):
    # Patch = the whole 32³ case and no augmentation: the key-point channels must equal the key-point image of the
    # case's regions computed directly.
    config = tiny_config("brain-tumor", brats_data, loss=BSC, augmentation={"enabled": False, "samples_per_case": 1})
    sample = _samples(config, brats_data)[0]
    target = sample["label"].numpy()
    assert target.shape == (6, 32, 32, 32)
    _, cases = find_cases(TASK, brats_data, "auto")
    prepared = PrepareCased(TASK.id, None, None)(cases[0].to_record())
    regions = labels_to_regions(np.asarray(prepared["label"])[0], TASK)
    assert regions.any(axis=(1, 2, 3)).all()
    np.testing.assert_array_equal(target[:3], regions.astype(np.float32))
    expected = key_point_image(regions, (2, 1, 1), iterations=10)
    np.testing.assert_array_equal(target[3:], expected)
    assert target[3:].any(axis=(1, 2, 3)).all()


def test_key_points_are_flipped_with_the_label(brats_data):
    config = tiny_config("brain-tumor", brats_data, loss=BSC,
                         augmentation={"flip_prob": 1.0, "intensity_prob": 0.0, "samples_per_case": 1,
                                       # flips only: a zoom or rotation (nearest) moves ball voxels off the
                                       # distance-R band, legitimately, and fires at random
                                       "rotate_prob": 0.0, "scale_prob": 0.0})
    target = _samples(config, brats_data)[0]["label"].numpy()
    for r, radius in enumerate((2, 1, 1)):
        edge = boundary(target[r] > 0)
        near = ndimage.binary_dilation(edge, ndimage.generate_binary_structure(3, 3), iterations=radius)
        keys = target[3 + r] > 0
        assert keys.any() and (keys <= near).all()  # every ball voxel lies within R of the region's boundary


def test_without_bsc_the_target_is_the_regions(brats_data):
    config = tiny_config("brain-tumor", brats_data, loss={"name": "brats", "config": {"use_bsc": False}})
    assert _samples(config, brats_data)[0]["label"].shape[0] == 3


def test_bad_key_point_options_are_user_errors(brats_data):
    bad = tiny_config("brain-tumor", brats_data, loss={"name": "brats", "config": {"key_points": {"radius": 2}}})
    with pytest.raises(UserError, match="loss.config.key_points.radius"):
        train_transforms(bad, TASK)
    bad = tiny_config("brain-tumor", brats_data, loss={"name": "brats", "config": {"key_points": {"radii": [2]}}})
    with pytest.raises(UserError, match="one radius per region"):
        train_transforms(bad, TASK)


def test_fit_with_dmfnet_and_the_bsc_loss(brats_data, tmp_path):
    config = tiny_config(
        "brain-tumor", brats_data, loss=BSC,
        model={"network": "dmfnet", "config": {"stem_channels": 8, "channels": 8, "groups": 4, "norm": "instance",
                                                "mie_channels": 4}},
        train={"epochs": 2, "batch_size": 1})
    result = fit(config, tmp_path / "run")
    assert result.last_epoch == 2 and len(result.losses) == 2
    # GDL (< 1) plus BSC (< 1): a loss above 1 shows the BSC term is in it.
    assert all(math.isfinite(v) and 1.0 < v < 2.0 for v in result.losses)
    assert math.isfinite(result.best_metric)


def test_demo_config_is_the_method_at_demo_width():
    config = load_config(CONFIGS / "brain-tumor.yaml")
    spec = network_spec(config, TASK)
    assert spec["name"] == "dmfnet"
    assert spec["config"]["use_mie"] and spec["config"]["use_sie"]
    assert config.loss.name == "brats" and config.loss.config["use_bsc"]
    assert sum(p.numel() for p in make_network(spec).parameters()) < 1_000_000


def test_paper_config_is_the_paper_recipe(brats_data):
    config = load_config(CONFIGS / "brain-tumor-paper.yaml", [f"data.root={brats_data}"])
    assert config.train.epochs >= 500 and config.train.batch_size == 8
    assert config.augmentation.patch_size == [128, 128, 128] and config.data.spacing is None  # 1 mm
    model = make_network(network_spec(config, TASK))
    params = sum(p.numel() for p in model.parameters())
    assert 4.4e6 < params < 4.8e6  # DMFNet 3.876 M + MIE + SIE (METHODS §B.4: ≈ 4.6 M)
    loss = build_loss(config.loss.name, TASK.output_kind, **config.loss.config)
    assert isinstance(loss, BratsLoss) and loss.use_bsc
    optimizer = build_optimizer(model.parameters(), config.optimizer)
    assert isinstance(optimizer, torch.optim.Adam)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["amsgrad"], tuple(group["betas"])) == (1e-3, 1e-5, True,
                                                                                               (0.9, 0.999))
    scheduler = build_scheduler(optimizer, config.scheduler, config.train.epochs)
    for _ in range(250):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**0.9)  # poly 0.9 per epoch

    steps = train_transforms(config, TASK).transforms
    crops = [t for t in steps if isinstance(t, RandSpatialCropSamplesd)]
    assert len(crops) == 1 and list(crops[0].cropper.cropper.roi_size) == [128, 128, 128]  # uniform random crops
    rotation = next(t for t in steps if isinstance(t, OneOf))
    ranges = sorted(_ranges(t) for t in rotation.transforms)
    assert ranges == [(0, 0, 10), (0, 10, 0), (10, 0, 0)]  # one random plane, up to 10 degrees
    assert any(isinstance(t, BoundaryKeyPointsd) for t in steps)


def _ranges(t: RandRotated) -> tuple[int, ...]:
    rotate = t.rand_rotate
    return tuple(round(math.degrees(r[1])) for r in (rotate.range_x, rotate.range_y, rotate.range_z))


@pytest.mark.slow
def test_paper_config_gets_through_fit_setup(tmp_path, capsys):
    """``python -m training fit`` with the paper config and 0 epochs: config, network (a 128³ probe pass of the
    paper-width model), key points, loaders and trainer all set up on 1 mm phantoms (9 cases: 8 fill a batch)."""
    from multimodalseg.phantoms import make_case
    from multimodalseg.phantoms.layouts import write_case

    from training.core.cli import main

    data = tmp_path / "data"
    for i in range(9):
        write_case(make_case(TASK.id, 1000 + i, shape=(40, 40, 40), spacing=(1.0, 1.0, 1.0), misregister=False),
                   data, i + 1)
    out = tmp_path / "run"
    code = main(["fit", "--config", str(CONFIGS / "brain-tumor-paper.yaml"), "--data", str(data), "--out", str(out),
                 "--device", "cpu", "--set", "train.epochs=0", "--set", "data.val_fraction=0.1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "trained 0 epochs" in captured.out
    summary = json.loads((out / "supervised" / "summary.json").read_text())  # the stage's own summary
    assert len(summary["train_cases"]) == 8 and len(summary["val_cases"]) == 1
    assert json.loads((out / "summary.json").read_text())["stages"]["supervised"]["status"] == "done"
    assert load_config(out / "config.yaml").to_dict() == load_config(
        CONFIGS / "brain-tumor-paper.yaml", ["train.epochs=0", "data.val_fraction=0.1", f"data.root={data}",
                                             "train.device=cpu", "recipe.config={trainer: supervised}"]).to_dict()
