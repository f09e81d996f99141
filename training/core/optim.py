"""Optimisers and learning-rate schedules by name (config data, not subclasses)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, StepLR

from training.core.config import OptimizerConfig, SchedulerConfig

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}
SCHEDULERS = ("none", "cosine", "poly", "step")


def build_optimizer(params: Iterable[torch.nn.Parameter], config: OptimizerConfig) -> torch.optim.Optimizer:
    if config.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{config.name}' (known: {', '.join(OPTIMIZERS)})")
    return OPTIMIZERS[config.name](params, lr=config.lr, weight_decay=config.weight_decay, **config.config)


def build_scheduler(optimizer: torch.optim.Optimizer, config: SchedulerConfig, epochs: int) -> LRScheduler | None:
    """A per-epoch schedule over ``epochs``: ``cosine`` (``eta_min``), ``poly`` (``power``, 0.9 as nnU-Net and
    DMFNet), ``step`` (``step_size``, ``gamma``); None for ``none``."""
    options: dict[str, Any] = dict(config.config)
    if config.name == "none":
        return None
    if config.name == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(1, epochs), eta_min=float(options.get("eta_min", 0.0)))
    if config.name == "poly":
        power = float(options.get("power", 0.9))
        return LambdaLR(optimizer, lambda epoch: max(0.0, 1.0 - epoch / max(1, epochs)) ** power)
    if config.name == "step":
        return StepLR(optimizer, step_size=int(options.get("step_size", 30)), gamma=float(options.get("gamma", 0.1)))
    raise ValueError(f"unknown scheduler '{config.name}' (known: {', '.join(SCHEDULERS)})")
