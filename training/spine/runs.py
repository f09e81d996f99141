"""Spine training runs: the MCF segmentation pair, its UNet-alone baseline, the CDDFuse fusion network, and the
metadata of their bundles (what the ``mcf`` and ``fusion`` recipes of :mod:`training.spine.recipes` call).

The spine loops work on 2D slices of prepared volumes (:mod:`training.spine.data`): MCF needs unlabelled batches
and two optimisers (:mod:`training.spine.mcf`), the fusion network two stages and four optimisers
(:mod:`training.spine.fusion`), so they are not the core's supervised loop.

The MCF bundle's network returns both subnets' logits along the channels (``output="concat"``) and declares
``inference.members = ["unet", "vnet"]``: the predictor averages the members' softmax for the labels and keeps
each member's argmax for the disagreement map. The UNet-alone baseline trains the UNet subnet on the labelled
cases only (same initial weights, iterations, batch, optimiser and seed).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from multimodalseg.inference.engine import NetworkInput, WindowSettings, predict_probabilities
from multimodalseg.nets.cddfuse import DEMO_CONFIG as FUSION_DEMO_CONFIG
from multimodalseg.nets.mcf import DEMO_CONFIG as MCF_DEMO_CONFIG
from multimodalseg.nets.mcf import MCFNet
from multimodalseg.tasks import get_task
from torch import nn

from training.core.checkpoint import LoopCheckpoint
from training.spine.data import SpineCase
from training.spine.fusion import FusionConfig
from training.spine.fusion import config_dict as fusion_config_dict
from training.spine.mcf import MCFConfig, SliceCase, SliceSampler, train_mcf
from training.spine.mcf import config_dict as mcf_config_dict

SPACING = (1.6, 1.6, 1.6)  # the phantoms' CT grid; the network grid of the demo bundle (ITK order, mm)
MEMBERS = ["unet", "vnet"]


@dataclass
class SegmentationRun:
    """A trained segmentation network with its scores."""

    model: nn.Module
    seconds: float
    dice: dict[str, float]
    history: list[dict[str, float]]


def slice_cases(cases: Sequence[SpineCase], labelled_ids: Sequence[str] | None) -> list[SliceCase]:
    """MCF slice cases: labels kept for ``labelled_ids`` (None: for all labelled cases), hidden for the rest.
    Case ids may repeat (a case and its single-modality variants share one id, and one labelled status)."""
    keep = None if labelled_ids is None else set(labelled_ids)
    return [SliceCase(c.image, c.label if (keep is None or c.id in keep) else None, name=c.id) for c in cases]


def sliced_along(case: SpineCase, axis: int) -> SpineCase:
    """The case with its slice axis (array axis ``axis`` of (Z, Y, X)) moved first: MCF's sampler, the Dice check
    and the inference engine's 2D windows all slice along axis 0, and the predictor moves the bundle's plane there
    the same way (``inference.spine_extras.slice_axis``)."""
    if axis == 0:
        return case
    image = np.ascontiguousarray(np.moveaxis(case.image, 1 + axis, 1))
    label = None if case.label is None else np.ascontiguousarray(np.moveaxis(case.label, axis, 0))
    return replace(case, image=image, label=label)


def dice_scores(model: nn.Module, cases: Sequence[SpineCase], roi: tuple[int, int], overlap: float = 0.25
                ) -> dict[str, float]:
    """Mean Dice per label over ``cases`` (labels needed), through the inference engine's 2D sliding window."""
    task = get_task("spine")
    settings = WindowSettings((1, *roi), overlap)
    net = NetworkInput(model.eval(), "softmax", two_d=True)
    per_label: dict[str, list[float]] = {lab.name: [] for lab in task.labels}
    cpu = torch.device("cpu")
    for case in cases:
        if case.label is None:
            raise ValueError(f"case {case.id} has no label to score against")
        pred = predict_probabilities(net, case.image, settings, cpu, cpu, None).argmax(0).numpy()
        for lab in task.labels:
            a, b = pred == lab.index, case.label == lab.index
            denom = a.sum() + b.sum()
            per_label[lab.name].append(float(2 * (a & b).sum() / denom) if denom else 1.0)
    return {name: float(np.mean(v)) for name, v in per_label.items()}


def build_mcf(seed: int, in_channels: int = 2, num_classes: int = 3,
              network: dict[str, Any] | None = None) -> MCFNet:
    """The MCF pair with ``network`` widths (``MCFNet`` keywords; None: the demo widths), initialised from
    ``seed`` (the UNet baseline takes this very UNet)."""
    torch.manual_seed(seed)
    return MCFNet(2, in_channels, num_classes, **network_config(network))


def network_config(network: dict[str, Any] | None) -> dict[str, Any]:
    """``MCFNet`` keywords from a config's ``network`` section (the demo widths where it is silent)."""
    out = {**MCF_DEMO_CONFIG, **dict(network or {})}
    out.pop("output", None)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def train_mcf_run(train: Sequence[SliceCase], val: Sequence[SpineCase], config: MCFConfig, *, in_channels: int = 2,
                  network: dict[str, Any] | None = None, checkpoint: LoopCheckpoint | None = None) -> SegmentationRun:
    model = build_mcf(config.seed, in_channels, network=network)
    t0 = time.perf_counter()
    history = train_mcf(model, train, config, checkpoint=checkpoint)
    seconds = time.perf_counter() - t0
    model.set_output("mean")  # log of the averaged softmax: the engine's softmax gives the MCF average
    dice = dice_scores(model, val, config.patch_size) if val else {}
    model.set_output("pair")
    return SegmentationRun(model, seconds, dice, history)


