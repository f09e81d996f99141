"""Export: a checkpoint becomes a bundle that ``load_bundle`` and the predictor accept; fine-tuning from it."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg.bundles import load_bundle, read_sidecar, sha256_file
from multimodalseg.errors import UserError
from multimodalseg.inference import Predictor
from multimodalseg.tasks import get_task
from training_helpers import one_thread, same_weights, tiny_config

from training.core.checkpoint import load_checkpoint
from training.core.export import export_checkpoint
from training.core.supervised import fit


@pytest.fixture(scope="module")
def heart_checkpoint(heart_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("export-run")
    with one_thread():  # module fixtures run outside the per-test one-thread fixture
        fit(tiny_config("whole-heart", heart_data, train={"epochs": 2}, version="1.2.3"), run)
    return run / "checkpoints" / "best.pt"


def test_export_round_trips_through_load_bundle(heart_checkpoint, tmp_path):
    path, digest = export_checkpoint(heart_checkpoint, tmp_path / "heart.pt")
    assert digest == sha256_file(path) == read_sidecar(path)
    bundle = load_bundle(path, task="whole-heart")
    state = load_checkpoint(heart_checkpoint)
    assert same_weights(bundle.state_dict, state["model"])
    meta = bundle.meta
    task = get_task("whole-heart")
    assert meta["id"] == "whole-heart-test" and meta["version"] == "1.2.3" and meta["task"] == "whole-heart"
    assert meta["labels"] == [{"index": lab.index, "value": lab.value, "name": lab.name}
                              for lab in sorted(task.labels, key=lambda lab: lab.index)]
    assert meta["network"] == {"name": "basic_unet", "config": {"spatial_dims": 3, "in_channels": 1,
                                                                "out_channels": 8, "features": [4, 4, 8, 8, 16, 4]}}
    assert meta["preprocessing"] == {"spacing": None, "patch_size": [32, 32, 32],
                                     "normalization": {"image": "zscore"}, "roles": ["image"], "crop_margin": None,
                                     "orientation": "LPS"}
    assert meta["demo"] is True and meta["training"]["train"]["epochs"] == 2
    assert meta["metrics"]["dice_mean"] == pytest.approx(state["best_metric"])
    assert set(meta["metrics"]["dice"]) == {lab.name for lab in task.labels}
    model = bundle.build_model()
    assert model(torch.zeros(1, 1, 32, 32, 32)).shape == (1, 8, 32, 32, 32)

    renamed, _ = export_checkpoint(heart_checkpoint, tmp_path / "other.pt", model_id="heart-x", version="2.0",
                                   demo=False)
    assert load_bundle(renamed).meta["id"] == "heart-x" and load_bundle(renamed).meta["demo"] is False
    with pytest.raises(UserError, match="would overwrite its checkpoint"):
        export_checkpoint(heart_checkpoint, heart_checkpoint)


def test_validate_command_on_a_checkpoint(heart_checkpoint, heart_data, capsys):
    from training.core.cli import main

    assert main(["validate", "--checkpoint", str(heart_checkpoint), "--data", str(heart_data),
                 "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["case", "mean", *(lab.name for lab in get_task("whole-heart").labels)]
    assert [line.split()[0] for line in lines[1:]] == [f"ct_train_{1001 + i}" for i in range(4)] + ["mean"]


def test_fine_tuning_starts_from_the_bundle(heart_checkpoint, heart_data, tmp_path):
    bundle, _ = export_checkpoint(heart_checkpoint, tmp_path / "heart.pt")
    # lr 0: the fine-tuned weights are exactly the bundle's, although the config's seed would initialise others.
    config = tiny_config("whole-heart", heart_data, seed=7, init_from=str(bundle), optimizer={"lr": 0.0},
                         train={"epochs": 1})
    fit(config, tmp_path / "tuned")
    assert same_weights(load_checkpoint(tmp_path / "tuned" / "checkpoints" / "last.pt")["model"],
                        load_bundle(bundle).state_dict)
    other = tiny_config("whole-heart", heart_data, init_from=str(bundle), model={"network": "segresnet"})
    with pytest.raises(UserError, match="holds a basic_unet network, the config asks for segresnet"):
        fit(other, tmp_path / "other")
    wrong_task = tiny_config("spine", heart_data, init_from=str(bundle))
    with pytest.raises(UserError, match="is for task 'whole-heart', not 'spine'"):
        fit(wrong_task, tmp_path / "wrong")


def test_region_bundle_segments_with_the_predictor(dataset, tmp_path):
    root = dataset("brain-tumor", 3)
    config = tiny_config("brain-tumor", root, train={"epochs": 1}, data={"val_fraction": 0.34})
    fit(config, tmp_path / "run")
    path, _ = export_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", tmp_path / "tumor.pt")
    bundle = load_bundle(path)
    assert bundle.meta["output_kind"] == "regions"
    assert [r["name"] for r in bundle.meta["regions"]] == ["WT", "TC", "ET"]
    case = root / "BraTS20_Training_001"
    inputs = {role: case / f"BraTS20_Training_001_{role}.nii.gz" for role in ("flair", "t1", "t1ce", "t2")}
    result = Predictor(bundle, device="cpu").predict(inputs)
    assert set(np.unique(sitk.GetArrayFromImage(result.labels))) <= {0, 1, 2, 4}
    assert result.labels.GetSize() == sitk.ReadImage(str(inputs["t1ce"])).GetSize()
