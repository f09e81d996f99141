"""Training configuration: YAML load, --set overrides, type checks, to_dict/from_dict round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from multimodalseg.errors import UserError

from training.core.config import TrainingConfig, load_config, parse_override, save_config

CONFIGS = sorted((Path(__file__).parents[2] / "training" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_demo_configs_load_and_round_trip(path):
    from training.core.recipes import resolve

    config = load_config(path)
    recipe, settings = resolve(config)  # the recipe's own settings are checked too
    if recipe.name == "cascade":
        assert settings.localization.enabled and settings.refinement.enabled and settings.roi
    assert path.stem == config.task or path.stem.startswith(f"{config.task}-")  # petmr-brain-paper.yaml
    again = TrainingConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config
    assert again.to_dict() == config.to_dict()


def test_demo_configs_cover_every_task():
    from multimodalseg.tasks import TASKS

    assert {p.stem for p in CONFIGS} >= set(TASKS)  # one <task>.yaml each, beside variants (<task>-paper.yaml)


def test_overrides_parse_yaml_values_and_nested_keys(tmp_path):
    config = load_config(CONFIGS[0], ["train.epochs=7", "model.config.features=[4, 4, 8, 8, 16, 4]",
                                      "data.spacing=null", "optimizer.lr=1e-4", "augmentation.enabled=false",
                                      "loss.config.batch=true"])
    assert config.train.epochs == 7
    assert config.model.config["features"] == [4, 4, 8, 8, 16, 4]
    assert config.data.spacing is None
    assert config.optimizer.lr == pytest.approx(1e-4)
    assert config.augmentation.enabled is False
    assert config.loss.config["batch"] is True
    saved = save_config(config, tmp_path / "cfg.yaml")
    assert load_config(saved) == config


def test_int_is_accepted_for_float_and_1e_notation_is_a_number():
    config = TrainingConfig.from_dict({"optimizer": {"lr": 1, "weight_decay": "1e-5"}})
    assert config.optimizer.lr == 1.0 and isinstance(config.optimizer.lr, float)
    assert config.optimizer.weight_decay == pytest.approx(1e-5)


@pytest.mark.parametrize(("override", "message"), [
    ("train.epoch=3", "unknown config key 'train.epoch'"),
    ("trian.epochs=3", "unknown config key 'trian'"),
    ("train.epochs=three", "config key 'train.epochs' must be an integer"),
    ("train.epochs=2.5", "config key 'train.epochs' must be an integer"),
    ("train.precision=fp8", "config key 'train.precision' must be one of"),
    ("augmentation.patch_size=[32, x, 32]", "augmentation.patch_size[1]' must be an integer"),
    ("train.epochs", "must look like key.sub=value"),
    ("train.epochs.max=3", "holds a value, not a section"),
])
def test_bad_overrides_are_user_errors_naming_the_key(override, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(CONFIGS[0], [override])


def test_bad_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: spine\ntrain:\n  epochs: [1, 2\n")
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "invalid YAML at line" in str(info.value)


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must be a mapping"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_parse_override_keeps_strings():
    assert parse_override("name=my-model") == ("name", "my-model")
    assert parse_override("data.val_cases=[a, b]") == ("data.val_cases", ["a", "b"])


def test_data_orientation_defaults_to_the_tasks_and_is_checked(tmp_path):
    """``data.orientation``: the task's code (LPS) by default, ``""`` keeps each case's own, a bad code is one
    UserError; PrepareCased hands the network arrays in that orientation."""
    import numpy as np
    import SimpleITK as sitk
    from multimodalseg.orientation import orientation_code
    from multimodalseg.tasks import get_task

    from training.core.transforms import PrepareCased, network_orientation

    task = get_task("whole-heart")
    assert network_orientation(TrainingConfig.from_dict({"task": task.id}), task) == "LPS"
    assert network_orientation(TrainingConfig.from_dict({"task": task.id, "data": {"orientation": ""}}), task) is None
    assert network_orientation(TrainingConfig.from_dict({"task": task.id, "data": {"orientation": "ras"}}),
                               task) == "RAS"
    with pytest.raises(UserError, match="data.orientation: orientation 'LPQ' is not a code"):
        network_orientation(TrainingConfig.from_dict({"task": task.id, "data": {"orientation": "LPQ"}}), task)
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((6, 8, 10)).astype(np.float32))
    lia = sitk.DICOMOrient(image, "LIA")
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(lia, str(path))
    record = {"id": "c1", "images": {"image": (str(path), None)}}
    kept = PrepareCased(task.id, None, None, None, None)(record)["image"]
    turned = PrepareCased(task.id, None, None, None, "LPS")(record)["image"]
    assert orientation_code(lia.GetDirection()) == "LIA" and kept.shape == (1, 8, 6, 10)
    assert turned.shape == (1, 6, 8, 10)
    from multimodalseg import io

    np.testing.assert_array_equal(turned[0], sitk.GetArrayFromImage(sitk.DICOMOrient(io.copy_geometry(kept[0], lia),
                                                                                    "LPS")))
