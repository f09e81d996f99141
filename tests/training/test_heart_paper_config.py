"""CM-TranCaF's recipe (issue 16 item 5): ``whole-heart-cascade-paper.yaml`` holds the paper's settings, trains the
MAUNet on real CT + CycleGAN-synthetic CT only (validated on CT), counts its length in iterations, and its ablation
switches (MTN, PAB, AG, SCN) and the MI-Seg hybrid (real MR + CIN) change what is trained and exported."""

from __future__ import annotations

import csv
import json

import pytest
from multimodalseg import io
from multimodalseg.bundles import load_bundle
from multimodalseg.errors import UserError
from multimodalseg.inference.predictor import Predictor
from multimodalseg.nets.cin import ConditionalInstanceNorm
from multimodalseg.nets.cyclegan import DISCRIMINATOR_PAPER_CONFIG, GENERATOR_PAPER_CONFIG
from multimodalseg.nets.heart_localization import PAPER_CONFIG as LOCALIZER_PAPER
from multimodalseg.nets.maunet import PAPER_CONFIG as MAUNET_PAPER
from multimodalseg.nets.scn import PAPER_CONFIG as SCN_PAPER
from multimodalseg.phantoms import make_case
from multimodalseg.tasks import get_task
from training_helpers import CASCADE_TINY, set_args

from training.core.cli import main
from training.core.config import load_config
from training.core.recipes import resolve
from training.whole_heart.cascade import epochs_for

TASK = get_task("whole-heart")
CONFIG = "training/configs/whole-heart-cascade-paper.yaml"
# Tiny widths and grids; ct/mr_train_1004 validate, so 3 CT + 3 MR train and 2 synthetic CT (half of 3, rounded up).
TINY = [*CASCADE_TINY, "data.val_cases=[ct_train_1004, mr_train_1004]", "data.num_workers=0",
        "logging.tensorboard=false", "augmentation.samples_per_case=1", "recipe.config.iterations=4",
        "recipe.config.localization.iterations=3", "recipe.config.localization.lr=1.0e-3",
        "recipe.config.refinement.iterations=2", "recipe.config.refinement.samples_per_case=1"]


def fit(root, out, *items: str) -> int:
    return main(["fit", "--config", CONFIG, "--data", str(root), "--out", str(out), *set_args(*TINY, *items)])


@pytest.fixture(scope="module")
def heart_root(mmwhs):
    """4 CT + 4 MR phantoms in the MM-WHS layout (different anatomy per modality, as MM-WHS)."""
    return mmwhs(4, 70)


def rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_the_config_holds_the_papers_recipe():
    config = load_config(CONFIG)
    _, s = resolve(config)
    assert (config.optimizer.name, config.optimizer.lr, config.scheduler.name) == ("adam", 1e-5, "none")
    assert config.train.batch_size * config.augmentation.samples_per_case == 8  # batch 8 ROIs
    assert s.iterations == 40000 and s.train_modalities == ["ct"] and s.mi_seg_hybrid is False
    assert s.roi["ct"] == {"size": 64, "spacing": 3.0}  # 64³ at 3 mm (Payer's CT grid)
    assert config.loss.name == "dice_softmax_focal" and config.loss.config["lambda_focal"] == 0.1
    assert tuple(config.model.config["channels"]) == MAUNET_PAPER["channels"]
    assert config.model.config["attention_gates"] and config.model.config["position_attention"]
    assert s.synthetic.train and s.synthetic.fraction == 0.5 and s.synthetic.patch_size == 64
    assert s.synthetic.generator == GENERATOR_PAPER_CONFIG and s.synthetic.discriminator == DISCRIMINATOR_PAPER_CONFIG
    assert s.refinement.enabled and s.refinement.network == SCN_PAPER
    assert s.localization.network == LOCALIZER_PAPER and s.localization.lr == 1e-5


def test_iterations_become_epochs():
    assert epochs_for(40000, 15, 1) == 2667 and epochs_for(4, 2, 1) == 2 and epochs_for(5, 2, 1) == 3
    assert epochs_for(None, 15, 7) == 7
    with pytest.raises(UserError, match="must be >= 1"):
        epochs_for(10, 0, 1)


@pytest.mark.parametrize("mtn,pab,scn", [(True, True, True), (False, False, False), (True, False, True)],
                         ids=["paper", "none", "no-pab"])
def test_dry_run_shows_each_ablation(heart_root, tmp_path, capsys, mtn, pab, scn):
    sets = [f"recipe.config.synthetic.train={str(mtn).lower()}", f"model.config.position_attention={str(pab).lower()}",
            f"recipe.config.refinement.enabled={str(scn).lower()}"]
    args = ["fit", "--config", CONFIG, "--data", str(heart_root), "--out", str(tmp_path / "r"), "--dry-run"]
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 0
    text = capsys.readouterr().out
    assert ("synthetic: cyclegan" in text) == mtn and ("refinement: scn" in text) == scn
    assert "MAUNet on CT ROIs, 40000 iterations" in text
    maunet = int(next(line for line in text.splitlines() if "segmentation: maunet" in line)
                 .split(", ")[1].split()[0].replace(",", ""))
    assert (maunet == 7_725_922) == pab  # METHODS: 7.7 M with the PAB


