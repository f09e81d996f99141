"""The spine recipes through ``python -m training fit`` (``mcf``, ``fusion``): both bundles train, export and load
in the predictor / fusion runner; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg import io
from multimodalseg.bundles import load_bundle
from multimodalseg.inference.fusion import FusionRunner, fuse_case
from multimodalseg.inference.predictor import Predictor
from multimodalseg.phantoms import make_case, write_case

from training.core.cli import main
from training.spine.data import case_transform, choose_labelled, load_cases

MCF, FUSION = "training/configs/spine-mcf.yaml", "training/configs/spine-fusion.yaml"


def fit(config: str, data, out, *sets: str) -> int:
    return main(["fit", "--config", config, "--data", str(data), "--out", str(out),
                 *[a for s in ("train.threads=1", *sets) for a in ("--set", s)]])


def _dataset(root, n: int = 3):
    for i in range(n):
        write_case(make_case("spine", 700 + i, shape=(24, 40, 40)), root, i + 1)
    return root


@pytest.mark.slow
def test_round_trip_mcf_and_fusion_bundles(tmp_path, capsys):
    data = _dataset(tmp_path / "data")
    assert case_transform(data / "case_001") is not None  # the phantom's MR->CT transform is used
    cases = load_cases(data, None)
    assert all(c.image.shape[0] == 2 and c.label is not None for c in cases)
    assert choose_labelled(cases, 0.2) == choose_labelled(cases, 0.2) and len(choose_labelled(cases, 0.2)) == 1

    run = tmp_path / "mcf"
    assert fit(MCF, data, run, "recipe.config.mcf.iterations=3", "recipe.config.mcf.patch_size=[32, 32]",
               "recipe.config.compare_unet=true", f"recipe.config.val_data={data}") == 0
    summary = json.loads((run / "summary.json").read_text())
    stage = summary["stages"]["mcf"]
    assert len(stage["labelled_cases"]) == 1 and len(stage["unlabelled_cases"]) == 2
    assert set(summary["stages"]) == {"mcf", "unet_alone"} and summary["stages"]["unet_alone"]["dice"]
    assert len((run / "mcf" / "metrics.csv").read_text().splitlines()) == 1 + 3
    mcf = tmp_path / "mcf.pt"
    assert main(["export", "--run", str(run), "-o", str(mcf)]) == 0
    bundle = load_bundle(mcf, task="spine")
    assert bundle.meta["training"]["unet_alone_dice"] == summary["stages"]["unet_alone"]["dice"]
    assert bundle.meta["inference"]["members"] == ["unet", "vnet"] and bundle.meta["kind"] == "segmentation"
    case = make_case("spine", 710, shape=(24, 40, 40), misregister=False)
    result = Predictor(bundle, "cpu", report_options={"fusion": False}).predict(case.images)
    assert io.same_geometry(result.labels, case.images["ct"]) and "disagreement" in result.images

    run = tmp_path / "fusion"
    assert fit(FUSION, data, run, "recipe.config.fusion.iterations=3", "recipe.config.fusion.batch=2",
               "recipe.config.fusion.patch_size=[32, 32]") == 0
    capsys.readouterr()
    fusion = run / json.loads((run / "summary.json").read_text())["bundle"]
    assert main(["validate", "--run", str(run), "--data", str(data)]) == 2  # a fusion model has no labels
    assert "no labels to validate" in capsys.readouterr().err
    runner = FusionRunner(load_bundle(fusion, task="spine"), "cpu", pad=False)  # 512x512 padding: ~50x slower
    fused = fuse_case(runner, case.images["ct"], case.images["mr"], metrics=False).fused
    assert io.same_geometry(fused, case.images["ct"]) and np.ptp(sitk.GetArrayFromImage(fused)) > 0


def test_bad_input_exits_2(tmp_path, capsys):
    assert fit(MCF, tmp_path / "none", tmp_path / "a") == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert fit(FUSION, tmp_path, tmp_path / "b", "recipe.config.fusion.patch_size=[0, 32]") == 2
    assert "recipe.config.fusion" in capsys.readouterr().err
    assert fit(FUSION, tmp_path, tmp_path / "b", "recipe.config.fusion.patch_size=[32]") == 2
    assert "recipe.config.fusion.patch_size" in capsys.readouterr().err
    data = _dataset(tmp_path / "data", 1)
    (data / "case_001" / "label.nii.gz").unlink()
    assert fit(MCF, data, tmp_path / "c", "recipe.config.mcf.iterations=1") == 2
    assert "no labelled case" in capsys.readouterr().err
    assert not (tmp_path / "c" / "summary.json").exists()
