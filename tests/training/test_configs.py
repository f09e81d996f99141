"""Every shipped config: ``fit --dry-run`` checks it and its data and trains nothing; every supervised config trains
through ``python -m training fit`` on tiny phantoms (the cascade and spine recipes train in their own tests:
test_heart_cascade_training.py, test_spine_training.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import write_dataset
from multimodalseg.phantoms import make_case, write_case

from training.core.cli import main

CONFIG_DIR = Path(__file__).parents[2] / "training" / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Three small phantom cases per task, in each task's public layout."""
    root = tmp_path_factory.mktemp("phantoms")
    out = {task: write_dataset(task, root / task, 3) for task in ("brain-tumor", "petmr-brain")}
    for i in range(3):
        write_case(make_case("spine", 700 + i, shape=(24, 40, 40)), root / "spine", i + 1)
    out["spine"] = root / "spine"
    # whole heart: CT and MR, 1010-1012 (the cascade config validates on 1011 and 1012)
    for modality in ("ct", "mr"):
        write_dataset("whole-heart", root / "whole-heart", 3, modality=modality, first_index=10,
                      first_seed=10 if modality == "mr" else 0)
    out["whole-heart"] = root / "whole-heart"
    return out


def task_of(path: Path) -> str:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["task"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_dry_run_passes_for_every_shipped_config(path, phantoms, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["fit", "--config", str(path), "--data", str(phantoms[task_of(path)]), "--out", str(out),
                 "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = captured.out
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))["recipe"]["name"]
    assert text.startswith(f"recipe {recipe}: ") and "networks:" in text and " parameters" in text
    assert f"{phantoms[task_of(path)]}: layout " in text and "augmentation:" in text
    assert not out.exists()  # nothing trained, nothing written


def test_dry_run_refuses_a_bad_config_and_missing_data(phantoms, tmp_path, capsys):
    config = CONFIG_DIR / "brain-tumor.yaml"
    assert main(["fit", "--config", str(config), "--data", str(tmp_path / "none"), "--dry-run"]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["fit", "--config", str(config), "--data", str(phantoms["brain-tumor"]), "--dry-run",
                 "--set", "recipe.config.trainer=nope"]) == 2
    assert "unknown trainer 'nope'" in capsys.readouterr().err
    assert main(["fit", "--config", str(config), "--data", str(phantoms["brain-tumor"]), "--dry-run",
                 "--set", "recipe.name=nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err


# Tiny widths per network, so one epoch on 32^3 phantoms takes seconds.
TINY = {
    "dmfnet": ["model.config.channels=16", "model.config.stem_channels=8", "model.config.groups=4",
               "model.config.mie_channels=4"],
    "dual_uxnet": ["model.config.feature_size=6"],
    "basic_unet": ["model.config.features=[4, 4, 8, 8, 16, 4]"],
    "maunet": ["model.config.channels=[4, 8]"],
}
# The MI-Seg paper models (cin_unet, cin_unetr, cin_swinunetr) are built, and the CIN UNet trained through fit, in
# tests/training/test_mi_seg_configs.py.
SUPERVISED = [p for p in CONFIGS if yaml.safe_load(p.read_text(encoding="utf-8"))["recipe"]["name"] == "supervised"
              and yaml.safe_load(p.read_text(encoding="utf-8"))["model"]["network"] in TINY]
MI_SEG = [p for p in CONFIGS if str((yaml.safe_load(p.read_text(encoding="utf-8")).get("model") or {}).get(
    "network", "")).startswith("cin_")]


def test_mi_seg_configs_are_checked_in_their_own_test_file():
    names = {yaml.safe_load(p.read_text(encoding="utf-8"))["model"]["network"] for p in MI_SEG}
    assert names <= {"cin_unet", "cin_unetr", "cin_swinunetr"}
    text = (Path(__file__).parent / "test_mi_seg_configs.py").read_text(encoding="utf-8")
    assert MI_SEG and all(f'"{p.stem.split("whole-heart-mi-seg-")[1].split("-paper")[0]}"' in text for p in MI_SEG)


@pytest.mark.slow
@pytest.mark.parametrize("path", SUPERVISED, ids=lambda p: p.stem)
def test_every_supervised_config_trains_through_fit(path, phantoms, tmp_path, capsys):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    sets = ["train.epochs=1", "train.batch_size=1", "train.val_interval=1", "train.threads=1", "train.device=cpu",
            "augmentation.patch_size=[32, 32, 32]", "augmentation.samples_per_case=1", "data.spacing=[]",
            "data.val_fraction=0.34", "data.num_workers=0", "validation.roi_size=null",
            "logging.progress=never", "logging.tensorboard=false", *TINY[raw["model"]["network"]]]
    out = tmp_path / "run"
    code = main(["fit", "--config", str(path), "--data", str(phantoms[raw["task"]]), "--out", str(out),
                 *[a for s in sets for a in ("--set", s)]])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "done" and summary["stages"]["supervised"]["last_epoch"] == 1
    assert (out / "config.yaml").is_file() and (out / "supervised" / "metrics.csv").is_file()
    assert main(["export", "--run", str(out), "-o", str(tmp_path / "model.pt")]) == 0
    assert main(["check", "--run", str(out)]) == 0
