"""Segmenting with missing sequences: the spec's optional roles, the bundle's ``missing_inputs``, the refusal of a
bundle without it, and the training side's modality dropout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg.bundles import save_bundle
from multimodalseg.nets import build_network
from multimodalseg.tasks import get_task

from training.core.modality_dropout import STAND_IN, RandModalityDropoutd, droppable_roles

TASK = get_task("brain-tumor")
CONFIG = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "features": (4, 4, 8, 8, 16, 4)}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))


def _bundle(folder: Path, missing: dict[str, str] | None) -> Path:
    torch.manual_seed(0)
    net = build_network("basic_unet", **CONFIG)
    pre = {"spacing": None, "patch_size": [32, 32, 32], "roles": list(TASK.roles)}
    if missing is not None:
        pre["missing_inputs"] = missing
    meta = {"id": "tiny-bt", "version": "0", "task": TASK.id, "network": {"name": "basic_unet", "config": CONFIG},
            "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in TASK.labels],
            "output_kind": "regions", "regions": [{"name": r.name, "labels": list(r.labels)} for r in TASK.regions],
            "preprocessing": pre, "demo": True}
    path = folder / ("tiny-dropout.pt" if missing else "tiny.pt")
    save_bundle(path, net.state_dict(), meta)
    return path


@pytest.fixture
def case(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    folder = tmp_path / "in"
    folder.mkdir()
    paths = {}
    for i, role in enumerate(TASK.roles):
        arr = np.zeros((24, 32, 32), np.float32)
        arr[4:20, 6:26, 6:26] = rng.normal(100 + 20 * i, 10, (16, 20, 20))
        paths[role] = folder / f"{role}.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(paths[role]))
    return paths


def _args(case, roles, out, bundle):
    args = ["segment", "--task", TASK.id, "--model", str(bundle), "-o", str(out), "--report", str(out) + ".json",
            "--progress", "json"]
    for role in roles:
        args += ["-i", f"{role}={case[role]}"]
    return args


def test_spec_marks_flair_t1_t2_optional_and_t1ce_required():
    required = {i.role: i.required for i in TASK.inputs}
    assert required == {"flair": False, "t1": False, "t1ce": True, "t2": False}


def test_bundle_without_missing_inputs_refuses_naming_the_roles(cli, case, tmp_path):
    bundle = _bundle(tmp_path, None)
    out = tmp_path / "seg.nii.gz"
    result = cli(*_args(case, ["t1ce", "flair"], out, bundle))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "t1, t2 inputs" in lines[0] and "not trained to run without them" in lines[0]
    assert not out.exists()


def test_reference_role_stays_required(cli, case, tmp_path):
    bundle = _bundle(tmp_path, {r: STAND_IN for r in ("flair", "t1", "t2")})
    result = cli(*_args(case, ["flair", "t1", "t2"], tmp_path / "seg.nii.gz", bundle))
    assert result.code == 2 and "t1ce" in result.err


def test_missing_inputs_run_with_zeros_named_in_report_and_warning(cli, case, tmp_path):
    bundle = _bundle(tmp_path, {r: STAND_IN for r in ("flair", "t1", "t2")})
    out = tmp_path / "seg.nii.gz"
    result = cli(*_args(case, ["t1ce", "flair"], out, bundle))
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.out.splitlines() if line.startswith("{")]
    warnings = [e["message"] for e in events if e.get("event") == "warning"]
    assert any("missing inputs t1, t2" in w and "zeros" in w for w in warnings), warnings
    report = json.loads(Path(str(out) + ".json").read_text())
    assert report["missing_inputs"] == {"t1": "zeros", "t2": "zeros"}
    assert set(report["inputs"]) == {"t1ce", "flair"}

    # a missing input is exactly an all-zero channel after normalisation: same labels as zero images given
    zeros = {}
    for role in ("t1", "t2"):
        image = sitk.ReadImage(str(case[role]))
        zeros[role] = tmp_path / f"zero_{role}.nii.gz"
        sitk.WriteImage(sitk.Image(image.GetSize(), sitk.sitkFloat32), str(zeros[role]))
    out2 = tmp_path / "seg_zeros.nii.gz"
    result = cli(*_args({**case, **zeros}, TASK.roles, out2, bundle))
    assert result.code == 0, result.err
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(out2))))


def test_full_input_set_reports_nothing_missing(cli, case, tmp_path):
    out = tmp_path / "seg.nii.gz"
    assert cli(*_args(case, TASK.roles, out, _bundle(tmp_path, None))).code == 0
    assert json.loads(Path(str(out) + ".json").read_text())["missing_inputs"] == {}


def test_droppable_roles_default_and_validation():
    assert droppable_roles(TASK, None) == ("flair", "t1", "t2")
    assert droppable_roles(TASK, ["t2"]) == ("t2",)
    with pytest.raises(ValueError, match="t1ce"):
        droppable_roles(TASK, ["t1ce"])


def test_modality_dropout_zeroes_only_droppable_channels_and_never_all():
    roles = TASK.roles
    t = RandModalityDropoutd("image", roles, ("flair", "t1", "t2"), prob=1.0, drop_prob=1.0)
    t.set_random_state(0)
    seen = set()
    ref = roles.index("t1ce")
    for _ in range(40):
        image = np.ones((4, 3, 3, 3), np.float32)
        out = t({"image": image})["image"]
        assert out[ref].min() == 1.0  # the reference is never dropped
        dropped = tuple(c for c in range(4) if out[c].max() == 0)
        assert dropped and ref not in dropped
        seen.add(dropped)
        assert image.min() == 1.0  # the input is not changed in place
    assert (roles.index("flair"), roles.index("t1"), roles.index("t2")) in seen  # drop_prob 1: all three

    every = RandModalityDropoutd("image", ("a", "b"), ("a", "b"), prob=1.0, drop_prob=1.0)
    every.set_random_state(1)
    for _ in range(10):
        out = every({"image": torch.ones(2, 2, 2, 2)})["image"]
        assert int((out.flatten(1).amax(1) > 0).sum()) == 1  # one input always survives


def test_modality_dropout_keep_sets_keep_t1ce_and_flair_alone_at_their_rate():
    """``keep_sets=[[t1ce, flair]]`` with ``keep_set_prob`` 0.5: about half the drops leave exactly T1ce + FLAIR;
    without keep sets that subset comes from the independent draws only (1 in 8 at drop_prob 0.5)."""
    roles = TASK.roles
    alone = tuple(sorted(roles.index(r) for r in ("t1", "t2")))

    def rate(**kwargs) -> float:
        t = RandModalityDropoutd("image", roles, ("flair", "t1", "t2"), prob=1.0, drop_prob=0.5, **kwargs)
        t.set_random_state(0)
        hits = 0
        for _ in range(400):
            out = t({"image": np.ones((4, 2, 2, 2), np.float32)})["image"]
            hits += tuple(c for c in range(4) if out[c].max() == 0) == alone
        return hits / 400

    assert 0.5 <= rate(keep_sets=[["t1ce", "flair"]], keep_set_prob=0.5) <= 0.68  # 0.5 + 0.5 x 1/7
    assert rate() <= 0.22
    with pytest.raises(ValueError, match="keep_sets"):
        RandModalityDropoutd("image", roles, ("flair", "t1", "t2"), keep_sets=[["t1ce", "dwi"]])
    with pytest.raises(ValueError, match="keep_sets"):  # keeping every droppable role drops nothing
        RandModalityDropoutd("image", roles, ("flair", "t1", "t2"), keep_sets=[["flair", "t1", "t2", "t1ce"]])


def test_modality_dropout_prob_zero_is_identity():
    t = RandModalityDropoutd("image", TASK.roles, ("flair", "t1", "t2"), prob=0.0)
    image = np.random.default_rng(0).random((4, 3, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(t({"image": image})["image"], image)


def test_config_with_dropout_puts_the_transform_in_training_and_the_roles_in_the_bundle():
    from training.core.config import load_config
    from training.core.export import bundle_meta
    from training.core.transforms import train_transforms

    root = Path(__file__).resolve().parents[2] / "training" / "configs" / "brain-tumor.yaml"
    off = load_config(root, ["augmentation.modality_dropout=null"])
    on = load_config(root, ["augmentation.modality_dropout={prob: 0.5, drop_prob: 0.5}"])
    kinds = [type(t).__name__ for t in train_transforms(on, TASK).transforms]
    assert "RandModalityDropoutd" in kinds
    assert "RandModalityDropoutd" not in [type(t).__name__ for t in train_transforms(off, TASK).transforms]
    network = {"name": "dmfnet", "config": {}}
    assert bundle_meta(on, TASK, network, {})["preprocessing"]["missing_inputs"] == {
        "flair": "zeros", "t1": "zeros", "t2": "zeros"}
    assert "missing_inputs" not in bundle_meta(off, TASK, network, {})["preprocessing"]
