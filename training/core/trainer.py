"""The supervised trainer: a loop that delegates to composed objects and exposes hooks.

The trainer owns the loop (epochs, AMP, gradient clipping, validation, best model, early stop, checkpoints); the
network, loss, optimiser, scheduler, data pipeline and logger are objects handed to it (STYLE.md §4). Workflow
trainers (CycleGAN, two-stage fusion, MCF semi-supervised, modality-conditioned whole heart) subclass it and
override hooks, nnU-Net style, instead of growing this class:

- ``forward(images, batch)``: logits of a training batch (a modality-conditioned net reads ``batch["modality"]``);
- ``compute_loss(logits, batch)``; ``train_step(batch)``: one optimisation step, returns the loss;
- ``infer(images, batch)``: whole-case logits for validation (sliding window by default);
- ``on_fit_start()``, ``on_epoch_start(epoch)``, ``on_validation_end(epoch, result)``,
  ``on_epoch_end(epoch, record)``, ``on_fit_end(result)``; ``extra_state()``/``load_extra_state(state)`` for
  whatever a subclass must checkpoint (its ``"bundle_meta"`` entry is merged into exported bundle metadata).

Reproducibility: every epoch re-seeds the data order and the random transforms from ``(seed, epoch, rank)``
(:func:`training.core.data.seed_epoch`), so a run resumed from a checkpoint continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from multimodalseg.errors import UserError
from multimodalseg.preprocessing import zyx
from multimodalseg.tasks.spec import TaskSpec
from torch import nn
from tqdm.auto import tqdm

from training.core.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from training.core.config import TrainingConfig
from training.core.data import seed_epoch
from training.core.ddp import DistContext, all_reduce_mean, broadcast_floats, wrap_model
from training.core.evaluation import ValidationResult, sliding_window, validate
from training.core.loggers import RunLogger, dice_columns
from training.core.transforms import roi_size


@dataclass
class FitResult:
    """How a run ended: the last epoch, the best validation Dice and its epoch, and whether it stopped early."""

    last_epoch: int
    best_metric: float
    best_epoch: int
    stopped_early: bool
    best_metrics: dict[str, Any] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: fp32). ``auto``: fp16 on CUDA, fp32 on CPU; bf16 on CPU only when asked."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else None
    if name == "fp32":
        return None
    if name == "fp16":
        if device.type != "cuda":
            raise UserError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        return torch.float16
    if name == "bf16":
        return torch.bfloat16
    raise UserError(f"unknown precision '{name}' (auto, fp32, fp16, bf16)")


class SupervisedTrainer:
    """Supervised training of one network.

    Args:
        config: the run's configuration (epochs, batch, precision, clipping, validation, patience, seed).
        task: the task (output kind, class names).
        model: the network, ``(B, C, Z, Y, X) -> (B, K, Z, Y, X)`` logits.
        loss: ``loss(logits, target) -> scalar`` (see ``training.core.losses``).
        optimizer, scheduler: built over ``model``'s parameters; scheduler stepped per epoch (may be None).
        out_dir: the run folder (``checkpoints/``, logs).
        logger: CSV/TensorBoard writer (None: no logs).
        ctx: the DDP context (single process by default).
        find_unused_parameters: DDP option for networks with branches not used by every batch.
    """

    def __init__(self, config: TrainingConfig, task: TaskSpec, model: nn.Module, loss: nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: Any | None, out_dir: str | Path,
                 logger: RunLogger | None = None, ctx: DistContext | None = None,
                 find_unused_parameters: bool = False) -> None:
        self.config, self.task = config, task
        self.ctx = ctx or DistContext()
        self.device = self.ctx.device
        self.model = model.to(self.device)
        self.network = wrap_model(self.model, self.ctx, find_unused_parameters)
        self.loss, self.optimizer, self.scheduler, self.logger = loss, optimizer, scheduler, logger
        self.out_dir = Path(out_dir)
        self.amp_dtype = resolve_precision(config.train.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.skipped_steps = 0  # steps whose gradients were not finite (fp32/bf16: no scaler to skip them)
        self.epoch = 0
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.best_metrics: dict[str, Any] = {}
        self.bad_rounds = 0
        self.last_metrics: dict[str, Any] = {}  # of the latest validation, at epoch ``last_metrics_epoch``
        self.last_metrics_epoch = 0
        # {"name", "config"} of the network, kept in checkpoints so ``export`` can rebuild it.
        self.network_spec: dict[str, Any] = {}

    # ----------------------------------------------------------------- hooks
    def on_fit_start(self) -> None:
        """Called once before the first epoch of :meth:`fit`."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (after the epoch's seeding)."""

    def forward(self, images: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Logits of a training batch."""
        return self.network(images)

    def compute_loss(self, logits: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.loss(logits, batch["label"].to(self.device))

    def train_step(self, batch: Mapping[str, Any]) -> float:
        """One optimisation step: autocast forward, loss, scaled backward, gradient clipping, step."""
        self.optimizer.zero_grad(set_to_none=True)
        images = batch["image"].to(self.device)
        with self.autocast():
            logits = self.forward(images, batch)
            loss = self.compute_loss(logits, batch)
        self.scaler.scale(loss).backward()
        if self.config.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        if not self.scaler.is_enabled() and not self.finite_gradients():
            # fp16's scaler skips such a step itself; in fp32/bf16 one NaN step would poison every weight
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            if self.ctx.is_main:
                print(f"training: step with non-finite gradients skipped (epoch {self.epoch + 1}, "
                      f"{self.skipped_steps} so far)", file=sys.stderr)
            return float(loss.detach())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def finite_gradients(self) -> bool:
        grads = [p.grad.detach().abs().amax() for p in self.model.parameters() if p.grad is not None]
        return not grads or bool(torch.isfinite(torch.stack(grads)).all())

    def infer(self, images: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Whole-case logits for validation: MONAI sliding window over the unwrapped model."""
        v = self.config.validation
        with self.autocast():
            return sliding_window(self.model, images, zyx(roi_size(self.config, self.task)), overlap=v.overlap,
                                  sw_batch_size=v.sw_batch_size, mode=v.mode)

    def on_validation_end(self, epoch: int, result: ValidationResult) -> None:
        """Called on rank 0 after each validation."""

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        """Called after each epoch's checkpoint and log row (``record``: the logged values)."""

    def on_fit_end(self, result: FitResult) -> None:
        """Called once when :meth:`fit` ends (also after an early stop)."""

    def extra_state(self) -> dict[str, Any]:
        """What a subclass adds to checkpoints (tensors and plain types only)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    # ------------------------------------------------------------------ loop
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def fit(self, train_loader: Any, val_loader: Iterable | None = None) -> FitResult:
        """Train from ``self.epoch + 1`` to ``train.epochs`` (validating, checkpointing, stopping early)."""
        cfg = self.config.train
        losses: list[float] = []
        stopped = False
        self.on_fit_start()
        for epoch in range(self.epoch + 1, cfg.epochs + 1):
            seed_epoch(train_loader, self.config.seed, epoch, self.ctx.rank)
            self.on_epoch_start(epoch)
            start = time.perf_counter()
            lr = float(self.optimizer.param_groups[0]["lr"])
            loss = all_reduce_mean(self.train_epoch(train_loader, epoch), self.ctx)
            losses.append(loss)
            if self.scheduler is not None:
                self.scheduler.step()
            record: dict[str, Any] = {"train_loss": loss, "lr": lr}
            improved = False
            if val_loader is not None and (epoch % cfg.val_interval == 0 or epoch == cfg.epochs):
                improved, stopped = self._validate_round(epoch, val_loader, record)
            elif val_loader is None:
                improved = True  # nothing to validate on: the latest model is the best one
                self.best_epoch = epoch
            self.epoch = epoch
            record["seconds"] = time.perf_counter() - start
            if self.ctx.is_main:
                self.save(self.out_dir / "checkpoints" / "last.pt")
                if improved:
                    self.save(self.out_dir / "checkpoints" / "best.pt")
                if cfg.checkpoint_interval and epoch % cfg.checkpoint_interval == 0:
                    self.save(self.out_dir / "checkpoints" / f"epoch_{epoch:04d}.pt")
                if self.logger is not None:
                    self.logger.log_epoch(epoch, record)
            self.on_epoch_end(epoch, record)
            if stopped:
                break
        result = FitResult(self.epoch, self.best_metric, self.best_epoch, stopped, dict(self.best_metrics), losses)
        self.on_fit_end(result)
        return result

    def train_epoch(self, loader: Iterable, epoch: int) -> float:
        """Mean loss over the epoch's batches."""
        self.network.train()
        total, count = 0.0, 0
        show = self.config.logging.progress
        disable = not self.ctx.is_main or show == "never" or (show == "auto" and not sys.stderr.isatty())
        for batch in tqdm(loader, desc=f"epoch {epoch}/{self.config.train.epochs}", leave=False, disable=disable):
            value = self.train_step(batch)
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} in epoch {epoch}; lower optimizer.lr or check the data")
            total += value
            count += 1
        if count == 0:
            raise UserError("the training loader gave no batch (fewer cases than the batch size?)")
        return total / count

    def _validate_round(self, epoch: int, val_loader: Iterable, record: dict[str, Any]) -> tuple[bool, bool]:
        """Validate on rank 0, update best/patience, and share the decision with the other ranks."""
        cfg = self.config.train
        flags = [0.0, 0.0, math.nan]
        if self.ctx.is_main:
            self.network.eval()
            result = validate(self.infer, val_loader, self.task, self.device)
            self.on_validation_end(epoch, result)
            record["val_dice_mean"] = result.mean
            self.last_metrics = {k: v for k, v in result.to_dict().items() if k != "cases"}
            self.last_metrics_epoch = epoch
            record.update(dice_columns(result.dice))
            better = not math.isnan(result.mean) and (
                math.isinf(self.best_metric) or result.mean > self.best_metric + cfg.min_delta)
            if better:
                self.best_metric, self.best_epoch, self.bad_rounds = result.mean, epoch, 0
                self.best_metrics = {k: v for k, v in result.to_dict().items() if k != "cases"}
            else:
                self.bad_rounds += 1
            stop = cfg.patience > 0 and self.bad_rounds >= cfg.patience
            flags = [float(better), float(stop), result.mean]
        better, stop, mean = broadcast_floats(flags, self.ctx)
        if not self.ctx.is_main and better:
            self.best_metric, self.best_epoch = mean, epoch
        return bool(better), bool(stop)

    # ----------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "bad_rounds": self.bad_rounds,
            "last_metrics": self.last_metrics,
            "last_metrics_epoch": self.last_metrics_epoch,
            "config": self.config.to_dict(),
            "network": self.network_spec,
            "extra": self.extra_state(),
        }

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.state())

    def resume(self, path: str | Path) -> int:
        """Restore a checkpoint written by :meth:`save`; returns the epoch it finished."""
        state = load_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise UserError(f"checkpoint weights do not fit the configured network: {exc}", path) from None
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.best_metric = float(state["best_metric"])
        self.best_epoch = int(state["best_epoch"])
        self.best_metrics = dict(state.get("best_metrics") or {})
        self.bad_rounds = int(state["bad_rounds"])
        self.last_metrics = dict(state.get("last_metrics") or {})
        self.last_metrics_epoch = int(state.get("last_metrics_epoch", 0))
        self.load_extra_state(state.get("extra") or {})
        set_rng_state(state["rng"])
        return self.epoch