@pytest.mark.slow
def test_paper_recipe_trains_on_ct_and_synthetic_ct_only(heart_root, tmp_path):
    out = tmp_path / "run"
    assert fit(heart_root, out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == ["synthetic", "localization", "segmentation", "refinement"]
    train = summary["train_cases"]
    # The old cascade trained the MAUNet on real MR too; the paper's has real CT + half as many synthetic CT.
    assert not [c for c in train if c.startswith("mr_")]
    assert sorted(c for c in train if c.startswith("ct_train")) == ["ct_train_1001", "ct_train_1002", "ct_train_1003"]
    assert len([c for c in train if c.startswith("ct_synth_")]) == 2 and summary["val_cases"] == ["ct_train_1004"]
    # 5 ROI cases, batch 2 (drop_last): 2 steps per epoch, so 4 iterations are 2 epochs; the SCN's 2 are 1.
    assert len(rows(out / "segmentation" / "metrics.csv")) == 2 and len(rows(out / "refinement" / "metrics.csv")) == 1
    assert len(rows(out / "localization" / "metrics.csv")) == 1  # 3 CT x 2 samples, batch 1: 3 steps
    bundle = load_bundle(out / summary["bundle"], task=TASK.id)
    assert bundle.meta["cascade"]["modalities"] == ["ct"] and bundle.meta["conditional_modality"] is False
    assert list(bundle.meta["metrics"]["cascade_val"]["cases"]) == ["ct_train_1004"]  # tested on CT
    assert any(k.startswith("roi.maunet.bottom_attention.") for k in bundle.state_dict)
    assert any(k.startswith("roi.scn.") for k in bundle.state_dict)
    # A CT needs no --modality (the one trained modality's grids); an MR runs with a warning.
    fresh = make_case(TASK.id, 9000, modality="ct")
    result = Predictor(bundle, "cpu").predict({"image": fresh.images["image"]})
    assert io.same_geometry(result.labels, fresh.images["image"])
    events = []
    mr = make_case(TASK.id, 9001, modality="mr")
    Predictor(bundle, "cpu", modality="mr", progress=events.append).predict({"image": mr.images["image"]})
    assert any("trained on CT only" in e.get("message", "") for e in events)


@pytest.mark.slow
def test_ablations_off_drop_the_synthetic_ct_the_pab_the_gates_and_the_scn(heart_root, tmp_path):
    out = tmp_path / "run"
    assert fit(heart_root, out, "recipe.config.synthetic.train=false", "model.config.position_attention=false",
               "model.config.attention_gates=false", "recipe.config.refinement.enabled=false",
               "recipe.config.localization.enabled=false", "recipe.config.evaluate=false") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == ["segmentation"]
    assert summary["train_cases"] == ["ct_train_1001", "ct_train_1002", "ct_train_1003"]  # no MTN: real CT only
    state = load_bundle(out / summary["bundle"], task=TASK.id).state_dict
    assert not any(k.startswith(("roi.scn.", "roi.maunet.bottom_attention.", "roi.maunet.gates.")) for k in state)
    # 3 ROI cases, batch 2: 1 step per epoch, so the 4 iterations are 4 epochs
    assert len(rows(out / "segmentation" / "metrics.csv")) == 4


@pytest.mark.slow
def test_mi_seg_hybrid_adds_real_mr_and_encoder_cin(heart_root, tmp_path):
    out = tmp_path / "run"
    assert fit(heart_root, out, "recipe.config.mi_seg_hybrid=true", "recipe.config.synthetic.train=false",
               "recipe.config.refinement.enabled=false", "recipe.config.localization.enabled=false",
               "recipe.config.evaluate=false") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["train_cases"]) == [f"{m}_train_100{i}" for m in ("ct", "mr") for i in (1, 2, 3)]
    assert sorted(summary["val_cases"]) == ["ct_train_1004", "mr_train_1004"]
    bundle = load_bundle(out / summary["bundle"], task=TASK.id)
    assert bundle.meta["conditional_modality"] is True and bundle.meta["cascade"]["modalities"] == ["ct", "mr"]
    model = Predictor(bundle, "cpu", modality="mr").model
    conditional = [n for n, m in model.named_modules() if isinstance(m, ConditionalInstanceNorm)]
    assert conditional and all(n.startswith("roi.maunet.encoders.") for n in conditional)  # MI-Seg: encoder only


def test_bad_recipe_values_are_one_line_errors(heart_root, tmp_path, capsys):
    for item, message in (("recipe.config.train_modalities=[pet]", "train_modalities must list"),
                          ("recipe.config.iterations=0", "recipe.config.iterations must be >= 1")):
        args = ["fit", "--config", CONFIG, "--data", str(heart_root), "--out", str(tmp_path / "r"), "--dry-run"]
        assert main([*args, "--set", item]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
