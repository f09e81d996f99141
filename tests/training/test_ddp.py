"""DDP through torchrun: 2 gloo processes on the CPU reach the weights of 1 process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml
from monai.utils import set_determinism
from multimodalseg.tasks import get_task

from training.core.checkpoint import load_checkpoint
from training.core.config import TrainingConfig
from training.core.supervised import fit, make_network, network_spec

CONFIG = {
    "task": "whole-heart", "name": "ddp", "seed": 3,
    "data": {"spacing": [], "val_fraction": 0.25},  # 3 training cases, 1 validated by rank 0 alone
    "model": {"network": "basic_unet", "config": {"features": [4, 4, 8, 8, 16, 4]}},
    "loss": {"name": "dice_ce"},  # per-sample Dice (batch: false): the global mean is the mean of the ranks'
    "optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 0.0, "config": {"momentum": 0.9}},
    # Patches as large as the 32^3 phantoms and no augmentation: every rank sees exactly its cases.
    "augmentation": {"patch_size": [32, 32, 32], "samples_per_case": 1, "enabled": False},
    "train": {"epochs": 2, "batch_size": 2, "precision": "fp32", "grad_clip": 0.0, "patience": 0, "device": "cpu"},
    "logging": {"tensorboard": False, "progress": "never"},
}


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(heart_data, tmp_path):
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
         "-m", "training", "fit", "--config", str(config_path), "--data", str(heart_data),
         "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 2 epochs") == 1  # rank 0 alone reports

    single = TrainingConfig.from_dict({**CONFIG, "data": {**CONFIG["data"], "root": str(heart_data)}})
    fit(single, tmp_path / "single")

    ddp_state = load_checkpoint(tmp_path / "ddp" / "supervised" / "checkpoints" / "last.pt")
    one_state = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    assert ddp_state["epoch"] == one_state["epoch"] == 2
    for key, value in one_state["model"].items():
        torch.testing.assert_close(ddp_state["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    # The weights moved far more than that tolerance: the runs did not just keep one initialisation.
    set_determinism(seed=single.seed)
    initial = make_network(network_spec(single, get_task("whole-heart"))).state_dict()
    moved = max(float((one_state["model"][k] - initial[k]).abs().max()) for k in initial)
    assert moved > 1e-2
    rows = (tmp_path / "ddp" / "supervised" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # one header and one row per epoch: only rank 0 writes logs
    assert ddp_state["best_metric"] == pytest.approx(one_state["best_metric"], abs=1e-4)
    assert ddp_state["best_epoch"] == one_state["best_epoch"]
    ddp_loss = [float(r.split(",")[1]) for r in rows[1:]]
    one_loss = [float(r.split(",")[1]) for r in (tmp_path / "single" / "metrics.csv").read_text().splitlines()[1:]]
    assert ddp_loss == pytest.approx(one_loss, rel=1e-4)


def test_recipes_without_ddp_say_so_in_one_line(heart_data, tmp_path, monkeypatch, capsys):
    from training.core.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; refused before any process group starts
    code = main(["fit", "--config", "training/configs/whole-heart-cascade.yaml", "--data", str(heart_data),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "stage(s) localization, segmentation, refinement do not support torchrun" in err
