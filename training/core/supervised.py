"""The supervised recipe: data, integrity check, network, loss, optimiser, logger, trainer, in one stage.

:func:`fit` trains one supervised stage in a folder (other recipes' stages call it too); :data:`RECIPE` is the
``supervised`` recipe of ``python -m training fit``. ``recipe.config.trainer`` picks the loop by name
(:data:`TRAINERS`: ``supervised``, or ``modality_conditioned`` for a ``conditional_modality`` network).
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.utils import set_determinism
from multimodalseg.bundles import Bundle, load_bundle
from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write_json
from multimodalseg.nets import NETWORKS, build_network
from multimodalseg.nets.cin import pin_legacy_scope
from multimodalseg.tasks import get_task
from multimodalseg.tasks.spec import TaskSpec
from torch import nn

from training.core.config import TrainingConfig, save_config
from training.core.data import Split, split_cases, synthetic_split, train_loader, val_loader
from training.core.ddp import DistContext, barrier, init_distributed, shutdown
from training.core.evaluation import class_names, out_channels
from training.core.loggers import RunLogger
from training.core.losses import build_loss
from training.core.optim import build_optimizer, build_scheduler
from training.core.recipes import NetworkInfo, Plan, Recipe, RunState, Stage, count_parameters
from training.core.trainer import FitResult, SupervisedTrainer
from training.core.transforms import network_spacing, patch_size, train_transforms
from training.datasets import Case, check_dataset, find_cases


def network_spec(config: TrainingConfig, task: TaskSpec, bundle: Bundle | None = None) -> dict[str, Any]:
    """``{"name", "config"}`` of the network: the config's (channels from the task), or the bundle's when
    fine-tuning (a config naming another network is refused)."""
    if bundle is not None:
        spec = bundle.meta["network"]
        if config.model.network not in (None, spec["name"]):
            raise UserError(f"--init-from bundle holds a {spec['name']} network, the config asks for "
                            f"{config.model.network}", bundle.path)
        # An old bundle names no CIN scope: it was trained with "all" (multimodalseg.nets.cin.pin_legacy_scope).
        return {"name": spec["name"], "config": pin_legacy_scope(dict(spec.get("config", {})))}
    name = config.model.network or task.network
    if name not in NETWORKS:
        raise UserError(f"unknown network '{name}' in model.network (known: {', '.join(sorted(NETWORKS))})")
    wanted = {"spatial_dims": 3, "in_channels": len(task.inputs), "out_channels": out_channels(task)}
    for key in ("in_channels", "out_channels"):
        if key in config.model.config and config.model.config[key] != wanted[key]:
            raise UserError(f"model.config.{key} is {config.model.config[key]}, task {task.id} needs {wanted[key]}")
    return {"name": name, "config": {**wanted, **config.model.config}}


def make_network(spec: dict[str, Any]) -> nn.Module:
    try:
        return build_network(spec["name"], **spec["config"])
    except (TypeError, ValueError) as exc:
        raise UserError(f"cannot build network {spec['name']} with model.config {spec['config']}: {exc}") from None


def check_patch(model: nn.Module, in_channels: int, patch_xyz: list[int], device: torch.device) -> None:
    """One forward pass of a zero patch through a copy of the network in training mode, so that a patch the
    network cannot take (too small for its depth) is a config error now rather than a crash in epoch 1."""
    probe = copy.deepcopy(model).to(device).train()
    shape = (1, in_channels, *reversed(patch_xyz))
    try:
        with torch.no_grad():
            # A modality-conditioned network (METHODS §D) needs a modality id; any one probes the shapes.
            from multimodalseg.nets.cin import ConditionalInstanceNorm

            conditional = any(isinstance(m, ConditionalInstanceNorm) for m in model.modules())
            kwargs = {"modality": 0} if conditional else {}
            probe(torch.zeros(shape, device=device), **kwargs)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"the network cannot take patches of {patch_xyz} voxels (augmentation.patch_size): "
                        f"{first}") from None


def load_cases(config: TrainingConfig, task: TaskSpec, *, quiet: bool = False) -> tuple[str, list[Case]]:
    """Find the cases and run the integrity check; the report goes to stderr and problems refuse the run.
    On-the-fly synthetic training without ``--data`` has no cases (and no validation)."""
    if config.data.synthetic.on_the_fly:
        from training.core.synthetic_source import training_anatomy

        training_anatomy(task.id, config.data.synthetic)  # a bad anatomy folder fails now, not in epoch 1
        if not config.data.root:
            return "synthetic", []
    if not config.data.root:
        raise UserError("no dataset folder: give --data DIR or data.root in the config")
    layout, cases = find_cases(task, config.data.root, config.data.layout, convention=config.data.label_convention,
                               co_registered=config.data.co_registered)
    report = check_dataset(task, cases, layout)
    if not report.ok:
        if not quiet:
            print(report.format(), file=sys.stderr)
        report.raise_if_problems()
    return layout, cases


def fit(config: TrainingConfig, out_dir: str | os.PathLike, *, resume: str | os.PathLike | None = None,
        overwrite: bool = False, trainer_cls: type[SupervisedTrainer] = SupervisedTrainer,
        ctx: DistContext | None = None) -> FitResult:
    """Train as configured; writes ``config.yaml``, logs, checkpoints and ``summary.json`` under ``out_dir``."""
    task = get_task(config.task)
    out = Path(out_dir)
    last = out / "checkpoints" / "last.pt"
    if resume is None and last.exists() and not overwrite:
        raise UserError("folder already holds a run (checkpoints/last.pt); resume it with --resume, or choose "
                        "another --out", out)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    own_ctx = ctx is None
    ctx = ctx or init_distributed(config.train.device)
    try:
        bundle = load_bundle(config.init_from, task=task.id) if config.init_from else None
        spec = network_spec(config, task, bundle)
        if bundle is not None and config.model.config and ctx.is_main and any(
                spec["config"].get(k) != v for k, v in config.model.config.items()):
            print(f"note: fine-tuning keeps the network of {bundle.path} ({spec['config']}); model.config is not "
                  "used", file=sys.stderr)
        layout, cases = load_cases(config, task, quiet=not ctx.is_main)
        set_determinism(seed=config.seed)
        model = make_network(spec)
        if bundle is not None:
            model.load_state_dict(bundle.state_dict, strict=True)
        check_patch(model, len(task.inputs), patch_size(config, task), ctx.device)
        split = synthetic_split(cases, config) if config.data.synthetic.on_the_fly else split_cases(cases, config)
        train_dl = train_loader(split.train, config, task, ctx)
        # Rank 0 validates alone; the other ranks only need to know that validation happens (an empty loader).
        val_dl = val_loader(split.val, config, task) if ctx.is_main else ([] if split.val else None)
        try:
            loss = build_loss(config.loss.name, task.output_kind, **config.loss.config)
            optimizer = build_optimizer(model.parameters(), config.optimizer)
            scheduler = build_scheduler(optimizer, config.scheduler, config.train.epochs)
        except (TypeError, ValueError) as exc:
            raise UserError(f"config: {exc}") from None
        resume_path = None if resume is None else (last if os.fspath(resume) == "last" else Path(resume))
        trainer = trainer_cls(config, task, model, loss, optimizer, scheduler, out, None, ctx)
        trainer.network_spec = spec
        start_epoch = trainer.resume(resume_path) if resume_path is not None else None
        if ctx.is_main:
            save_config(config, out / "config.yaml")
        trainer.logger = RunLogger(out, config.logging, class_names(task), enabled=ctx.is_main,
                                   resume_epoch=start_epoch)
        try:
            result = trainer.fit(train_dl, val_dl)
        finally:
            trainer.logger.close()
        if ctx.is_main:
            _write_summary(out / "summary.json", config, task, layout, split, result, ctx)
        barrier(ctx)
        return result
    finally:
        if own_ctx:
            shutdown(ctx)


def _write_summary(path: Path, config: TrainingConfig, task: TaskSpec, layout: str, split: Split,
                   result: FitResult, ctx: DistContext) -> None:
    summary = {
        "task": task.id, "name": config.name, "layout": layout,
        "train_cases": [c.id for c in split.train], "val_cases": [c.id for c in split.val],
        "unlabelled_cases": [c.id for c in split.unlabelled],
        "last_epoch": result.last_epoch, "best_epoch": result.best_epoch,
        "best_dice_mean": result.best_metric if result.best_metric > float("-inf") else None,
        "stopped_early": result.stopped_early, "best_metrics": result.best_metrics,
        "world_size": ctx.world_size, "device": str(ctx.device), "torch": torch.__version__,
    }
    if config.data.synthetic.on_the_fly:
        summary["synthetic"] = {"on_the_fly": True, "n_per_epoch": config.data.synthetic.n_per_epoch,
                                "anatomy": config.data.synthetic.anatomy or "packaged"}
    atomic_write_json(path, summary)


# name -> "module:attribute" of a SupervisedTrainer subclass (``recipe.config.trainer``).
TRAINERS: dict[str, str] = {
    "supervised": "training.core.trainer:SupervisedTrainer",
    "modality_conditioned": "training.whole_heart.conditioned:ModalityConditionedTrainer",
}


def trainer_class(name: str) -> type[SupervisedTrainer]:
    if name not in TRAINERS:
        raise UserError(f"unknown trainer '{name}' in recipe.config.trainer (known: {', '.join(sorted(TRAINERS))})")
    module, attr = TRAINERS[name].split(":")
    return getattr(importlib.import_module(module), attr)


@dataclass
class SupervisedSettings:
    """``recipe.config`` of the supervised recipe: the loop's name in :data:`TRAINERS`."""

    trainer: str = "supervised"


