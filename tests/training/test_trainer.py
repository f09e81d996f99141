"""The supervised trainer on phantoms: learning, logs, checkpoint/resume, determinism, early stop, regions."""

from __future__ import annotations

import pytest
import torch
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task
from training_helpers import same_weights, tiny_config, weights

from training.core.checkpoint import load_checkpoint
from training.core.evaluation import dice_per_class
from training.core.losses import DiceBCELoss, build_loss
from training.core.supervised import fit
from training.core.trainer import SupervisedTrainer, resolve_precision


def test_loss_decreases_and_logs_are_written(heart_data, tmp_path):
    config = tiny_config("whole-heart", heart_data, train={"epochs": 6, "batch_size": 1},
                         optimizer={"lr": 0.02}, logging={"tensorboard": True}, augmentation={"samples_per_case": 2})
    result = fit(config, tmp_path / "run")
    assert len(result.losses) == 6
    assert sum(result.losses[-2:]) / 2 < 0.75 * sum(result.losses[:2]) / 2, result.losses
    assert 0 < result.best_epoch <= 6 and result.best_metric > 0

    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    names = [lab.name for lab in sorted(get_task("whole-heart").labels, key=lambda lab: lab.index)]
    assert rows[0].split(",") == ["epoch", "train_loss", "lr", "seconds", "val_dice_mean",
                                  *(f"val_dice_{n}" for n in names)]
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]
    assert [float(r.split(",")[1]) for r in rows[1:]] == pytest.approx(result.losses, rel=1e-5)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/train_loss")]
    assert losses == pytest.approx(result.losses, rel=1e-5)
    assert len(acc.Scalars("val/dice_LV")) == 6
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"layout": "mmwhs"' in summary and '"val_cases": [' in summary


def test_same_seed_same_weights_and_resume_equals_uninterrupted(heart_data, tmp_path):
    config = tiny_config("whole-heart", heart_data)
    fit(config, tmp_path / "a")
    fit(config, tmp_path / "b")
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))

    other = tiny_config("whole-heart", heart_data, seed=1)
    fit(other, tmp_path / "other")
    assert not same_weights(weights(tmp_path / "a"), weights(tmp_path / "other"))

    class Interrupted(SupervisedTrainer):
        def on_epoch_end(self, epoch, record):
            if epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "c", trainer_cls=Interrupted)
    assert load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")["epoch"] == 2
    with pytest.raises(UserError, match="already holds a run"):
        fit(config, tmp_path / "c")
    result = fit(config, tmp_path / "c", resume="last")
    assert result.last_epoch == 4
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "c"))
    state_a, state_c = (load_checkpoint(p / "checkpoints" / "last.pt") for p in (tmp_path / "a", tmp_path / "c"))
    assert state_a["best_metric"] == state_c["best_metric"] and state_a["best_epoch"] == state_c["best_epoch"]
    assert state_a["optimizer"]["state"][0]["exp_avg"].equal(state_c["optimizer"]["state"][0]["exp_avg"])
    rows_a = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    rows_c = (tmp_path / "c" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:2] + r.split(",")[4:] for r in rows_a] == \
        [r.split(",")[:2] + r.split(",")[4:] for r in rows_c]  # all but the seconds column


def test_early_stop_after_patience_validations_without_improvement(heart_data, tmp_path):
    config = tiny_config("whole-heart", heart_data, optimizer={"lr": 0.0},
                         train={"epochs": 20, "patience": 2, "val_interval": 1})
    result = fit(config, tmp_path / "run")
    # lr 0: the first validation is the best, the next two do not improve: stop after epoch 3.
    assert result.stopped_early and result.last_epoch == 3 and result.best_epoch == 1
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 1 + 3


def test_region_task_trains_sigmoid_channels(dataset, tmp_path):
    root = dataset("brain-tumor", 3)
    config = tiny_config("brain-tumor", root, train={"epochs": 2}, data={"val_fraction": 0.34})
    result = fit(config, tmp_path / "run")
    assert set(result.best_metrics["dice"]) == {"WT", "TC", "ET"}
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert state["network"]["config"]["out_channels"] == 3 and state["network"]["config"]["in_channels"] == 4


def test_region_loss_is_sigmoid_dice_plus_bce():
    loss = build_loss("dice_ce", "regions")
    assert isinstance(loss, DiceBCELoss)
    target = torch.zeros(1, 3, 8, 8, 8)
    target[:, 0, 2:6, 2:6, 2:6] = 1  # WT
    target[:, 1, 3:5, 3:5, 3:5] = 1  # TC inside WT: overlapping channels
    perfect = (target * 2 - 1) * 20
    assert float(loss(perfect, target)) < 0.05 < float(loss(-perfect, target))
    softmax = build_loss("dice_ce", "labels")
    assert float(softmax(torch.randn(1, 4, 8, 8, 8), torch.randint(0, 4, (1, 1, 8, 8, 8)).float())) > 0


def test_dice_per_class_leaves_out_classes_empty_in_both():
    pred = torch.zeros(1, 2, 4, 4, 4, dtype=torch.bool)
    ref = torch.zeros_like(pred)
    pred[0, 0, :2] = True
    ref[0, 0, :1] = True
    dice = dice_per_class(pred, ref)
    assert dice[0, 0].item() == pytest.approx(2 * 16 / (32 + 16))
    assert torch.isnan(dice[0, 1])


def test_precision_choices():
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))


def test_bf16_autocast_on_cpu_trains(heart_data, tmp_path):
    config = tiny_config("whole-heart", heart_data, train={"epochs": 1, "precision": "bf16"})
    result = fit(config, tmp_path / "run")
    assert result.last_epoch == 1 and all(torch.isfinite(v).all() for v in weights(tmp_path / "run").values())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_step_with_non_finite_gradients_is_skipped_not_applied(heart_data, tmp_path, capsys, precision):
    config = tiny_config("whole-heart", heart_data, train={"epochs": 1, "precision": precision})
    model = torch.nn.Conv3d(1, 8, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    trainer = SupervisedTrainer(config, get_task("whole-heart"), model, lambda out, _: out.mean() * float("nan"),
                                optimizer, None, tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {"image": torch.ones(1, 1, 4, 4, 4), "label": torch.zeros(1, 1, 4, 4, 4)}
    trainer.train_step(batch)
    assert trainer.skipped_steps == 1 and same_weights(before, model.state_dict())
    assert "non-finite gradients skipped" in capsys.readouterr().err
    trainer.loss = lambda out, _: out.mean()  # a finite step is applied
    trainer.train_step(batch)
    assert trainer.skipped_steps == 1 and not same_weights(before, model.state_dict())
