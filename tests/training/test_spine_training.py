"""The spine recipes through ``python -m training fit`` (``mcf``, ``fusion``): both bundles train, export and load
in the predictor / fusion runner; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg import io
from multimodalseg.bundles import load_bundle
from multimodalseg.catalog import fetch, find
from multimodalseg.inference.fusion import FusionRunner, fuse_case
from multimodalseg.inference.predictor import Predictor
from multimodalseg.phantoms import make_case, write_case

from training.core.cli import main
from training.spine.data import case_transform, choose_labelled, load_cases

MCF, FUSION = "training/configs/spine-mcf.yaml", "training/configs/spine-fusion.yaml"


def catalog_fetch(model_id: str):
    return fetch(find(model_id, "spine"))


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


def test_fused_input_mcf_fit_trains_on_the_fused_image_and_the_bundle_says_so(tmp_path):
    """The default spine-mcf.yaml: the frozen fusion bundle fuses each case once (cached), MCF takes 1 channel."""
    data = _dataset(tmp_path / "data", 2)
    run, cache = tmp_path / "mcf", tmp_path / "cache"
    assert fit(MCF, data, run, "recipe.config.mcf.iterations=2", "recipe.config.mcf.patch_size=[32, 32]",
               f"recipe.config.fusion_cache={cache}", "recipe.config.single_modality=false") == 0
    assert len(list(cache.glob("*.npy"))) == 2  # each case fused once, both modalities
    bundle = load_bundle(run / json.loads((run / "summary.json").read_text())["bundle"], task="spine")
    assert bundle.meta["preprocessing"]["input"] == "fused"
    assert bundle.meta["network"]["config"]["in_channels"] == 1
    assert bundle.meta["inference"]["plane"] == "sagittal"
    fusion = load_bundle(catalog_fetch("spine-fusion-demo"), task="spine")
    assert bundle.meta["fusion_model"]["sha256"] == fusion.sha256
    case = make_case("spine", 710, shape=(24, 40, 40), misregister=False)
    result = Predictor(bundle, "cpu").predict(case.images)
    assert result.report["spine"]["network_input"] == "fused" and "fused" in result.images


def test_channels_ablation_and_widths_come_from_the_config(tmp_path):
    data = _dataset(tmp_path / "data", 2)
    run = tmp_path / "mcf"
    assert fit(MCF, data, run, "recipe.config.mcf.iterations=1", "recipe.config.mcf.patch_size=[32, 32]",
               "recipe.config.input=channels", "recipe.config.plane=null",
               "recipe.config.network.unet_features=[4, 4, 8, 8, 16, 4]", "recipe.config.network.vnet_features=4") == 0
    bundle = load_bundle(run / json.loads((run / "summary.json").read_text())["bundle"], task="spine")
    config = bundle.meta["network"]["config"]
    assert bundle.meta["preprocessing"]["input"] == "channels" and config["in_channels"] == 2
    assert config["unet_features"] == [4, 4, 8, 8, 16, 4] and config["vnet_features"] == 4
    assert bundle.meta["inference"]["slice_axis"] == 0 and "fusion_model" not in bundle.meta
    assert not (run / "fused_cache").exists()


def test_paper_fusion_settings_pad_as_inference_and_count_epochs():
    from multimodalseg.nets.cddfuse import pad_slices

    from training.spine.fusion import FusionConfig, FusionSliceSampler
    from training.spine.fusion_losses import make_optimizers

    config = FusionConfig(batch=16, optimizer="adamw", weight_decay=0.025, epochs=100, pad_to=(64, 64),
                          patch_size=(64, 64), pad_mode="replicate", min_contrast=0.0)
    assert config.for_slices(40).iterations == 250  # 100 passes over 40 slices, 16 per batch
    rng = np.random.default_rng(0)
    ct, mr = rng.random((1, 20, 30), dtype=np.float32), rng.random((1, 20, 30), dtype=np.float32)
    got_ct, got_mr = FusionSliceSampler([(ct, mr)], config, np.random.default_rng(0)).batch(1)
    expected, _ = pad_slices(torch.from_numpy(ct)[None], (64, 64), "replicate")  # what FusionRunner does
    np.testing.assert_array_equal(got_ct[0, 0].numpy(), expected[0, 0].numpy())
    from multimodalseg.nets.cddfuse import DEMO_CONFIG, CDDFuse

    optimizers = make_optimizers(CDDFuse(2, 1, 1, **DEMO_CONFIG), 1e-4, 0.025, decoupled=True)
    assert all(isinstance(o, torch.optim.AdamW) and o.defaults["weight_decay"] == 0.025
               for o in optimizers.values())
    with pytest.raises(ValueError, match="pad_to"):
        FusionConfig(pad_to=(32, 32), patch_size=(64, 64))
