"""MCF semi-supervised training of the spine segmentation pair on 2D slices (METHODS §E.1, §E.5).

The spine pipeline is 2D: volumes on the CT grid (CT and registered MR, or the fused image) are cut into slices
along one array axis. The default is axis 0 (axial on an axis-aligned grid), the plane the inference engine's 2D
windows use for the task's patch (256, 256, 1); the paper does not name its plane (924 slices from 47 patients,
about 20 each, suggests sagittal MR slices: ``multimodalseg.postprocessing.spine.plane_axis(ct, "sagittal")``).
Training and inference must slice the same way. Every iteration takes
``labelled_batch`` slices of labelled cases and ``unlabelled_batch`` slices of unlabelled ones (MCF: 2 + 2),
padded to at least ``patch_size`` (the paper pads to 512 × 512) and randomly cropped to it; both subnets see the
same batch. Two SGD optimisers (lr 0.01, momentum 0.9, weight decay 1e-4), lr × 0.1 every 2,500 iterations,
6,000 iterations (MCF's reference); all of it in :class:`MCFConfig`. After the crop each slice gets nnU-Net's
default augmentation when ``MCFConfig.augmentation`` holds the config's ``augmentation`` block (the recipe passes
it; ``training.spine.slice_augment``); None (MCF's reference): none.

Example:
    >>> cases = [SliceCase(image, label), SliceCase(image2, None)]      # (C, Z, Y, X) float32, (Z, Y, X) int
    >>> model = MCFNet(2, 1, 3, **DEMO_CONFIG)
    >>> history = train_mcf(model, cases, MCFConfig(iterations=200, patch_size=(128, 128)))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from multimodalseg.nets.mcf import MCFNet

from training.core.checkpoint import LoopCheckpoint
from training.core.config import AugmentationConfig
from training.spine.mcf_losses import MCFLoss
from training.spine.slice_augment import SliceAugmenter


@dataclass
class SliceCase:
    """One case for slice sampling.

    Attributes:
        image: (C, Z, Y, X) float32, normalised, all channels on the reference (CT) grid.
        label: (Z, Y, X) class indices 0..K-1, or None for an unlabelled case.
        slices: slice indices (along the sampling axis) to draw from; None: all (labelled cases prefer the
            slices with foreground, see ``MCFConfig.pos_fraction``).
        axis: array axis (0, 1, 2 of Z, Y, X) to slice along; None: ``MCFConfig.axis``.
        name: for messages.
    """

    image: np.ndarray
    label: np.ndarray | None = None
    slices: Sequence[int] | None = None
    axis: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.image.ndim != 4:
            raise ValueError(f"case {self.name!r}: image must be (C, Z, Y, X), got shape {self.image.shape}")
        if self.label is not None and self.label.shape != self.image.shape[1:]:
            raise ValueError(f"case {self.name!r}: label shape {self.label.shape} != image {self.image.shape[1:]}")


@dataclass
class MCFConfig:
    """MCF's reference settings; [recon] values are the spine port's choices."""

    iterations: int = 6000
    labelled_batch: int = 2
    unlabelled_batch: int = 2
    patch_size: tuple[int, int] = (512, 512)
    axis: int = 0  # z: axial slices, as the engine's 2D windows [recon]
    pos_fraction: float = 0.8  # labelled draws from slices (and crops) with foreground [recon]
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 2500
    lr_gamma: float = 0.1
    temperature: float = 0.1
    cdr_weight: float = 0.5
    consistency: float = 0.1
    rampup: float = 40.0
    rampup_unit: int = 150
    seed: int = 1337
    augmentation: AugmentationConfig | None = None  # per-slice augmentation after the crop; None: none (MCF's)

    def __post_init__(self) -> None:
        if self.labelled_batch < 1 or self.unlabelled_batch < 0 or self.iterations < 0:
            raise ValueError("labelled_batch must be >= 1, unlabelled_batch and iterations >= 0")
        if len(self.patch_size) != 2 or any(s < 1 for s in self.patch_size):
            raise ValueError(f"patch_size must be two positive integers, got {self.patch_size}")
        if self.axis not in (0, 1, 2) or not 0.0 <= self.pos_fraction <= 1.0:
            raise ValueError("axis must be 0, 1 or 2 and pos_fraction in [0, 1]")

    def learning_rate(self, iteration: int) -> float:
        return self.lr * self.lr_gamma ** (iteration // self.lr_step)


class SliceSampler:
    """Random 2D slices (padded, cropped to ``patch_size``) of labelled and unlabelled cases."""

    def __init__(self, cases: Sequence[SliceCase], config: MCFConfig, rng: np.random.Generator) -> None:
        self.labelled = [c for c in cases if c.label is not None]
        self.unlabelled = [c for c in cases if c.label is None]
        if not self.labelled:
            raise ValueError("MCF needs at least one labelled case")
        if config.unlabelled_batch and not self.unlabelled:
            raise ValueError("unlabelled_batch > 0 but every case is labelled")
        self.config, self.rng = config, rng
        self.positive = [self._positive_slices(c) for c in self.labelled]
        self.augment = SliceAugmenter(config.augmentation, rng)  # draws from rng, so checkpoints restore it

    def _axis(self, case: SliceCase) -> int:
        return self.config.axis if case.axis is None else case.axis

    def _candidates(self, case: SliceCase) -> np.ndarray:
        n = case.image.shape[1 + self._axis(case)]
        return np.arange(n) if case.slices is None else np.asarray([s for s in case.slices if 0 <= s < n])

    def _positive_slices(self, case: SliceCase) -> np.ndarray:
        axis = self._axis(case)
        has_fg = (case.label > 0).any(axis=tuple(a for a in range(3) if a != axis))
        candidates = self._candidates(case)
        return candidates[has_fg[candidates]]

    def _slice(self, case: SliceCase, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        axis = self._axis(case)
        image = np.take(case.image, index, axis=1 + axis)
        label = None if case.label is None else np.take(case.label, index, axis=axis)
        return image, label

    def _crop(self, case: SliceCase, image: np.ndarray, label: np.ndarray | None,
              positive: bool) -> tuple[np.ndarray, np.ndarray | None]:
        ph, pw = self.config.patch_size
        h, w = image.shape[-2:]
        th, tw = max(h, ph), max(w, pw)
        top, left = (th - h) // 2, (tw - w) // 2
        fill = case.image.reshape(case.image.shape[0], -1).min(axis=1)  # background of each channel
        padded = np.empty((image.shape[0], th, tw), np.float32)
        padded[:] = fill[:, None, None]
        padded[:, top:top + h, left:left + w] = image
        lab = None
        if label is not None:
            lab = np.zeros((th, tw), np.int64)
            lab[top:top + h, left:left + w] = label
        if positive and lab is not None and (lab > 0).any():
            ys, xs = np.nonzero(lab > 0)
            k = self.rng.integers(len(ys))  # a crop that contains this foreground pixel
            y0 = self.rng.integers(max(0, ys[k] - ph + 1), min(ys[k], th - ph) + 1)
            x0 = self.rng.integers(max(0, xs[k] - pw + 1), min(xs[k], tw - pw) + 1)
        else:
            y0, x0 = self.rng.integers(th - ph + 1), self.rng.integers(tw - pw + 1)
        window = (slice(y0, y0 + ph), slice(x0, x0 + pw))
        return padded[(slice(None), *window)], None if lab is None else lab[window]

    def labelled_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for _ in range(n):
            i = self.rng.integers(len(self.labelled))
            case, positive = self.labelled[i], self.positive[i]
            use_positive = len(positive) > 0 and self.rng.random() < self.config.pos_fraction
            candidates = positive if use_positive else self._candidates(case)
            image, label = self._crop(case, *self._slice(case, int(self.rng.choice(candidates))), use_positive)
            image, label = self.augment(image, label)
            images.append(image)
            labels.append(label)
        return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))

    def unlabelled_batch(self, n: int) -> torch.Tensor:
        images = []
        for _ in range(n):
            case = self.unlabelled[self.rng.integers(len(self.unlabelled))]
            image, _ = self._crop(case, *self._slice(case, int(self.rng.choice(self._candidates(case)))), False)
            images.append(self.augment(image, None)[0])
        return torch.from_numpy(np.stack(images))


def make_optimizers(model: MCFNet, config: MCFConfig) -> tuple[torch.optim.SGD, torch.optim.SGD]:
    """One SGD optimiser per subnet (MCF trains them side by side)."""
    return tuple(torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                 weight_decay=config.weight_decay) for net in model.subnets)


def mcf_step(model: MCFNet, optimizers: Sequence[torch.optim.Optimizer], loss_fn: MCFLoss, labelled: torch.Tensor,
             labels: torch.Tensor, unlabelled: torch.Tensor | None, iteration: int) -> dict[str, float]:
    """One MCF iteration on a labelled and an unlabelled batch; returns the logged losses."""
    model.train()
    model.set_output("pair")
    batch = labelled if unlabelled is None or len(unlabelled) == 0 else torch.cat((labelled, unlabelled))
    logits_a, logits_b = model(batch)
    out = loss_fn(logits_a, logits_b, labels, len(labelled), iteration)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    out.total.backward()
    for opt in optimizers:
        opt.step()
    return {"loss_a": out.loss_a.item(), "loss_b": out.loss_b.item(), **out.parts}


def train_mcf(model: MCFNet, cases: Sequence[SliceCase], config: MCFConfig, *, device: str | torch.device = "cpu",
              callback: Callable[[int, dict[str, float]], None] | None = None,
              checkpoint: LoopCheckpoint | None = None) -> list[dict[str, float]]:
    """Train ``model`` for ``config.iterations`` MCF iterations; returns one log row per iteration.

    ``callback(iteration, row)`` is called after each one (logging, validation, early stop by raising);
    ``checkpoint`` saves the loop's state every few iterations and, when resuming, continues from it.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    sampler = SliceSampler(cases, config, rng)
    model.to(device)
    optimizers = make_optimizers(model, config)
    loss_fn = MCFLoss(model.num_classes, config.temperature, config.cdr_weight, config.consistency, config.rampup,
                      config.rampup_unit)
    named = dict(enumerate(optimizers))
    start, history = checkpoint.restore({"model": model}, {str(k): v for k, v in named.items()}, rng) \
        if checkpoint else (0, [])
    for iteration in range(start, config.iterations):
        lr = config.learning_rate(iteration)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        images, labels = sampler.labelled_batch(config.labelled_batch)
        unlabelled = sampler.unlabelled_batch(config.unlabelled_batch) if config.unlabelled_batch else None
        row = mcf_step(model, optimizers, loss_fn, images.to(device), labels.to(device),
                       None if unlabelled is None else unlabelled.to(device), iteration)
        row["lr"] = lr
        history.append(row)
        if callback is not None:
            callback(iteration, row)
        if checkpoint is not None:
            checkpoint.maybe_save(iteration, config.iterations - 1, {"model": model},
                                  {str(k): v for k, v in named.items()}, rng, history)
    return history


def config_dict(config: MCFConfig) -> dict:
    """The settings as JSON-ready metadata (bundles record what was trained with)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
