"""``multimodalseg demo`` and batch discovery over the phantom writers' public layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg import catalog
from multimodalseg.bundles import save_bundle
from multimodalseg.inference.batch import find_cases
from multimodalseg.nets import register_network
from multimodalseg.tasks import get_task

SPINE = get_task("spine")


class BoneNet(torch.nn.Module):
    """TEST network: vertebra where the normalised CT (HU / 1000, channel 0) is above ``threshold`` (1x1x1 conv)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *, threshold: float = 0.15) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(in_channels, out_channels, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.fill_(-100.0)
            self.conv.bias[0] = 0.0
            self.conv.weight[1, 0] = 100.0
            self.conv.bias[1] = -100.0 * threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


register_network("test_bone_threshold", f"{__name__}:BoneNet")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(catalog, "shipped_catalog", lambda: tmp_path / "shipped" / "catalog.json")
    return tmp_path / "home"


def test_demo_without_models_says_how_to_get_one(cli, tmp_path):
    r = cli("demo", "--out", tmp_path / "demo")
    assert r.code == 2
    assert "no model for tasks petmr-brain, brain-tumor, whole-heart, spine; train one" in r.err
    assert not (tmp_path / "demo").exists()


def test_demo_segments_and_scores_a_phantom(cli, tmp_path, capsys):
    config = {"spatial_dims": 3, "in_channels": 2, "out_channels": 3}
    meta = {"id": "spine-bone-test", "version": "1", "task": "spine", "demo": True,
            "network": {"name": "test_bone_threshold", "config": config},
            "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in SPINE.labels],
            "preprocessing": {"spacing": None, "patch_size": [64, 64, 64]}}
    save_bundle(tmp_path / "b.pt", BoneNet(**config).state_dict(), meta)
    assert cli("models", "import", tmp_path / "b.pt").code == 0
    out = tmp_path / "demo"
    r = cli("demo", "--out", out, "--json", "--device", "cpu")
    assert r.code == 0, r.err
    rows = {row["task"]: row for row in json.loads(r.out)["tasks"]}
    assert {k: v["status"] for k, v in rows.items()} == {"petmr-brain": "no model", "brain-tumor": "no model",
                                                         "whole-heart": "no model", "spine": "ok"}
    spine = rows["spine"]
    assert spine["model"] == "spine-bone-test" and spine["demo_model"] is True
    pred = sitk.GetArrayFromImage(sitk.ReadImage(spine["outputs"]["labels"]))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(spine["outputs"]["truth"]))
    vertebra = 2 * ((pred == 1) & (truth == 1)).sum() / ((pred == 1).sum() + (truth == 1).sum())
    assert spine["dice"]["vertebra"] == pytest.approx(vertebra, abs=1e-6)
    assert vertebra > 0.8  # thresholding bone finds the phantom's vertebrae
    assert spine["dice"]["intervertebral disc"] == 0.0  # the test network never predicts discs
    assert spine["mean_dice"] == pytest.approx((vertebra + 0.0) / 2, abs=1e-6)
    for key in ("overlay", "overlay_truth"):
        assert spine["outputs"][key].endswith(".png") and (out / "spine" / f"{key}.png").is_file()
    from multimodalseg.cli.demo_cmd import _print_table

    _print_table(list(rows.values()), out)
    table = capsys.readouterr()
    assert "spine-bone-test 1" in table.out and f"{spine['mean_dice']:.3f}" in table.out
    assert table.out.count("(no model)") == 3 and "trained on synthetic data" in table.err


@pytest.mark.parametrize("task_id, modality", [("brain-tumor", None), ("whole-heart", "mr"), ("petmr-brain", None),
                                                ("spine", None)])
def test_batch_finds_cases_in_the_phantom_layouts(tmp_path, task_id, modality):
    from multimodalseg.phantoms import make_case
    from multimodalseg.phantoms.layouts import write_case

    task = get_task(task_id)
    for index in (1, 2):
        write_case(make_case(task_id, index, modality=modality, shape=(24, 24, 24)), tmp_path, index)
    cases = find_cases(task, tmp_path)
    assert len(cases) == 2 and all(c.problem is None for c in cases)
    assert all(set(c.inputs) == set(task.roles) for c in cases)
    assert [c.modality for c in cases] == [modality, modality]
    for c in cases:
        for role, path in c.inputs.items():
            assert path.is_file() and np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all(), role
