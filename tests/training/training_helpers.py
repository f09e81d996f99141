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


# Tiny sizes for the whole-heart cascade configs (16³ ROIs at 10 mm, a 4-8 channel MAUNet, 16³ localiser grids,
# 4-channel SCN and CycleGAN): the tests add their epochs/iterations and validation split.
CASCADE_TINY = ["logging.progress=never", "train.val_interval=1", "model.config.channels=[4, 8]",
                "recipe.config.roi={size: 16, spacing: 10.0}",
                "recipe.config.localization.grid={size: 16, spacing: 20.0}",
                "recipe.config.localization.network={features: 4, levels: 3}",
                "recipe.config.refinement.network={local_channels: 4, sc_channels: 4}",
                "recipe.config.synthetic.iterations=2", "recipe.config.synthetic.patch_size=16",
                "recipe.config.synthetic.spacing=8.0",
                "recipe.config.synthetic.generator={channels: 4, num_downsampling: 2, num_blocks: 1}",
                "recipe.config.synthetic.discriminator={channels: 4, num_layers_d: 2}"]


def set_args(*items: str) -> list[str]:
    """``--set ITEM`` for each item."""
    return [arg for item in items for arg in ("--set", item)]


def write_mmwhs_phantoms(root: Path, n: int, first_seed: int) -> Path:
    """``n`` CT + ``n`` MR whole-heart phantoms in the MM-WHS layout (``{ct,mr}_train_1001..``; seeds
    ``first_seed..`` per modality, so CT and MR differ in anatomy as in MM-WHS)."""
    from multimodalseg import io
    from multimodalseg.phantoms import make_case

    for modality in ("ct", "mr"):
        for i in range(n):
            case = make_case("whole-heart", first_seed + i, modality=modality)
            io.write_image(case.images["image"], root / f"{modality}_train_{1001 + i}_image.nii.gz")
            io.write_image(case.label, root / f"{modality}_train_{1001 + i}_label.nii.gz")
    return root
