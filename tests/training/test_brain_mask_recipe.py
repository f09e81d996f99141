"""The ``brain-mask`` recipe end to end on a tiny bank: bank files, ``fit`` writing a brain-mask bundle that
inference loads, ``--dry-run``, and the recipe's refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from multimodalseg.inference.brain_mask import KIND, BrainMasker, load_brain_mask_model

from training.brain_tumor.brain_mask_bank import SEQUENCES, write_bank
from training.core.cli import main

CONFIG = "training/configs/brain-tumor-brain-mask.yaml"


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    root = tmp_path_factory.mktemp("bank")
    rows = write_bank(root / "train", 2, 0, whole_head_fraction=1.0)
    write_bank(root / "val", 1, 50000, held_out=True, whole_head_fraction=0.0)
    return root, rows


def test_bank_cases(bank):
    root, rows = bank
    assert [r["whole_head"] for r in rows] == [True, True]
    assert all(r["anatomy"] not in ("fsaverage", "fsaverage_xhemi", "training_seg_17") for r in rows)
    with np.load(root / "train" / rows[0]["file"]) as z:
        images, mask = z["images"], z["mask"]
        assert images.shape == (len(SEQUENCES), *mask.shape) and images.dtype == np.float16
        assert 0.05 < mask.mean() < 0.6 and set(np.unique(mask)) == {0, 1}
        assert np.count_nonzero(images[2]) > 1.5 * mask.sum()  # whole head: far more than the brain is non-zero
    with np.load(next((root / "val").glob("case_*.npz"))) as z:
        assert not bool(z["whole_head"]) and np.count_nonzero(z["images"][2]) <= 1.1 * z["mask"].sum()


def test_fit_writes_a_brain_mask_bundle(bank, tmp_path, capsys):
    root, _ = bank
    out = tmp_path / "run"
    code = main(["fit", "--config", CONFIG, "--data", str(root), "--out", str(out),
                 "--set", "recipe.config.iterations=2", "--set", "recipe.config.val_interval=1",
                 "--set", "recipe.config.patch_size=[32,32,32]", "--set", "recipe.config.features=[4,4,8,8,8,4]",
                 "--set", "train.threads=1"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    stage = summary["stages"]["brain_mask"]
    assert stage["status"] == "done" and stage["cases"] == 2 and 0.0 <= stage["best"]["dice"] <= 1.0
    assert (out / "brain_mask" / "metrics.csv").read_text().count("\n") == 3  # header + 2 iterations
    bundle = load_brain_mask_model(out / summary["bundle"])
    assert bundle.meta["kind"] == KIND and bundle.meta["network"]["config"]["features"] == [4, 4, 8, 8, 8, 4]
    masker = BrainMasker("always", out / summary["bundle"])
    with np.load(next((root / "val").glob("case_*.npz"))) as z:
        import SimpleITK as sitk

        raw = z["images"].astype(np.float32)
        reference = sitk.GetImageFromArray(raw[2])
        reference.SetSpacing([2.0] * 3)
    stripped, entry = masker.apply(raw, reference, 2)
    assert entry["applied"] and stripped.shape == raw.shape


def test_dry_run_and_refusals(bank, capsys):
    root, _ = bank
    assert main(["fit", "--config", CONFIG, "--data", str(root), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "recipe brain-mask" in plan and "2 train cases" in plan and "basic_unet" in plan
    assert main(["fit", "--config", CONFIG, "--data", str(root), "--dry-run", "--set", "task=spine"]) == 2
    assert "brain-tumor brain-mask model" in capsys.readouterr().err
    assert main(["fit", "--config", CONFIG, "--data", str(root), "--dry-run",
                 "--set", "recipe.config.patch_size=[30,32,32]"]) == 2
    assert "divisible by 16" in capsys.readouterr().err
