"""Skull stripping before the tumour network (``multimodalseg.inference.brain_mask``): the shipped brain-mask model
on held-out synthetic whole-head cases, the auto decision, the predictor and CLI wiring, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg import catalog, io
from multimodalseg.errors import UserError
from multimodalseg.inference.brain_mask import (
    KIND,
    BrainMasker,
    largest_component,
    load_brain_mask_model,
    normalize,
    predict_mask,
)
from multimodalseg.inference.predictor import Predictor
from multimodalseg.synthesis.anatomy import split_anatomy
from multimodalseg.synthesis.generate import brain_mask, generate

MASK_DICE_MIN = 0.90  # held-out whole-head synthetic cases; measured in the bundle's metrics (see the catalog)
SEEDS = (9100, 9101, 9102)


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))


def held_out_sample(seed: int, whole_head: float):
    held = split_anatomy("brain-tumor")[1]
    rng = np.random.default_rng([seed, 15])
    return generate("brain-tumor", held[int(rng.integers(len(held)))], rng, whole_head_fraction=whole_head)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def test_normalize_and_largest_component():
    x = np.zeros((4, 4, 4), np.float32)
    x[0] = -5.0
    x[1:] = np.arange(48, dtype=np.float32).reshape(3, 4, 4) + 1
    y = normalize(x)
    assert y.min() == 0.0 and y[0].max() == 0.0
    assert np.isclose(np.percentile(y[x > 0], 99), 1.0)
    assert not normalize(np.zeros((3, 3, 3))).any()
    m = np.zeros((9, 9, 9), bool)
    m[1:6, 1:6, 1:6] = True
    m[3, 3, 3] = False  # a hole
    m[8, 8, 8] = True  # a smaller component
    kept = largest_component(m)
    assert kept[3, 3, 3] and not kept[8, 8, 8] and kept.sum() == 125


def test_shipped_brain_mask_model_is_in_the_catalog():
    entry = catalog.default_for("brain-tumor", kind=KIND)
    assert entry.demo and entry.model_kind == KIND
    assert catalog.default_for("brain-tumor").model_kind == "segmentation"  # never the task's segmentation model
    bundle = load_brain_mask_model()
    assert bundle.meta["kind"] == KIND and bundle.meta["network"]["config"]["in_channels"] == 1


def test_brain_mask_on_held_out_whole_head_cases():
    net = load_brain_mask_model().build_model()
    scores = []
    for seed in SEEDS:
        s = held_out_sample(seed, 1.0)
        truth = brain_mask(s)
        for role in ("t1ce", "flair"):
            mask = predict_mask(net, s.grids[role].image(np.ascontiguousarray(s.images[role])))
            scores.append(dice(mask, truth))
    print(f"held-out whole-head mask Dice {np.round(scores, 3)}")
    assert min(scores) >= MASK_DICE_MIN - 0.05 and np.mean(scores) >= MASK_DICE_MIN


def raw_of(sample) -> tuple[np.ndarray, sitk.Image]:
    roles = ("flair", "t1", "t1ce", "t2")  # the task's role order
    raw = np.stack([sample.images[r] for r in roles]).astype(np.float32)
    return raw, sample.grids["t1ce"].image(np.ascontiguousarray(sample.images["t1ce"]))


def test_auto_strips_whole_head_and_leaves_stripped_input():
    masker = BrainMasker("auto")
    head = held_out_sample(SEEDS[0], 1.0)
    raw, reference = raw_of(head)
    before = raw.copy()
    out, entry = masker.apply(raw, reference, 2)
    assert entry["applied"] and entry["ratio"] > 1.5
    assert np.array_equal(raw, before)  # the input is not changed
    truth = brain_mask(head)
    assert dice(out[2] != 0, truth) > 0.85  # the stripped T1ce against the true brain: measured 0.882
    stripped = held_out_sample(SEEDS[0], 0.0)
    raw_s, reference_s = raw_of(stripped)
    same, entry_s = masker.apply(raw_s, reference_s, 2)
    assert not entry_s["applied"] and entry_s["ratio"] < 1.5 and same is raw_s
    forced, entry_f = BrainMasker("always").apply(raw_s, reference_s, 2)
    assert entry_f["applied"] and dice(forced[2] != 0, raw_s[2] != 0) > 0.95
    never, entry_n = BrainMasker("never").apply(raw, reference, 2)
    assert never is raw and entry_n == {"mode": "never", "applied": False, "model": None}


def test_predictor_reports_the_stripping(tmp_path):
    head = held_out_sample(SEEDS[1], 1.0)
    inputs = {r: head.grids[r].image(np.ascontiguousarray(head.images[r])) for r in head.images}
    result = Predictor.from_model("brain-tumor", device="cpu").predict(inputs)
    strip = result.report["skull_strip"]
    assert strip["applied"] and strip["model"] == "brain-mask-demo" and strip["brain_ml"] > 500
    outside = ~brain_mask(head)
    assert not (sitk.GetArrayFromImage(result.labels)[outside] > 0).sum() > 0.01 * outside.sum()
    off = Predictor.from_model("brain-tumor", device="cpu", skull_strip="never").predict(inputs)
    assert off.report["skull_strip"] == {"mode": "never", "applied": False, "model": None}


def test_skull_strip_errors(cli, tmp_path):
    with pytest.raises(UserError, match="only for tasks on skull-stripped MR"):
        Predictor.from_model("whole-heart", device="cpu", skull_strip="always")
    with pytest.raises(UserError, match="--skull-strip must be one of"):
        BrainMasker("sometimes")
    segmentation = catalog.default_for("brain-tumor").local_path()
    with pytest.raises(UserError, match="is not a brain-mask model"):
        load_brain_mask_model(segmentation)
    image = io.write_image(sitk.Image([8, 8, 8], sitk.sitkFloat32), tmp_path / "t1ce.nii.gz")
    out = tmp_path / "seg.nii.gz"
    r = cli("segment", "--task", "brain-tumor", "-i", f"t1ce={image}", "-o", out, "--skull-strip", "never",
            "--brain-mask-model", "brain-mask-demo")
    assert r.code == 2 and "contradict" in r.err and len(r.err.strip().splitlines()) == 1 and not out.exists()
    r = cli("segment", "--task", "whole-heart", "--modality", "ct", "-i", f"image={image}", "-o", out,
            "--skull-strip", "always")
    assert r.code == 2 and "only for tasks on skull-stripped MR" in r.err and not out.exists()
