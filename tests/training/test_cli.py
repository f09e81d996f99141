"""``python -m training``: bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.core.cli import main

CONFIG = Path(__file__).parents[2] / "training" / "configs" / "whole-heart.yaml"
TINY_UNET = ("--set", "model.network=basic_unet", "--set", "model.config={features: [4, 4, 8, 8, 16, 4]}")


@pytest.fixture
def run(capsys):
    def call(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def one_line_error(err: str, *fragments: str) -> None:
    assert err.count("\n") == 1 and err.startswith("training "), err
    for fragment in fragments:
        assert fragment in err, err


def test_missing_data_folder(run, tmp_path):
    code, _, err = run("fit", "--config", CONFIG, "--data", tmp_path / "nope", "--out", tmp_path / "run")
    assert code == 2
    one_line_error(err, f"{tmp_path / 'nope'}: dataset folder not found")
    assert not (tmp_path / "run").exists()


def test_no_data_folder_at_all(run, tmp_path):
    code, _, err = run("fit", "--config", CONFIG, "--out", tmp_path / "run")
    assert code == 2
    one_line_error(err, "no dataset folder: give --data DIR")


def test_unknown_task(run, tmp_path):
    code, _, err = run("check", "--task", "liver", "--data", tmp_path)
    assert code == 2
    one_line_error(err, "unknown task 'liver'", "brain-tumor")
    code, _, err = run("fit", "--config", CONFIG, "--set", "task=liver", "--data", tmp_path)
    assert code == 2
    one_line_error(err, "unknown task 'liver'")


def test_bad_config_key_in_set(run, tmp_path):
    code, _, err = run("fit", "--config", CONFIG, "--set", "train.epoch=3", "--data", tmp_path)
    assert code == 2
    one_line_error(err, "--set: unknown config key 'train.epoch'", "epochs")


def test_bad_yaml_and_missing_config(run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: whole-heart\ntrain: {epochs: 3\n")
    code, _, err = run("fit", "--config", bad, "--data", tmp_path)
    assert code == 2
    one_line_error(err, f"{bad}: invalid YAML at line")
    code, _, err = run("fit", "--config", tmp_path / "none.yaml", "--data", tmp_path)
    assert code == 2
    one_line_error(err, "config file not found")


@pytest.mark.parametrize(("override", "message"), [
    ("model.network=no_such_net", "unknown network 'no_such_net'"),
    ("augmentation.patch_size=[8,8,8]", "the network cannot take patches of [8, 8, 8] voxels"),
    ("train.batch_size=64", "too few for a batch of 64"),
    ("optimizer.name=lbfgs2", "unknown optimizer 'lbfgs2'"),
    ("loss.name=hinge", "unknown loss 'hinge'"),
])
def test_config_values_that_cannot_work(run, heart_data, tmp_path, override, message):
    code, _, err = run("fit", "--config", CONFIG, "--data", heart_data, "--out", tmp_path / "run",
                       "--set", "data.spacing=[]", *TINY_UNET,
                       "--set", "augmentation.patch_size=[32,32,32]", "--set", override)
    assert code == 2
    one_line_error(err, message)


def test_export_and_validate_bad_files(run, tmp_path):
    code, _, err = run("export", "--checkpoint", tmp_path / "missing.pt", "-o", tmp_path / "b.pt")
    assert code == 2
    one_line_error(err, "checkpoint not found")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = run("export", "--checkpoint", junk, "-o", tmp_path / "b.pt")
    assert code == 2
    one_line_error(err, f"{junk}: checkpoint cannot be read")
    code, _, err = run("export", "--checkpoint", junk, "-o", tmp_path / "b.nii.gz")
    assert code == 2
    one_line_error(err, "must end in .pt")
    code, _, err = run("validate", "--bundle", tmp_path / "nope.pt", "--data", tmp_path)
    assert code == 2
    one_line_error(err, "model bundle not found")
    assert not (tmp_path / "b.pt").exists()


def test_resume_without_checkpoint(run, heart_data, tmp_path):
    code, _, err = run("fit", "--config", CONFIG, "--data", heart_data, "--out", tmp_path / "run",
                       "--set", "data.spacing=[]", *TINY_UNET,
                       "--set", "augmentation.patch_size=[32,32,32]", "--resume")
    assert code == 2
    one_line_error(err, "--resume: no run to continue")


def test_module_entry_point_as_a_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "training", "check", "--task", "spine", "--data", tmp_path / "x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    one_line_error(proc.stderr, "dataset folder not found")