def train_unet_alone(train: Sequence[SliceCase], val: Sequence[SpineCase], config: MCFConfig, *, in_channels: int = 2,
                     network: dict[str, Any] | None = None) -> SegmentationRun:
    """MCF's UNet subnet trained on the labelled cases alone: same start, sampler, budget, optimiser, seed.

    The loss is MCF's supervised part without the difference review (which needs the second net): cross-entropy
    plus the squared-denominator foreground Dice loss.
    """
    unet = build_mcf(config.seed, in_channels, network=network).unet
    labelled = [c for c in train if c.label is not None]
    torch.manual_seed(config.seed)
    sampler = SliceSampler(labelled, replace(config, unlabelled_batch=0), np.random.default_rng(config.seed))
    opt = torch.optim.SGD(unet.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    dice_loss = DiceLoss(include_background=False, squared_pred=True, smooth_nr=1e-5, smooth_dr=1e-5, batch=True)
    history = []
    t0 = time.perf_counter()
    unet.train()
    for iteration in range(config.iterations):
        for group in opt.param_groups:
            group["lr"] = config.learning_rate(iteration)
        images, labels = sampler.labelled_batch(config.labelled_batch)
        logits = unet(images)
        onehot = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).float()
        loss = F.cross_entropy(logits, labels) + dice_loss(logits.softmax(1), onehot)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"loss": loss.item()})
    seconds = time.perf_counter() - t0
    dice = dice_scores(unet, val, config.patch_size) if val else {}
    return SegmentationRun(unet, seconds, dice, history)


def mcf_bundle_meta(config: MCFConfig, model: MCFNet, model_id: str, version: str, *, dice: dict[str, float],
                    training: dict[str, Any], network: dict[str, Any] | None = None,
                    spacing: Sequence[float] | None = SPACING,
                    fusion: dict[str, Any] | None = None, plane: str | None = None) -> dict[str, Any]:
    """Metadata of an MCF bundle. ``fusion`` (``training.spine.fused.fusion_reference``): the network segments the
    fused image of that fusion bundle (``preprocessing.input: fused``, 1 channel); None: CT and MR as channels.
    ``plane``: the slice plane (``inference.plane``); None: slices along ``config.axis`` (``inference.slice_axis``)."""
    task = get_task("spine")
    roi = [int(config.patch_size[1]), int(config.patch_size[0]), 1]  # ITK (x, y, z): one slice, moved to z
    fused = fusion is not None
    where = {"plane": plane} if plane else {"slice_axis": int(config.axis)}
    inputs = "the fused CT-MR image" if fused else "CT and MR as two channels"
    return {
        "id": model_id, "version": version, "task": task.id, "kind": "segmentation",
        "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in task.labels],
        "output_kind": "labels",
        "network": {"name": "mcf", "config": {"spatial_dims": 2, "in_channels": 1 if fused else len(task.roles),
                                              "out_channels": model.num_classes, **network_config(network),
                                              "output": "concat"}},
        "preprocessing": {"spacing": None if spacing is None else [float(s) for s in spacing], "patch_size": roi,
                          "input": "fused" if fused else "channels",
                          "normalization": {s.role: s.normalization for s in task.inputs}, "roles": list(task.roles)},
        **({"fusion_model": dict(fusion)} if fused else {}),
        "inference": {"roi_size": roi, "overlap": 0.25, "members": list(MEMBERS), **where},
        "training": {"method": f"MCF (METHODS E.5), 2D slices ({plane or f'axis {config.axis}'}) of {inputs}",
                     **mcf_config_dict(config), **training},
        "metrics": {f"dice_{k.replace(' ', '_')}": round(v, 4) for k, v in dice.items()},
        "demo": True,
        "description": f"Spine vertebra/disc segmentation of {inputs}: MCF UNet+VNet pair; writes a disagreement map. "
                       "Not for clinical images.",
        "created": datetime.date.today().isoformat(),
    }


def fusion_bundle_meta(config: FusionConfig, model_id: str, version: str, training: dict[str, Any],
                       metrics: dict[str, Any], network: dict[str, Any] | None = None) -> dict[str, Any]:
    from multimodalseg.inference.fusion import DEFAULT_SETTINGS

    task = get_task("spine")
    # Inference pads as training did: ``pad_to`` null (unpadded crops: whole slices fused unpadded, any size works)
    # or the padded size and mode of training (the spine paper: 512 x 512).
    widths = {**FUSION_DEMO_CONFIG, **dict(network or {})}
    net_config = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1,
                  **{k: list(v) if isinstance(v, tuple) else v for k, v in widths.items()},
                  "pad_to": list(config.pad_to) if config.pad_to else None, "pad_mode": config.pad_mode}
    return {
        "id": model_id, "version": version, "task": task.id, "kind": "fusion",
        "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in task.labels],
        "network": {"name": "cddfuse", "config": net_config},
        "preprocessing": {"roles": ["ct", "mr"], "spacing": None},
        "fusion": {**DEFAULT_SETTINGS, "axis": config.axis, "roles": ["ct", "mr"]},
        "training": {"method": "CDDFuse two-stage (METHODS E.3)", **fusion_config_dict(config), **training},
        "metrics": metrics,
        "demo": True,
        # what the run knows: its widths and how many cases (the catalog entry says where the data came from)
        "description": f"Spine CT-MR fusion image: CDDFuse-style network ({widths.get('features')} features) trained "
                       f"on {len(training.get('cases') or [])} CT/MR cases (unsupervised, labels not used). "
                       "Not for clinical images.",
        "created": datetime.date.today().isoformat(),
    }


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