def describe_data(config: TrainingConfig, task: TaskSpec, layout: str, cases: list[Case]) -> list[str]:
    """Dry-run lines: layout, cases, the split (or the on-the-fly synthetic source)."""
    synthetic = config.data.synthetic
    split = synthetic_split(cases, config) if synthetic.on_the_fly else split_cases(cases, config)
    modalities = sorted({c.modality for c in cases if c.modality})
    lines = []
    if synthetic.on_the_fly:
        from training.core.synthetic_source import training_anatomy

        maps = training_anatomy(task.id, synthetic)
        lines.append(f"training: {synthetic.n_per_epoch} synthetic case(s) per epoch, generated on the fly from "
                     f"{len(maps)} anatomies ({synthetic.anatomy or 'packaged'}; held-out ones never drawn)")
    if config.data.root:
        lines.append(f"{config.data.root}: layout {layout}, {len(cases)} case(s), "
                     f"{sum(c.labelled for c in cases)} labelled"
                     + (f", modalities {', '.join(modalities)}" if modalities else ""))
    return [*lines,
            f"split: {len(split.train)} train, {len(split.val)} validation, {len(split.unlabelled)} unlabelled",
            f"inputs: {', '.join(task.roles)}; spacing {network_spacing(config, task)} mm; "
            f"patch {patch_size(config, task)}"]


