"""Two-stage CDDFuse training on CT/MR slices (METHODS §E.3) for ``multimodalseg.nets.cddfuse.CDDFuse``.

Volumes are the CT and the registered MR on the CT grid, scaled to [0, 1] as inference scales them
(``multimodalseg.inference.fusion.scale_inputs``). Each iteration draws ``batch`` random slices along ``axis``,
pads them to at least ``patch_size`` and crops a random ``patch_size`` window. With ``pad_to`` (the spine paper:
512 x 512) a slice is first padded exactly as inference pads it (``nets.cddfuse.pad_slices`` with ``pad_mode``;
the bundle records both, so ``FusionRunner`` pads the same way); without it, with zeros to the patch. Windows with
almost no contrast in both images are redrawn (CDDFuse drops low-contrast patches). Stage I (the first
``stage_one_fraction`` of the iterations, 40 % as CDDFuse's 40 of 120 epochs) trains encoder and decoder as an
auto-encoder per modality; stage II adds the fusion layers. Four Adam optimisers (encoder, decoder, base fusion,
detail fusion), gradient-norm clipping 0.01 per module, the learning rate halved every ``lr_step`` iterations
(CDDFuse: every 20 epochs) down to ``lr_min``; the fusion layers' schedule starts with stage II.
``optimizer: adamw`` makes the weight decay decoupled (the spine paper: AdamW, 0.025); ``epochs`` (passes over all
slices of the data, the paper: 100) sets ``iterations`` from the data. All in :class:`FusionConfig`;
``training.spine.fusion_losses`` has the losses and the optimisation step.

Example:
    >>> model = CDDFuse(2, 1, 1, **DEMO_CONFIG)
    >>> history = train_fusion(model, [(ct01, mr01)], FusionConfig(iterations=200, patch_size=(64, 64)))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from multimodalseg.nets.cddfuse import CDDFuse

from training.core.checkpoint import LoopCheckpoint
from training.spine.fusion_losses import CDDFuseLoss, fusion_step, make_optimizers


@dataclass
class FusionConfig:
    """CDDFuse's settings scaled to iterations; [recon] values are this port's."""

    iterations: int = 3000
    stage_one_fraction: float = 0.4
    batch: int = 8
    patch_size: tuple[int, int] = (128, 128)
    axis: int = 0
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_step: int = 500  # [recon] CDDFuse: every 20 of 120 epochs
    lr_gamma: float = 0.5
    lr_min: float = 1e-6
    clip_norm: float = 0.01
    ssim: str = "kornia"
    min_contrast: float = 0.02  # [recon] std below this in both images: a background patch, redrawn
    seed: int = 0
    optimizer: str = "adam"  # CDDFuse; "adamw": decoupled weight decay (the spine paper)
    epochs: int | None = None  # set: iterations = ceil(epochs x slices / batch), counted on the data
    pad_to: tuple[int, int] | None = None  # pad slices as inference does (the spine paper: 512 x 512)
    pad_mode: str = "replicate"  # with pad_to: nets.cddfuse.pad_slices' mode, recorded in the bundle

    def __post_init__(self) -> None:
        from multimodalseg.nets.cddfuse import PAD_MODES

        if self.iterations < 0 or self.batch < 1 or not 0.0 <= self.stage_one_fraction <= 1.0:
            raise ValueError("iterations must be >= 0, batch >= 1 and stage_one_fraction in [0, 1]")
        if len(self.patch_size) != 2 or any(s < 1 for s in self.patch_size) or self.axis not in (0, 1, 2):
            raise ValueError("patch_size must be two positive integers and axis 0, 1 or 2")
        if self.optimizer not in ("adam", "adamw") or self.pad_mode not in PAD_MODES:
            raise ValueError(f"optimizer must be adam or adamw and pad_mode one of {PAD_MODES}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.pad_to is not None:
            self.pad_to = (int(self.pad_to[0]), int(self.pad_to[1]))
            if min(self.pad_to) < 1 or any(p > t for p, t in zip(self.patch_size, self.pad_to)):
                raise ValueError(f"pad_to {list(self.pad_to)} must be positive and at least patch_size "
                                 f"{list(self.patch_size)}")

    def for_slices(self, slices: int) -> FusionConfig:
        """With ``epochs``: the iterations that make that many passes over ``slices`` slices (else unchanged)."""
        if self.epochs is None:
            return self
        return replace(self, iterations=max(1, -(-self.epochs * slices // self.batch)))

    @property
    def stage_one_iterations(self) -> int:
        return int(round(self.iterations * self.stage_one_fraction))

    def stage(self, iteration: int) -> int:
        return 1 if iteration < self.stage_one_iterations else 2

    def learning_rate(self, module: str, iteration: int) -> float:
        """The module's learning rate; the fusion layers' decay counts from the start of stage II."""
        start = self.stage_one_iterations if module in ("base_fusion", "detail_fusion") else 0
        steps = max(0, iteration - start) // self.lr_step
        return max(self.lr_min, self.lr * self.lr_gamma ** steps)


class FusionSliceSampler:
    """Random zero-padded, randomly cropped CT/MR slice pairs from volumes scaled to [0, 1]."""

    def __init__(self, volumes: Sequence[tuple[np.ndarray, np.ndarray]], config: FusionConfig,
                 rng: np.random.Generator) -> None:
        if not volumes:
            raise ValueError("no volumes to sample from")
        for ct, mr in volumes:
            if ct.shape != mr.shape or ct.ndim != 3:
                raise ValueError(f"CT and MR volumes must be 3D of one shape, got {ct.shape} and {mr.shape}")
        self.volumes, self.config, self.rng = volumes, config, rng

    def _pair(self) -> tuple[np.ndarray, np.ndarray]:
        ct, mr = self.volumes[self.rng.integers(len(self.volumes))]
        axis = self.config.axis
        index = int(self.rng.integers(ct.shape[axis]))
        ph, pw = self.config.patch_size
        slices = [np.take(v, index, axis=axis) for v in (ct, mr)]
        if self.config.pad_to is not None:  # as CDDFuse.forward pads at inference, same function and mode
            from multimodalseg.nets.cddfuse import pad_slices

            h, w = slices[0].shape
            size = (max(h, self.config.pad_to[0]), max(w, self.config.pad_to[1]))
            slices = [pad_slices(torch.from_numpy(np.ascontiguousarray(s))[None, None], size,
                                 self.config.pad_mode)[0][0, 0].numpy() for s in slices]
        h, w = slices[0].shape
        th, tw = max(h, ph), max(w, pw)
        top, left = (th - h) // 2, (tw - w) // 2
        y0, x0 = int(self.rng.integers(th - ph + 1)), int(self.rng.integers(tw - pw + 1))
        out = []
        for s in slices:
            padded = np.zeros((th, tw), np.float32)
            padded[top:top + h, left:left + w] = s
            out.append(padded[y0:y0 + ph, x0:x0 + pw])
        return out[0], out[1]

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        cts, mrs = [], []
        for _ in range(n):
            for _attempt in range(10):
                ct, mr = self._pair()
                if max(ct.std(), mr.std()) >= self.config.min_contrast:
                    break
            cts.append(ct)
            mrs.append(mr)
        return torch.from_numpy(np.stack(cts))[:, None], torch.from_numpy(np.stack(mrs))[:, None]


def train_fusion(model: CDDFuse, volumes: Sequence[tuple[np.ndarray, np.ndarray]], config: FusionConfig, *,
                 device: str | torch.device = "cpu",
                 callback: Callable[[int, dict[str, float]], None] | None = None,
                 checkpoint: LoopCheckpoint | None = None) -> list[dict[str, float]]:
    """Train ``model`` for ``config.iterations`` iterations (stage I then II); one log row per iteration.

    Args:
        volumes: ``(ct01, mr01)`` pairs of ``(Z, Y, X)`` float32 in [0, 1] on one grid each.
        callback: ``callback(iteration, row)`` after each iteration.
        checkpoint: saves the loop's state every few iterations and, when resuming, continues from it.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    sampler = FusionSliceSampler(volumes, config, rng)
    model.to(device)
    optimizers = make_optimizers(model, config.lr, config.weight_decay, decoupled=config.optimizer == "adamw")
    loss = CDDFuseLoss(ssim=config.ssim)
    start, history = checkpoint.restore({"model": model}, optimizers, rng) if checkpoint else (0, [])
    for iteration in range(start, config.iterations):
        for name, opt in optimizers.items():
            for group in opt.param_groups:
                group["lr"] = config.learning_rate(name, iteration)
        ct, mr = sampler.batch(config.batch)
        stage = config.stage(iteration)
        row = fusion_step(model, optimizers, loss, ct.to(device), mr.to(device), stage, config.clip_norm)
        row.update({"stage": float(stage), "lr": config.learning_rate("encoder", iteration)})
        history.append(row)
        if callback is not None:
            callback(iteration, row)
        if checkpoint is not None:
            checkpoint.maybe_save(iteration, config.iterations - 1, {"model": model}, optimizers, rng, history)
    model.eval()
    return history


def config_dict(config: FusionConfig) -> dict:
    """The settings as JSON-ready metadata."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
