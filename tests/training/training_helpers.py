"""Shared helpers of the training tests: a tiny, fast configuration and weight comparisons."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from training.core.checkpoint import load_checkpoint
from training.core.config import TrainingConfig


def tiny_config(task: str, root: Path, **sections) -> TrainingConfig:
    """A small, fast configuration: a 4-level BasicUNet with 4-16 features, 32^3 patches on the phantom grid."""
    base = {
        "task": task, "name": f"{task}-test", "seed": 0, "demo": True,
        "data": {"root": str(root), "spacing": [], "val_fraction": 0.25},
        "model": {"network": "basic_unet", "config": {"features": [4, 4, 8, 8, 16, 4]}},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "augmentation": {"patch_size": [32, 32, 32], "samples_per_case": 1},
        "train": {"epochs": 4, "batch_size": 2, "precision": "fp32", "val_interval": 1, "patience": 0,
                  "device": "cpu"},
        "validation": {"overlap": 0.0},
        "logging": {"tensorboard": False, "progress": "never"},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return TrainingConfig.from_dict(base)


def weights(run: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / name)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one CPU thread (restored afterwards): tiny networks on a shared 2-core machine run several times
    faster, because OpenMP threads stop waiting for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
