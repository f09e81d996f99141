"""The real-image benchmark's own logic (benchmarks/real_images.py) on tiny data; the checks that need the
downloaded images skip when tools/fetch_real_images.py has not been run."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ri = _load("real_images", ROOT / "benchmarks/real_images.py")
fetch = _load("fetch_real_images", ROOT / "tools/fetch_real_images.py")


def test_dice_and_lesion_scoring_use_the_whole_tumour_region():
    task = get_task("brain-tumor")
    pred = np.zeros((4, 4, 4), np.uint8)
    pred[0, :2] = 2  # ED
    pred[1, :2] = 4  # ET
    ref = np.zeros_like(pred)
    ref[:2, :2] = 1  # the lesion mask covers both
    assert ri.score("lesion", pred, ref, task)["dice"] == {"WT": 1.0}
    ref2 = np.zeros_like(pred)
    ref2[1, :2] = 1  # aurora: 1 oedema, 2 lesion
    ref2[0, :2] = 2
    out = ri.score("aurora", pred, ref2, task)
    assert out["dice"] == {"WT": 1.0, "TC": 0.0}  # TC (NCR + ET) lies where the reference has oedema
    assert ri.dice(np.zeros(3, bool), np.zeros(3, bool)) is None


def test_aseg_scores_only_task_labels_present_in_the_reference():
    task = get_task("petmr-brain")
    ref = np.zeros((6, 6, 6), np.int64)
    ref[:2] = 17  # Left-Hippocampus
    ref[2:4] = 1035  # an aparc+aseg cortical parcel: a FreeSurfer value the task table has not
    pred = np.zeros_like(ref)
    pred[:1] = 17
    out = ri.score("aseg", pred, ref, task)
    assert out["dice"] == {"Left-Hippocampus": pytest.approx(2 / 3, abs=1e-4)}
    assert out["n_scored"] == 1
    shown = ri.display_reference("aseg", ref, task)
    assert set(np.unique(shown)) == {0, 17}


def test_aal_mapping_and_vertebra_classes():
    task = get_task("petmr-brain")
    ref = np.zeros((4, 4, 4), np.int64)
    ref[0] = 77  # AAL Thalamus_L
    pred = np.zeros_like(ref)
    pred[0] = 10  # aseg Left-Thalamus
    out = ri.score("aal-nuclei", pred, ref, task)
    assert out["dice"]["Left-Thalamus"] == 1.0 and out["n_scored"] == 1  # the 11 absent nuclei are not scored
    vert = np.zeros((4, 4, 4), np.int64)
    vert[0], vert[1] = 22, 105
    spine = np.zeros_like(vert)
    spine[0] = 1
    out = ri.score("vertebra", spine, vert, get_task("spine"))
    assert out["dice"] == {"vertebra": 1.0, "intervertebral disc": 0.0}


def test_missing_required_roles_get_zero_stand_ins_and_optional_ones_are_left_out(tmp_path):
    task = get_task("brain-tumor")
    given = {"t1ce": "x.nrrd"}
    assert ri.plan_inputs(task, given)[1] == [r for r in task.roles if r != "t1ce" and
                                              next(i for i in task.inputs if i.role == r).required]
    optional = dataclasses.replace(task, inputs=tuple(dataclasses.replace(i, required=i.role == "t1ce")
                                                      for i in task.inputs))
    assert ri.plan_inputs(optional, given) == (given, [])
    image = sitk.Image([5, 6, 7], sitk.sitkInt16)
    image.SetSpacing((0.5, 1, 2))
    sitk.WriteImage(image, str(tmp_path / "a.nii.gz"))
    zero = sitk.ReadImage(str(ri.zero_like(str(tmp_path / "a.nii.gz"), tmp_path / "z.nii.gz")))
    assert zero.GetSize() == (5, 6, 7) and zero.GetSpacing() == (0.5, 1, 2)
    assert not sitk.GetArrayViewFromImage(zero).any()


def test_readme_block_is_inserted_then_replaced():
    text = "## Models\n\n| table |\n\n### Brain tumour\n\nrest\n"
    once = ri.replace_block(text, "### Real images\n\nA\n")
    assert once.index(ri.START) < once.index("### Brain tumour") and "A\n" in once
    twice = ri.replace_block(once, "### Real images\n\nB\n")
    assert "A\n" not in twice and twice.count(ri.START) == 1 and "B\n" in twice


def test_table_says_refused_and_skipped():
    rows = [{"case": "c", "task": "petmr-brain", "inputs": ["pet", "t1"], "model": "m 0.1.0", "rc": 2,
             "wall_s": 3.0, "error": "bundle label table differs", "stand_ins": {}}]
    md = ri.markdown(rows, [{"id": "pyradiomics", "skipped": "offline"}])
    assert "| refused |" in md and "error: bundle label table differs" in md and "| skipped |" in md


def test_table_says_when_the_skull_was_stripped_first():
    strip = {"mode": "auto", "applied": True, "model": "brain-mask-demo", "brain_ml": 1842.0, "nonzero_ml": 6137.0}
    finding = {"stage": "input", "check": "skull_stripped", "role": "t1ce", "volume_ml": 4120.0}
    row = {"case": "c", "task": "brain-tumor", "inputs": ["t1ce"], "model": "m 0.1.0", "rc": 0, "wall_s": 3.0,
           "error": None, "stand_ins": {}, "regions_ml": {"WT": 14.2}, "skull_strip": strip,
           "quality": {"ok": False, "findings": [finding]}}
    md = ri.markdown([row], [])
    assert "skull-stripped first (brain-mask-demo: brain 1842 mL of 6137 mL non-zero)" in md
    assert "quality warnings: whole head (t1ce)" in md
    assert "skull-stripped first" not in ri.markdown([{**row, "skull_strip": {**strip, "applied": False}}], [])


@pytest.mark.slow
def test_one_case_end_to_end(tmp_path):
    """A synthetic heart CT of the anatomy held out of the demo's training, as a case without labels: the CLI
    run, its report (plausible volumes) and an overlay PNG."""
    from multimodalseg.synthesis import load_anatomy, make_synth_case
    from multimodalseg.synthesis.anatomy import HELD_OUT

    held = tuple(m for m in load_anatomy("whole-heart") if m.name in HELD_OUT["heart"])
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(make_synth_case("whole-heart", 9101, anatomy=held, modality="ct").images["image"], str(path))
    case = {"id": "phantom", "task": "whole-heart", "inputs": {"image": str(path)}, "reference": None,
            "scoring": "none", "source": "test", "notes": ""}
    model = ri.segmentation_models()["whole-heart"][0]
    (row,) = ri.benchmark_case(case, [model], tmp_path / "runs", tmp_path / "img", timeout=600)
    assert row["rc"] == 0, row["error"]
    assert row["quality"]["ok"] and row["volumes_ml"]["LV"] > 0
    assert "--modality ct" in row["command"] and row["command"].startswith("multimodalseg segment")
    assert (tmp_path / "img/real-phantom.png").stat().st_size < 100_000


CACHE = fetch.DEFAULT_CACHE


def _fetched_cases() -> dict[str, dict]:
    """id -> case of the fetched cases (none before tools/fetch_real_images.py has run)."""
    if not (CACHE / "cases.json").exists():
        return {}
    return {c["id"]: c for c in json.loads((CACHE / "cases.json").read_text())["cases"] if "skipped" not in c}


@pytest.mark.skipif(not (CACHE / "cases.json").exists(), reason=f"run tools/fetch_real_images.py first ({CACHE})")
def test_fetched_cases_and_the_aal_names():
    cases = _fetched_cases()
    for case in cases.values():
        assert all(Path(p).exists() for p in case["inputs"].values())
    if "colin27" in cases and cases["colin27"]["reference"]:
        lines = (Path(cases["colin27"]["reference"]).parent / "aal.nii.txt").read_text().splitlines()
        names = dict(line.split()[:2] for line in lines if line.strip())
        aseg = {lab.value: lab.name for lab in get_task("petmr-brain").labels}
        for aal, value in ri.AAL_TO_ASEG.items():
            structure, side = names[str(aal)].rsplit("_", 1)
            assert aseg[value] == f"{'Left' if side == 'L' else 'Right'}-{structure}"


# The shipped petmr-brain model on the real fsaverage T1 (FreeSurfer's LIA) and Colin27 T1 (NIfTI RAS), each with the
# SPM PET template, scored as real_images.py does: mean Dice over the task's aseg labels present in fsaverage's aseg,
# and over the 12 AAL deep grey nuclei of Colin27. Still far below the 0.60 (README).
PETMR_REAL_MIN = {
    # measured 0.503 (0.8.2 with its default mirrored pass; 0.8.1: 0.477, 0.8.0: 0.465, 0.7.0: 0.433, 0.5.0: 0.357);
    # 0.4.0 before the inputs were brought to the training orientation: 0.148
    "fsaverage": (0.45, 40),
    # measured 0.600 (0.8.2 with its mirrored pass; 0.8.1: 0.541, 0.8.0: 0.515, 0.7.0: 0.464, 0.5.0: 0.290); 0.000
    # before (left and right swapped, the brain rotated)
    "colin27": (0.55, 12),
}


@pytest.mark.slow
@pytest.mark.parametrize("case_id", sorted(PETMR_REAL_MIN))
def test_petmr_model_on_real_t1s(case_id):
    import torch
    from multimodalseg import io
    from multimodalseg.inference.predictor import Predictor

    if case_id not in _fetched_cases():
        pytest.skip(f"run tools/fetch_real_images.py first ({CACHE})")
    torch.set_num_threads(1)
    case, task = _fetched_cases()[case_id], get_task("petmr-brain")
    labels = Predictor.from_model(task.id, device="cpu").predict(
        {role: io.read_image(path) for role, path in case["inputs"].items()}).labels
    ref = sitk.GetArrayFromImage(ri.on_grid(io.read_image(case["reference"]), labels)).astype(np.int64)
    result = ri.score(case["scoring"], sitk.GetArrayFromImage(labels).astype(np.int64), ref, task)
    print(f"{case_id}: mean Dice {result['dice_mean']} over {result['n_scored']} labels")
    minimum, n_scored = PETMR_REAL_MIN[case_id]
    assert result["n_scored"] >= n_scored and result["dice_mean"] >= minimum


def test_a_candidate_bundle_replaces_the_catalogs_models_of_its_task(tmp_path):
    models = ri.segmentation_models()
    shipped = models["whole-heart"][0]
    path = ROOT / "MultimodalSeg/multimodalseg/models" / shipped["file"]
    out = ri.with_candidates(models, [f"whole-heart={path}"])
    assert out["whole-heart"] == [{"id": shipped["id"], "version": shipped["version"], "path": str(path.resolve())}]
    assert out["brain-tumor"] == models["brain-tumor"] and models["whole-heart"] == [shipped]
    for spec, message in (("whole-heart", "expected TASK=PATH"), (f"spine={path}", "whole-heart"),
                          (f"whole-heart={tmp_path / 'none.pt'}", "none.pt")):
        with pytest.raises(ValueError, match=message):
            ri.with_candidates(models, [spec])
