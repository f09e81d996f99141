"""``python -m training.spine``: both bundles train, export and load in the predictor / fusion runner; bad input."""

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

from training.spine import main
from training.spine_data import case_transform, choose_labelled, load_cases


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

    mcf = tmp_path / "mcf.pt"
    assert main(["--threads", "1", "mcf", "--data", str(data), "--out", str(mcf), "--iterations", "3",
                 "--patch", "32", "--summary", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert len(summary["labelled_cases"]) == 1 and len(summary["unlabelled_cases"]) == 2
    bundle = load_bundle(mcf, task="spine")
    assert bundle.meta["inference"]["members"] == ["unet", "vnet"] and bundle.meta["kind"] == "segmentation"
    case = make_case("spine", 710, shape=(24, 40, 40), misregister=False)
    result = Predictor(bundle, "cpu", report_options={"fusion": False}).predict(case.images)
    assert io.same_geometry(result.labels, case.images["ct"]) and "disagreement" in result.images

    fusion = tmp_path / "fusion.pt"
    assert main(["--threads", "1", "fusion", "--data", str(data), "--out", str(fusion), "--iterations", "3",
                 "--batch", "2", "--patch", "32"]) == 0
    capsys.readouterr()
    runner = FusionRunner(load_bundle(fusion, task="spine"), "cpu", pad=False)  # 512x512 padding: ~50x slower
    fused = fuse_case(runner, case.images["ct"], case.images["mr"], metrics=False).fused
    assert io.same_geometry(fused, case.images["ct"]) and np.ptp(sitk.GetArrayFromImage(fused)) > 0


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["mcf", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "m.pt")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["fusion", "--data", str(tmp_path), "--out", str(tmp_path / "m.bin")]) == 2
    assert "must end in .pt" in capsys.readouterr().err
    data = _dataset(tmp_path / "data", 1)
    (data / "case_001" / "label.nii.gz").unlink()
    assert main(["mcf", "--data", str(data), "--out", str(tmp_path / "m.pt"), "--iterations", "1"]) == 2
    assert "no labelled case" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