def describe_augmentation(transforms: Any) -> list[str]:
    """The random steps of a MONAI ``Compose``, with their probabilities (what ``--dry-run`` prints)."""
    from monai.transforms import OneOf, RandomizableTransform

    lines = []
    for t in getattr(transforms, "transforms", transforms):
        if isinstance(t, OneOf):
            lines.append(f"one of {', '.join(type(x).__name__ for x in t.transforms)} "
                         f"(prob {getattr(t.transforms[0], 'prob', 1.0):g})")
        elif isinstance(t, RandomizableTransform):
            lines.append(f"{type(t).__name__} (prob {t.prob:g})")
        elif type(t).__name__.startswith("Rand"):  # crops: every sample
            lines.append(type(t).__name__)
    return lines


class SupervisedRecipe(Recipe):
    """One network trained by the supervised loop (patches, sliding-window validation, DDP through torchrun)."""

    name = "supervised"
    settings_cls = SupervisedSettings
    fine_tunes = True
    bundle = False

    def check(self, config: TrainingConfig, settings: SupervisedSettings) -> None:
        cls = trainer_class(settings.trainer)
        if config.model.config.get("conditional_modality") and not hasattr(cls, "modality_ids"):
            raise UserError("model.config.conditional_modality needs recipe.config.trainer: modality_conditioned "
                            "(the network takes each case's modality)")

    def stages(self, config: TrainingConfig, settings: SupervisedSettings) -> list[Stage]:
        def run(state: RunState) -> dict[str, Any]:
            folder = state.folder("supervised")
            last = folder / "checkpoints" / "last.pt"
            result = fit(state.config, folder, resume="last" if state.resume and last.exists() else None,
                         overwrite=state.overwrite, trainer_cls=trainer_class(settings.trainer))
            best = None if result.best_metric == float("-inf") else result.best_metric
            return {"last_epoch": result.last_epoch, "best_epoch": result.best_epoch, "best_dice_mean": best,
                    "stopped_early": result.stopped_early, "best_metrics": result.best_metrics,
                    "checkpoint": "supervised/checkpoints/best.pt"}

        return [Stage("supervised", run, ddp=True, description=f"{settings.trainer} loop, {config.train.epochs} "
                      f"epochs, batch {config.train.batch_size}, loss {config.loss.name}")]

    def plan(self, config: TrainingConfig, settings: SupervisedSettings) -> Plan:
        task = get_task(config.task)
        bundle = load_bundle(config.init_from, task=task.id) if config.init_from else None
        spec = network_spec(config, task, bundle)
        layout, cases = load_cases(config, task)
        try:
            build_loss(config.loss.name, task.output_kind, **config.loss.config)
        except (TypeError, ValueError) as exc:
            raise UserError(f"config: {exc}") from None
        return Plan(self.name, self.stages(config, settings),
                    [NetworkInfo("supervised", spec["name"], count_parameters(lambda: make_network(spec)))],
                    describe_data(config, task, layout, cases), describe_augmentation(train_transforms(config, task)))


RECIPE = SupervisedRecipe()
