"""Spine workflow training: the MCF segmentation bundle, its UNet-alone baseline, and the CDDFuse fusion bundle.

Commands (``python -m training.spine --help``)::

    python -m training.spine mcf --data DIR --out spine-mcf.pt [--labelled-fraction 0.2] [--val-data DIR]
                                 [--compare-unet] [--summary JSON]
    python -m training.spine fusion --data DIR --out spine-fusion.pt

Both read a spine dataset folder (``case_NNN/{ct,mr,label}.nii.gz`` plus an optional ``mr_to_ct.tfm``;
``training.spine_data``) and write a model bundle the predictor loads (``multimodalseg.bundles.save_bundle``).
The supervised trainer of ``python -m training fit`` works on 3D patches of labelled cases through MONAI loaders
and validates by 3D sliding window; MCF needs 2D slices, unlabelled batches and two optimisers, and the fusion
network two stages and four optimisers, so these loops live in ``training.mcf`` and ``training.fusion`` and are
driven from here.

The MCF bundle's network returns both subnets' logits along the channels (``output="concat"``) and declares
``inference.members = ["unet", "vnet"]``: the predictor averages the members' softmax for the labels and keeps
each member's argmax for the disagreement map. ``--compare-unet`` also trains the UNet subnet alone on the
labelled cases (same initial weights, iterations, batch, optimiser and seed) and reports both Dice scores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from multimodalseg.bundles import save_bundle
from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write_json
from multimodalseg.inference.engine import NetworkInput, WindowSettings, predict_probabilities
from multimodalseg.nets.cddfuse import DEMO_CONFIG as FUSION_DEMO_CONFIG
from multimodalseg.nets.cddfuse import CDDFuse
from multimodalseg.nets.mcf import DEMO_CONFIG as MCF_DEMO_CONFIG
from multimodalseg.nets.mcf import MCFNet
from multimodalseg.tasks import get_task
from torch import nn

from training.fusion import FusionConfig, train_fusion
from training.fusion import config_dict as fusion_config_dict
from training.mcf import MCFConfig, SliceCase, SliceSampler, train_mcf
from training.mcf import config_dict as mcf_config_dict
from training.spine_data import SpineCase, choose_labelled, load_cases

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
    """MCF slice cases: labels kept for ``labelled_ids`` (None: for all labelled cases), hidden for the rest."""
    keep = None if labelled_ids is None else set(labelled_ids)
    return [SliceCase(c.image, c.label if (keep is None or c.id in keep) else None, name=c.id) for c in cases]


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


def build_mcf(seed: int, in_channels: int = 2, num_classes: int = 3) -> MCFNet:
    """The demo MCF pair, initialised from ``seed`` (the UNet baseline takes this very UNet)."""
    torch.manual_seed(seed)
    return MCFNet(2, in_channels, num_classes, **MCF_DEMO_CONFIG)


def train_mcf_run(train: Sequence[SliceCase], val: Sequence[SpineCase], config: MCFConfig) -> SegmentationRun:
    model = build_mcf(config.seed)
    t0 = time.perf_counter()
    history = train_mcf(model, train, config)
    seconds = time.perf_counter() - t0
    model.set_output("mean")  # log of the averaged softmax: the engine's softmax gives the MCF average
    dice = dice_scores(model, val, config.patch_size) if val else {}
    model.set_output("pair")
    return SegmentationRun(model, seconds, dice, history)


def train_unet_alone(train: Sequence[SliceCase], val: Sequence[SpineCase], config: MCFConfig) -> SegmentationRun:
    """MCF's UNet subnet trained on the labelled cases alone: same start, sampler, budget, optimiser, seed.

    The loss is MCF's supervised part without the difference review (which needs the second net): cross-entropy
    plus the squared-denominator foreground Dice loss.
    """
    unet = build_mcf(config.seed).unet
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
                    training: dict[str, Any]) -> dict[str, Any]:
    task = get_task("spine")
    roi = [int(config.patch_size[1]), int(config.patch_size[0]), 1]  # ITK (x, y, z): one axial slice
    return {
        "id": model_id, "version": version, "task": task.id, "kind": "segmentation",
        "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in task.labels],
        "output_kind": "labels",
        "network": {"name": "mcf", "config": {"spatial_dims": 2, "in_channels": len(task.roles),
                                              "out_channels": model.num_classes,
                                              "unet_features": list(MCF_DEMO_CONFIG["unet_features"]),
                                              "vnet_features": MCF_DEMO_CONFIG["vnet_features"], "output": "concat"}},
        "preprocessing": {"spacing": list(SPACING), "patch_size": roi,
                          "normalization": {s.role: s.normalization for s in task.inputs}, "roles": list(task.roles)},
        "inference": {"roi_size": roi, "overlap": 0.25, "members": list(MEMBERS)},
        "training": {"method": "MCF (METHODS E.5), 2D axial slices", **mcf_config_dict(config), **training},
        "metrics": {f"dice_{k.replace(' ', '_')}": round(v, 4) for k, v in dice.items()},
        "demo": True,
        "description": "Spine CT+MR vertebra/disc segmentation: MCF UNet+VNet pair (demo widths) trained on phantoms "
                       "with 20 % of the cases labelled; writes a disagreement map. Not for clinical images.",
        "created": datetime.date.today().isoformat(),
    }


def fusion_bundle_meta(config: FusionConfig, model_id: str, version: str, training: dict[str, Any],
                       metrics: dict[str, Any]) -> dict[str, Any]:
    from multimodalseg.inference.fusion import DEFAULT_SETTINGS

    task = get_task("spine")
    # Trained on unpadded slice crops, so whole slices are fused unpadded too (any size works: no down-sampling).
    net_config = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1,
                  **{k: list(v) if isinstance(v, tuple) else v for k, v in FUSION_DEMO_CONFIG.items()}, "pad_to": None}
    return {
        "id": model_id, "version": version, "task": task.id, "kind": "fusion",
        "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in task.labels],
        "network": {"name": "cddfuse", "config": net_config},
        "preprocessing": {"roles": ["ct", "mr"], "spacing": None},
        "fusion": {**DEFAULT_SETTINGS, "axis": config.axis, "roles": ["ct", "mr"]},
        "training": {"method": "CDDFuse two-stage (METHODS E.3)", **fusion_config_dict(config), **training},
        "metrics": metrics,
        "demo": True,
        "description": "Spine CT-MR fusion image: CDDFuse-style network (demo width) trained on phantoms. "
                       "Not for clinical images.",
        "created": datetime.date.today().isoformat(),
    }


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run_mcf(args: argparse.Namespace) -> int:
    cases = load_cases(args.data, SPACING, limit=args.limit)
    val = load_cases(args.val_data, SPACING) if args.val_data else []
    labelled = choose_labelled(cases, args.labelled_fraction, args.seed)
    train = slice_cases(cases, labelled)
    config = MCFConfig(iterations=args.iterations, patch_size=(args.patch, args.patch), lr=args.lr, seed=args.seed,
                       lr_step=args.lr_step)
    print(f"MCF: {len(labelled)} labelled ({', '.join(labelled)}), {len(cases) - len(labelled)} unlabelled, "
          f"{config.iterations} iterations", file=sys.stderr)
    mcf = train_mcf_run(train, val, config)
    print(f"MCF trained in {mcf.seconds:.0f} s; validation Dice {mcf.dice}", file=sys.stderr)
    summary: dict[str, Any] = {"labelled_cases": labelled, "unlabelled_cases": [c.id for c in cases
                                                                               if c.id not in labelled],
                               "validation_cases": [c.id for c in val], "mcf": {"seconds": round(mcf.seconds, 1),
                                                                                "dice": mcf.dice}}
    if args.compare_unet:
        unet = train_unet_alone(train, val, config)
        print(f"UNet alone trained in {unet.seconds:.0f} s; validation Dice {unet.dice}", file=sys.stderr)
        summary["unet_alone"] = {"seconds": round(unet.seconds, 1), "dice": unet.dice}
    meta = mcf_bundle_meta(config, mcf.model, args.id, args.version, dice=mcf.dice,
                           training={"labelled_cases": labelled, "cases": len(cases), "seconds": round(mcf.seconds, 1),
                                     "validation_cases": [c.id for c in val], "parameters": _param_count(mcf.model),
                                     "threads": torch.get_num_threads(),
                                     **({"unet_alone_dice": summary["unet_alone"]["dice"]} if args.compare_unet
                                        else {})})
    digest = save_bundle(args.out, mcf.model.state_dict(), meta)
    summary.update({"bundle": str(args.out), "sha256": digest, "bytes": Path(args.out).stat().st_size})
    if args.summary:
        atomic_write_json(args.summary, summary)
    print(json.dumps(summary, indent=2))
    return 0


def run_fusion(args: argparse.Namespace) -> int:
    from multimodalseg.inference.fusion import scale_inputs

    cases = load_cases(args.data, None, with_labels=False, limit=args.limit)
    volumes = [scale_inputs(c.ct_hu, c.mr) for c in cases]
    config = FusionConfig(iterations=args.iterations, batch=args.batch, patch_size=(args.patch, args.patch),
                          lr=args.lr, lr_step=args.lr_step, seed=args.seed)
    torch.manual_seed(args.seed)
    model = CDDFuse(2, 1, 1, **{**FUSION_DEMO_CONFIG, "pad_to": None})
    t0 = time.perf_counter()

    def log(iteration: int, row: dict[str, float]) -> None:
        if iteration % 25 == 0 or iteration == config.iterations - 1:
            print(f"iteration {iteration}: stage {int(row['stage'])} loss {row['loss']:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    history = train_fusion(model, volumes, config, callback=log)
    seconds = time.perf_counter() - t0
    last = history[-min(len(history), 25):]
    metrics = {"final_loss": round(float(np.mean([r["loss"] for r in last])), 4)} if last else {}
    meta = fusion_bundle_meta(config, args.id, args.version,
                              {"cases": [c.id for c in cases], "seconds": round(seconds, 1),
                               "parameters": _param_count(model), "threads": torch.get_num_threads()}, metrics)
    digest = save_bundle(args.out, model.state_dict(), meta)
    summary = {"bundle": str(args.out), "sha256": digest, "bytes": Path(args.out).stat().st_size,
               "seconds": round(seconds, 1), **metrics}
    if args.summary:
        atomic_write_json(args.summary, summary)
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.spine", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("mcf", help="train the MCF segmentation pair and export a bundle")
    p.add_argument("--data", required=True, help="spine dataset folder (training cases)")
    p.add_argument("--val-data", help="spine dataset folder with labelled validation cases")
    p.add_argument("--out", required=True, type=Path, help="bundle file (.pt)")
    p.add_argument("--labelled-fraction", type=float, default=0.2, help="share of cases whose labels are used")
    p.add_argument("--iterations", type=int, default=6000, help="MCF iterations (reference: 6000)")
    p.add_argument("--patch", type=int, default=64, help="slice patch size (multiple of 16)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (0.01)")
    p.add_argument("--lr-step", type=int, default=2500, help="lr x 0.1 every N iterations (2500)")
    p.add_argument("--compare-unet", action="store_true", help="also train the UNet alone on the labelled cases")
    p.add_argument("--limit", type=int, help="only the first N cases")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--id", default="spine-mcf-demo")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--summary", help="write the run summary (Dice, times) as JSON")
    p.set_defaults(func=run_mcf)
    p = sub.add_parser("fusion", help="train the CDDFuse fusion network (two stages) and export a bundle")
    p.add_argument("--data", required=True, help="spine dataset folder (labels not needed)")
    p.add_argument("--out", required=True, type=Path, help="bundle file (.pt)")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-step", type=int, default=500, help="lr x 0.5 every N iterations")
    p.add_argument("--limit", type=int, help="only the first N cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--id", default="spine-fusion-demo")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--summary", help="write the run summary as JSON")
    p.set_defaults(func=run_fusion)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if getattr(args, "out", None) is not None and args.out.suffix != ".pt":
        print(f"training.spine: error: {args.out}: a bundle file name must end in .pt", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"training.spine {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
