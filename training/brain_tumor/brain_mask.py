"""The ``brain-mask`` recipe of ``python -m training fit``: the brain extraction the tumour task runs before its
network on whole-head MR (``multimodalseg.inference.brain_mask``).

    python -m training.brain_tumor.brain_mask_bank --out BANK/train --n 160 --seed 0
    python -m training.brain_tumor.brain_mask_bank --out BANK/train --n 160 --seed 1000  # a second worker
    python -m training.brain_tumor.brain_mask_bank --out BANK/val --n 12 --seed 50000 --held-out
    python -m training fit --config training/configs/brain-tumor-brain-mask.yaml --data BANK --out runs/brain-mask

``--data`` holds ``train/`` and ``val/`` banks of ``case_NNNNN.npz`` (:mod:`training.brain_tumor.brain_mask_bank`).
One stage ``brain_mask``: a MONAI BasicUNet (1 channel in, background / brain out) on the ``spacing`` grid (block
means of the bank's 2 mm voxels; default 4 mm, where a 64³ crop holds a whole head) on random crops of one random
sequence of a case (SynthStrip's idea: contrast-agnostic because every case paints every tissue anew), Dice + CE,
AdamW with a cosine schedule. Augmentation on top of the generator's own (deformation, bias field, noise, blur,
resolution): left-right flips, gamma, and noise in the air (the bank's air is exactly 0, a scanner's is not).
Validation every ``val_interval`` iterations: Dice of the whole-volume mask of FLAIR and T1ce of the held-out bank,
through :func:`~multimodalseg.inference.brain_mask.forward_probability` as inference runs it; the best weights
are the bundle's.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from multimodalseg.bundles import save_bundle
from multimodalseg.errors import UserError
from multimodalseg.inference.brain_mask import KIND, SPACING, TASK, forward_probability, largest_component, normalize
from multimodalseg.nets import build_network

from training.core.checkpoint import LoopCheckpoint, load_checkpoint, save_checkpoint
from training.core.config import TrainingConfig
from training.core.loggers import IterationLogger
from training.core.recipes import NetworkInfo, Plan, Recipe, RunState, Stage, count_parameters

NETWORK = "basic_unet"
VALIDATION_SEQUENCES = (0, 2)  # FLAIR and T1ce of the bank's order (brain_mask_bank.SEQUENCES): 2 passes per case


@dataclass
class BrainMaskSettings:
    """``recipe.config`` of ``brain-mask``."""

    features: list[int] = field(default_factory=lambda: [16, 16, 32, 64, 128, 16])  # BasicUNet widths
    spacing: float = 4.0  # network grid, mm: a whole multiple of the bank's 2 mm (block means of its voxels)
    iterations: int = 1800
    batch: int = 2
    patch_size: list[int] = field(default_factory=lambda: [64, 64, 64])  # (z, y, x) network voxels: a whole head
    lr: float = 2e-3
    weight_decay: float = 1e-5
    val_interval: int = 250
    flip_prob: float = 0.5
    gamma_range: list[float] = field(default_factory=lambda: [0.7, 1.5])
    air_noise_prob: float = 0.5
    air_noise_max: float = 0.05  # noise sigma up to this share of the normalised scale
    limit: int | None = None  # read at most this many training cases (smoke runs)


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor``-cubed blocks of a ``(Z, Y, X)`` array (zero-padded to whole blocks): a coarser grid
    whose voxels are the averages of the fine ones, as the anti-aliased resampling at inference makes them."""
    if factor == 1:
        return array.astype(np.float32)
    pad = [(0, (-n) % factor) for n in array.shape]
    a = np.pad(array.astype(np.float32), pad)
    z, y, x = (n // factor for n in a.shape)
    return a.reshape(z, factor, y, factor, x, factor).mean(axis=(1, 3, 5))


def load_bank(folder: Path, spacing: float = SPACING, limit: int | None = None) -> list[dict[str, Any]]:
    """The cases of a bank folder on the ``spacing`` grid, sequences normalised (:func:`normalize`)."""
    files = sorted(folder.glob("case_*.npz"))[:limit]
    if not files:
        raise UserError("no case_*.npz brain-mask bank here (write one with training.brain_tumor.brain_mask_bank)",
                        folder)
    cases = []
    for f in files:
        with np.load(f) as z:
            bank = float(z["spacing"][0])
            factor = int(round(spacing / bank))
            if not np.allclose(z["spacing"], bank) or factor < 1 or not np.isclose(factor * bank, spacing):
                raise UserError(f"bank case has spacing {list(z['spacing'])}: recipe.config.spacing {spacing} must "
                                "be a whole multiple of it", f)
            images = np.stack([normalize(block_mean(a, factor)) for a in z["images"]]).astype(np.float16)
            mask = (block_mean(z["mask"], factor) >= 0.5).astype(np.int64)
            cases.append({"id": f.stem, "images": images, "mask": mask, "whole_head": bool(z["whole_head"])})
    return cases


def random_patch(case: dict[str, Any], size: list[int], rng: np.random.Generator,
                 s: BrainMaskSettings) -> tuple[np.ndarray, np.ndarray]:
    """One augmented ``(1, z, y, x)`` image and ``(1, z, y, x)`` mask crop (zero-padded where the case is smaller)."""
    image = case["images"][int(rng.integers(len(case["images"])))].astype(np.float32)
    mask = case["mask"]
    pad = [(0, max(0, n - d)) for n, d in zip(size, image.shape)]
    image, mask = np.pad(image, pad), np.pad(mask, pad)
    start = [int(rng.integers(0, d - n + 1)) for n, d in zip(size, image.shape)]
    box = tuple(slice(a, a + n) for a, n in zip(start, size))
    image, mask = image[box], mask[box]
    if rng.random() < s.flip_prob:  # left-right (the last axis of an LPS array)
        image, mask = image[..., ::-1], mask[..., ::-1]
    image = np.power(np.clip(image / 4.0, 0, 1), rng.uniform(*s.gamma_range)) * 4.0
    if rng.random() < s.air_noise_prob:
        sigma = rng.uniform(0.0, s.air_noise_max)
        air = image <= 0
        image[air] = np.abs(rng.normal(0.0, sigma, int(air.sum())))
    return np.ascontiguousarray(image[None], np.float32), np.ascontiguousarray(mask[None])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float(np.logical_and(a, b).sum()) / total if total else 1.0


def validate(model: torch.nn.Module, cases: list[dict[str, Any]], patch_size: list[int]) -> dict[str, float]:
    """Mean Dice of the post-processed whole-volume mask over FLAIR and T1ce of every case, and per kind."""
    model.eval()
    scores: dict[str, list[float]] = {"whole_head": [], "stripped": []}
    for case in cases:
        for image in case["images"][list(VALIDATION_SEQUENCES)]:
            p = forward_probability(model, image.astype(np.float32), min_size=max(patch_size))
            scores["whole_head" if case["whole_head"] else "stripped"].append(
                dice(largest_component(p >= 0.5), case["mask"] > 0))
    model.train()
    every = scores["whole_head"] + scores["stripped"]
    return {"dice": float(np.mean(every)), **{f"dice_{k}": float(np.mean(v)) for k, v in scores.items() if v}}


class BrainMaskRecipe(Recipe):
    name = "brain-mask"
    settings_cls = BrainMaskSettings
    bundle = True

    def check(self, config: TrainingConfig, settings: BrainMaskSettings) -> None:
        if config.task != TASK:
            raise UserError(f"recipe brain-mask trains a {TASK} brain-mask model, not task {config.task}")
        if len(settings.patch_size) != 3 or min(settings.patch_size) < 16 or any(p % 16 for p in settings.patch_size):
            raise UserError(f"recipe.config.patch_size must be 3 sides divisible by 16, got {settings.patch_size}")
        if not 2.0 <= settings.spacing <= 8.0:
            raise UserError(f"recipe.config.spacing must be between 2 and 8 mm, got {settings.spacing}")
        if settings.iterations < 1 or settings.batch < 1 or settings.val_interval < 1:
            raise UserError("recipe.config iterations, batch and val_interval must be at least 1")

    def network_config(self, settings: BrainMaskSettings) -> dict[str, Any]:
        return {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "features": list(settings.features)}

    def stages(self, config: TrainingConfig, settings: BrainMaskSettings) -> list[Stage]:
        return [Stage("brain_mask", self.train, description=f"BasicUNet, {settings.iterations} iterations of "
                      f"{settings.batch} crops of {settings.patch_size}")]

    def plan(self, config: TrainingConfig, settings: BrainMaskSettings) -> Plan:
        root = Path(config.data.root or ".")
        counts = {part: len(list((root / part).glob("case_*.npz"))) for part in ("train", "val")}
        lines = [f"{root}: layout brain-mask bank, {counts['train']} train cases in train/, {counts['val']} val "
                 "cases in val/"]
        nets = [NetworkInfo("brain_mask", NETWORK,
                            count_parameters(lambda: build_network(NETWORK, **self.network_config(settings))))]
        aug = [f"one random sequence per crop; left-right flip p {settings.flip_prob}, gamma "
               f"{settings.gamma_range}, air noise p {settings.air_noise_prob} (sigma up to {settings.air_noise_max})"]
        return Plan(self.name, self.stages(config, settings), nets, lines, aug)

    def train(self, run: RunState) -> dict[str, Any]:
        s: BrainMaskSettings = run.settings
        if not run.config.data.root:
            raise UserError("no bank folder: give --data BANK (with train/ and val/)")
        root = Path(run.config.data.root)
        torch.manual_seed(run.config.seed)
        rng = np.random.default_rng(run.config.seed)
        model = build_network(NETWORK, **self.network_config(s))
        best_path = run.folder("brain_mask") / "checkpoints" / "best.pt"
        done = run.done("brain_mask")
        if done is not None:  # a resumed run that had finished this stage
            model.load_state_dict(load_checkpoint(best_path)["model"])
            run.shared["model"] = model
            return done
        train, val = load_bank(root / "train", s.spacing, s.limit), load_bank(root / "val", s.spacing)
        optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, s.iterations)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        checkpoint = LoopCheckpoint(run.folder("brain_mask") / "checkpoints" / "last.pt", s.val_interval, run.resume)
        first, history = checkpoint.restore({"model": model}, {"optimizer": optimizer}, rng)
        for _ in range(first):
            schedule.step()
        best = max((r for r in history if "dice" in r), key=lambda r: r["dice"], default=None)
        best_state = {k: v.clone() for k, v in model.state_dict().items()}
        t0 = time.perf_counter()
        model.train()
        for it in range(first, s.iterations):
            pairs = [random_patch(train[int(rng.integers(len(train)))], s.patch_size, rng, s) for _ in range(s.batch)]
            x = torch.from_numpy(np.stack([p[0] for p in pairs]))
            y = torch.from_numpy(np.stack([p[1] for p in pairs]))
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            row: dict[str, float] = {"loss": float(loss.detach()), "lr": schedule.get_last_lr()[0]}
            if (it + 1) % s.val_interval == 0 or it == s.iterations - 1:
                row.update(validate(model, val, s.patch_size))
                if best is None or row["dice"] > best["dice"]:
                    best, best_state = {**row, "iteration": it}, {k: v.clone() for k, v in model.state_dict().items()}
                print(f"iteration {it + 1}: loss {row['loss']:.4f} validation Dice {row['dice']:.4f} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
            history.append(row)
            checkpoint.maybe_save(it, s.iterations - 1, {"model": model}, {"optimizer": optimizer}, rng, history)
        logger = IterationLogger(run.folder("brain_mask"), run.config.logging)
        for i, r in enumerate(history):
            logger.log(i, r)
        logger.close()
        model.load_state_dict(best_state)
        save_checkpoint(best_path, {"model": best_state})
        run.shared["model"] = model
        return {"cases": len(train), "val_cases": len(val), "seconds": round(time.perf_counter() - t0, 1),
                "iterations": s.iterations, "threads": torch.get_num_threads(),
                "best": {k: round(float(v), 4) for k, v in (best or {}).items()}}

    def finish(self, run: RunState) -> dict[str, Any]:
        s: BrainMaskSettings = run.settings
        done = run.summary["stages"]["brain_mask"]
        model = run.shared["model"]
        meta = {"id": run.config.name, "version": run.config.version, "task": TASK, "kind": KIND,
                "network": {"name": NETWORK, "config": self.network_config(s)}, "labels": [],
                "mask": {"spacing": s.spacing, "min_size": max(s.patch_size), "orientation": "LPS",
                         "normalization": "p99"},
                "demo": bool(run.config.demo), "metrics": done.get("best", {}),
                "training": {"recipe": self.name, "config": dict(run.config.recipe.config), "seed": run.config.seed,
                             "cases": done["cases"], "val_cases": done["val_cases"], "seconds": done["seconds"],
                             "threads": done["threads"], "parameters": sum(p.numel() for p in model.parameters())}}
        name = f"{run.config.name}-{run.config.version}.pt"
        return {"bundle": name, "sha256": save_bundle(Path(run.out) / name, model.state_dict(), meta)}


RECIPE = BrainMaskRecipe()
