"""The whole-heart cascade's stages (METHODS §C.2-§C.6, §D), each a function of the run (:mod:`.recipe`).

1. ``synthetic`` (when ``synthetic.train``): the MR -> CT CycleGAN on the training split's unpaired MR and CT,
   writing synthetic CT cases with the MR label maps into ``RUN/synthetic`` (:mod:`.cyclegan`).
2. ``localization``: the heart-centre heatmap on the coarse whole-image grid (32³ at 10 mm CT / 12 mm MR by
   default), target from the labels' centre (σ = 1.5 voxels), Payer's L2 loss (:class:`HeatmapL2Loss`), the grid
   shifted by up to ``shift_mm`` and nnU-Net's intensity steps for augmentation. One localiser for CT and MR.
3. ``segmentation``: the MAUNet (the config's ``model``/``loss``/``optimizer``/``train``; modality-conditioned
   with :class:`~training.whole_heart.conditioned.ModalityConditionedTrainer` when ``conditional_modality`` or
   ``mi_seg_hybrid``) on ROIs cropped around the ground-truth centre jittered by up to ``jitter_mm``, plus random
   rotation/scaling and nnU-Net's intensity/resolution steps (:func:`.cascade_data.augmentations`); the real
   cases of ``train_modalities`` (paper: CT; default CT + MR), plus ``synthetic.fraction × real CT`` (rounded half
   up) synthetic CT cases.
4. ``refinement``: the SCN on the frozen MAUNet's detached softmax (and the image), same samples and loss.

Stages 2-4 train and validate on the real cases of ``train_modalities`` only; ``iterations`` (optimiser steps)
replaces a stage's epochs when set (:func:`epochs_for`).

Each supervised-loop stage trains in ``RUN/<stage>`` with :class:`~training.core.trainer.SupervisedTrainer`; a
stage a resumed run had finished only reloads its best weights. With ``--init-from`` (a ``heart_cascade`` bundle)
each stage starts from that bundle's network for it (localiser, MAUNet, SCN): fine-tuning, as for the other
recipes; a network the config builds differently is refused.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader
from multimodalseg import io
from multimodalseg.bundles import Bundle, load_bundle
from multimodalseg.errors import UserError
from multimodalseg.inference.heart_cascade import cascade_grids
from multimodalseg.postprocessing import heart as geometry
from multimodalseg.tasks import get_task
from multimodalseg.tasks.spec import TaskSpec
from torch import nn

from training.core.checkpoint import load_checkpoint
from training.core.config import TrainingConfig, save_config
from training.core.data import Split, make_dataset, split_cases
from training.core.evaluation import class_names, out_channels
from training.core.loggers import RunLogger
from training.core.losses import build_loss
from training.core.optim import build_optimizer, build_scheduler
from training.core.recipes import RunState
from training.core.supervised import load_cases, make_network
from training.core.trainer import FitResult, SupervisedTrainer
from training.core.transforms import network_orientation, normalization_schemes
from training.datasets import Case
from training.whole_heart import cascade_data as data
from training.whole_heart.conditioned import ModalityConditionedTrainer
from training.whole_heart.settings import CascadeConfig, StageConfig
from training.whole_heart.synthetic import mix_synthetic, split_synthetic


class HeatmapL2Loss(nn.Module):
    """Payer's L2 heatmap loss: ½ Σ (prediction − target)² over the voxels, averaged over the batch
    (``tf.nn.l2_loss`` per sample): a sum, not a mean, so one small peak still drives the gradient."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * (prediction.float() - target.float()).pow(2).flatten(1).sum(1).mean()


class FrozenMAUNetMixin:
    """For the SCN stage: the MAUNet stays in eval mode, so the batch norms of its attention gates keep their
    running statistics (its weights are frozen by ``requires_grad`` and left out of the optimiser)."""

    def train_step(self, batch: Any) -> float:
        self.model.maunet.eval()
        return super().train_step(batch)


def stage_config(config: TrainingConfig, stage: StageConfig) -> TrainingConfig:
    """The main config with the stage's epochs, learning rate, weight decay and batch."""
    out = TrainingConfig.from_dict(config.to_dict())
    out.train.epochs, out.optimizer.lr, out.train.batch_size = stage.epochs, stage.lr, stage.batch_size
    if stage.weight_decay is not None:
        out.optimizer.weight_decay = stage.weight_decay
    return out


def epochs_for(iterations: int | None, steps_per_epoch: int, epochs: int) -> int:
    """Epochs that give at least ``iterations`` optimiser steps (the loop counts epochs and checkpoints after each);
    ``epochs`` when ``iterations`` is None."""
    if iterations is None:
        return epochs
    if iterations < 1 or steps_per_epoch < 1:
        raise UserError(f"config: iterations ({iterations}) and steps per epoch ({steps_per_epoch}) must be >= 1")
    return math.ceil(iterations / steps_per_epoch)


def set_iterations(config: TrainingConfig, iterations: int | None, train_dl: DataLoader, stage: str) -> None:
    """``config.train.epochs`` from ``iterations`` and the loader's steps per epoch (printed, so a log shows it)."""
    if iterations is None:
        return
    config.train.epochs = epochs_for(iterations, len(train_dl), config.train.epochs)
    print(f"{stage}: {iterations} iterations = {config.train.epochs} epochs of {len(train_dl)} steps",
          file=sys.stderr)


def maunet_config(config: TrainingConfig, settings: CascadeConfig) -> dict[str, Any]:
    """The MAUNet's arguments: the config's ``model.config``, conditioned on the modality for the MI-Seg hybrid."""
    out = dict(config.model.config)
    if settings.mi_seg_hybrid:
        out["conditional_modality"] = True
    return out


def train_modalities(settings: CascadeConfig) -> list[str]:
    """The modalities of the real cases the localiser, MAUNet and SCN train on (the hybrid adds MR)."""
    names = [m.lower() for m in settings.train_modalities]
    return [*names, "mr"] if settings.mi_seg_hybrid and "mr" not in names else names


def loader(cases: Sequence[Case], transform: Any, config: TrainingConfig, batch_size: int, *, train: bool
           ) -> DataLoader:
    dataset = make_dataset([c.to_record() for c in cases], transform, config.data.cache, config.data.num_workers)
    if train and len(dataset) < batch_size:
        raise UserError(f"{len(dataset)} training case(s) are too few for a batch of {batch_size}")
    generator = torch.Generator()
    generator.manual_seed(config.seed)  # re-seeded every epoch by the trainer (training.core.data.seed_epoch)
    return DataLoader(dataset, batch_size=batch_size if train else 1, shuffle=train, drop_last=train,
                      generator=generator, num_workers=config.data.num_workers)


def run_stage(name: str, out: Path, config: TrainingConfig, task: TaskSpec, model: nn.Module, loss: nn.Module,
              params: Any, spec: dict[str, Any], train_dl: DataLoader, val_dl: DataLoader | None, *,
              trainer_cls: type[SupervisedTrainer] = SupervisedTrainer, resume: bool = False) -> FitResult:
    """Train one stage in ``out/name`` with the supervised loop; the model ends with its best (else last) weights."""
    folder = out / name
    last = folder / "checkpoints" / "last.pt"
    try:
        optimizer = build_optimizer(params, config.optimizer)
        scheduler = build_scheduler(optimizer, config.scheduler, config.train.epochs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"config: {exc}") from None
    trainer = trainer_cls(config, task, model, loss, optimizer, scheduler, folder)
    trainer.network_spec = spec
    start = trainer.resume(last) if resume and last.exists() else None
    save_config(config, folder / "config.yaml")
    trainer.logger = RunLogger(folder, config.logging, class_names(task), resume_epoch=start)
    try:
        result = trainer.fit(train_dl, val_dl)
    finally:
        trainer.logger.close()
    best = folder / "checkpoints" / "best.pt"
    if best.exists():
        model.load_state_dict(load_checkpoint(best)["model"])
    print(f"{name}: {result.last_epoch} epochs, final loss {result.losses[-1] if result.losses else math.nan:.4f}"
          + (f", best validation Dice {result.best_metric:.4f} (epoch {result.best_epoch})"
             if math.isfinite(result.best_metric) else ""), file=sys.stderr)
    return result


def localization_errors(model: nn.Module, cases: Sequence[Case], grids: dict[str, geometry.GridSpec], scheme: str,
                        orientation: str | None = None) -> list[float]:
    """Distances (mm) between the localiser's centre and the labels' centre, case by case (grid on the image centre)."""
    loader_ = data.LoadHeartCased(orientation=orientation)
    errors = []
    model.eval()
    for case in cases:
        item = loader_(case.to_record())
        image = io.make_image(item["image"], *item["geometry"])
        array, coarse = geometry.localization_array(image, grids[item["modality"]], scheme)
        with torch.no_grad():
            heatmap = model(torch.from_numpy(array)[None, None])[0, 0].numpy()
        errors.append(float(np.linalg.norm(geometry.centre_from_heatmap(heatmap, coarse) - item["centre"])))
    return errors


def cascade_dice(bundle: Bundle, cases: Sequence[Case], task: TaskSpec) -> dict[str, Any]:
    """Mean Dice over the 7 structures of the whole cascade (Predictor) on ``cases`` at their native grids."""
    from multimodalseg.inference.predictor import Predictor
    from multimodalseg.metrics import evaluate_images
    from multimodalseg.metrics.heart import WHS_STRUCTURES

    predictor = Predictor(bundle, "cpu")
    rows = {}
    for case in cases:
        result = predictor.predict({r: i.path for r, i in case.images.items()}, modality=case.modality)
        truth = io.read_image(case.label, label=True)
        scores = evaluate_images(result.labels, truth, task=task)["labels"]
        rows[case.id] = round(float(np.mean([scores[n]["dice"] for n in WHS_STRUCTURES])), 4)
    return {"dice_mean": round(float(np.mean(list(rows.values()))), 4) if rows else None, "cases": rows}


def restore(folder: Path, model: nn.Module) -> None:
    """A finished stage's weights: its best checkpoint, else its last."""
    checkpoints = folder / "checkpoints"
    path = checkpoints / "best.pt" if (checkpoints / "best.pt").exists() else checkpoints / "last.pt"
    if not path.exists():
        raise UserError("--resume: the stage is marked done but has no checkpoint", folder)
    model.load_state_dict(load_checkpoint(path)["model"])


def build_net(name: str, config: dict[str, Any]) -> nn.Module:
    return make_network({"name": name, "config": config})


@dataclass
class Setup:
    """What the stages share: the task, the split, the grids, the ROI training cases (with synthetic CT)."""

    task: TaskSpec
    split: Split
    roi_train: list[Case]
    roi_grids: dict[str, geometry.GridSpec]
    loc_grids: dict[str, geometry.GridSpec]
    scheme: str
    dims: dict[str, int]
    orientation: str | None = None  # of the loaded images (training.core.transforms.network_orientation)
    init: Bundle | None = None  # --init-from: the cascade bundle each stage starts from

    @property
    def roi_size(self) -> int:
        return next(iter(self.roi_grids.values())).size


def grids(settings: CascadeConfig, task: TaskSpec) -> tuple[dict[str, geometry.GridSpec], dict[str, geometry.GridSpec]]:
    """ROI and localisation grids per modality; one size for CT and MR (batches mix them)."""
    try:
        roi = cascade_grids(settings.roi, geometry.ROI_GRID, task.modalities)
        loc = cascade_grids(settings.localization.grid, geometry.LOCALIZATION_GRID, task.modalities)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"config recipe.config grids: {exc}") from None
    if len({g.size for g in roi.values()}) != 1 or len({g.size for g in loc.values()}) != 1:
        raise UserError("config recipe.config: the ROI (and localisation) size must be the same for CT and MR "
                        "(batches mix them)")
    return roi, loc


def image_scheme(config: TrainingConfig, task: TaskSpec) -> str:
    """The image's normalisation: ``data.normalization`` over the task's (what ``bundle_meta`` records and the
    predictor's cascade applies)."""
    return normalization_schemes(config, task)[task.inputs[0].role]


def synthetic_folder(run: RunState) -> str | None:
    s = run.settings.synthetic
    return str(run.folder("synthetic")) if s.train else s.dir


def setup(run: RunState) -> Setup:
    """The shared part, computed once per run (after the synthetic stage, whose cases it mixes in)."""
    if "setup" in run.shared:
        return run.shared["setup"]
    config, settings = run.config, run.settings
    task = get_task(config.task)
    torch.manual_seed(config.seed)
    _, cases = load_cases(config, task)
    real, synthetic = split_synthetic(cases, synthetic_folder(run), task)
    full = split_cases(real, config)
    modalities = train_modalities(settings)
    split = Split(*([c for c in part if (c.modality or "").lower() in modalities] for part in (full.train, full.val)))
    if not split.train:
        raise UserError(f"no {'/'.join(modalities).upper()} training case (recipe.config.train_modalities)",
                        config.data.root)
    roi_grids, loc_grids = grids(settings, task)
    roi_train = split.train
    if synthetic and settings.synthetic.fraction > 0:
        try:  # a validation MR's synthetic CT never trains, whatever the modalities validated
            roi_train = mix_synthetic(split.train, synthetic, settings.synthetic.fraction, config.seed,
                                      excluded_sources=[c.id for c in full.val])
        except ValueError as exc:
            raise UserError(f"config recipe.config.synthetic: {exc}") from None
    dims = {"spatial_dims": 3, "in_channels": 1, "out_channels": out_channels(task)}
    run.shared["setup"] = Setup(task, split, roi_train, roi_grids, loc_grids, image_scheme(config, task), dims,
                                network_orientation(config, task), init_bundle(config, settings, dims))
    return run.shared["setup"]


def init_bundle(config: TrainingConfig, settings: CascadeConfig, dims: dict[str, int]) -> Bundle | None:
    """The ``--init-from`` bundle, checked before any stage runs: a ``heart_cascade`` holding every network the
    config trains, each built as the config builds it."""
    if not config.init_from:
        return None
    bundle = load_bundle(config.init_from, task=config.task)
    if bundle.meta["network"]["name"] != "heart_cascade":
        raise UserError(f"--init-from bundle holds a {bundle.meta['network']['name']} network; the cascade recipe "
                        "starts from a heart_cascade bundle", bundle.path)
    loc = dict(settings.localization.network) if settings.localization.enabled else None
    wanted = build_net("heart_cascade", {**dims, "localization": loc, "roi": roi_config(config, settings)})
    try:  # not strict: a stage the config turns off may leave the bundle's network unused
        missing = wanted.load_state_dict(bundle.state_dict, strict=False).missing_keys
    except RuntimeError as exc:
        raise UserError(f"--init-from bundle's networks are not the ones the config builds "
                        f"({_first_mismatch(exc)})", bundle.path) from None
    if missing:
        network = ".".join(missing[0].split(".")[:2])  # e.g. roi.scn
        raise UserError(f"--init-from bundle has no weights for {network} (the config trains it)", bundle.path)
    return bundle


def _first_mismatch(exc: RuntimeError) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line or "Missing" in line]
    return (lines or [str(exc).strip().splitlines()[0]])[0].rstrip(".")


def load_init(run: RunState, module: nn.Module, prefix: str, what: str) -> None:
    """Start ``module`` from the ``--init-from`` bundle's weights under ``prefix`` (nothing without --init-from)."""
    bundle = setup(run).init
    if bundle is None:
        return
    state = {k[len(prefix):]: v for k, v in bundle.state_dict.items() if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)  # init_bundle checked it
    print(f"{what}: starting from {bundle.path.name}", file=sys.stderr)


def synthetic_stage(run: RunState) -> dict[str, Any]:
    """The CycleGAN and its synthetic CT cases in ``RUN/synthetic``."""
    from training.whole_heart.cyclegan import synthesize_dataset

    done = run.done("synthetic")
    if done is not None:
        return done
    try:
        summary = synthesize_dataset(run.config, run.settings.synthetic, run.folder("synthetic"))
    except ValueError as exc:
        raise UserError(str(exc), run.config.data.root) from None
    first, last = summary["first_losses"]["g_total"], summary["last_losses"]["g_total"]
    print(f"synthetic: {len(summary['cases'])} CT case(s), generator loss {first:.3f} -> {last:.3f}", file=sys.stderr)
    return {"cases": len(summary["cases"]), "real_ct": summary["real_ct"], "generator_loss": [first, last],
            "folder": "synthetic"}


def localization_spec(run: RunState) -> dict[str, Any]:
    return {**setup(run).dims, "out_channels": 1, **run.settings.localization.network}


def localization_stage(run: RunState) -> dict[str, Any]:
    s, stage, aug = setup(run), run.settings.localization, run.config.augmentation
    spec = localization_spec(run)
    localizer = build_net("heart_localization", spec)
    done = run.done("localization")
    if done is not None:
        restore(run.folder("localization"), localizer)
    else:
        load_init(run, localizer, "localizer.", "localization")
        config = stage_config(run.config, stage)
        sampler = data.HeartLocalizationSamplesd(s.loc_grids, s.scheme, stage.samples_per_case, stage.shift_mm)
        augment = data.augmentations(aug)  # intensity steps only: the grid's shift is its spatial augmentation
        train_dl = loader(s.split.train, data.stage_transforms(sampler, augment, s.orientation), config,
                          stage.batch_size,
                          train=True)
        set_iterations(config, stage.iterations, train_dl, "localization")
        run_stage("localization", run.out, config, s.task, localizer, HeatmapL2Loss(), localizer.parameters(),
                  {"name": "heart_localization", "config": spec}, train_dl, None, resume=run.resume)
    run.shared["localizer"] = localizer
    if done is not None:
        return done
    errors = localization_errors(localizer, s.split.val or s.split.train, s.loc_grids, s.scheme, s.orientation)
    return {"localization_error_mm": {"mean": round(float(np.mean(errors)), 2),
                                      "max": round(float(np.max(errors)), 2)}}


def segmentation_config(run: RunState) -> TrainingConfig:
    size = setup(run).roi_size
    config = TrainingConfig.from_dict(run.config.to_dict())
    config.augmentation.patch_size = [size] * 3
    config.validation.roi_size, config.validation.overlap = [size] * 3, 0.0
    return config


def roi_loader(run: RunState, config: TrainingConfig, samples: int, batch: int) -> DataLoader:
    s, c = setup(run), run.settings
    augment = data.augmentations(run.config.augmentation, c.rotate_degrees, c.scale_range, c.augment_prob)
    sampler = data.HeartROISamplesd(s.roi_grids, s.scheme, samples, c.jitter_mm)
    return loader(s.roi_train, data.stage_transforms(sampler, augment, s.orientation), config, batch, train=True)


def val_roi_loader(run: RunState, config: TrainingConfig) -> DataLoader | None:
    s = setup(run)
    if not s.split.val:
        return None
    return loader(s.split.val, data.stage_transforms(data.HeartROISamplesd(s.roi_grids, s.scheme, 1, 0.0),
                                                     orientation=s.orientation), config, 1, train=False)


def trainer_for(run: RunState) -> type[SupervisedTrainer]:
    conditional = bool(maunet_config(run.config, run.settings).get("conditional_modality"))
    return ModalityConditionedTrainer if conditional else SupervisedTrainer


def segmentation_stage(run: RunState) -> dict[str, Any]:
    s, config = setup(run), segmentation_config(run)
    spec = {**s.dims, **maunet_config(run.config, run.settings)}
    maunet = build_net("maunet", spec)
    run.shared["maunet"] = maunet
    done = run.done("segmentation")
    if done is not None:
        restore(run.folder("segmentation"), maunet)
        return done
    load_init(run, maunet, "roi.maunet.", "segmentation (MAUNet)")
    loss = build_loss(config.loss.name, s.task.output_kind, **config.loss.config)
    train_dl = roi_loader(run, config, config.augmentation.samples_per_case, config.train.batch_size)
    set_iterations(config, run.settings.iterations, train_dl, "segmentation")
    result = run_stage("segmentation", run.out, config, s.task, maunet, loss, maunet.parameters(),
                       {"name": "maunet", "config": spec}, train_dl, val_roi_loader(run, config),
                       trainer_cls=trainer_for(run), resume=run.resume)
    return {"val_dice": result.best_metrics or None, "last_epoch": result.last_epoch}


def roi_config(config: TrainingConfig, settings: CascadeConfig) -> dict[str, Any]:
    """The ``maunet_scn`` arguments (besides the dims): the MAUNet's (the config's model) and the SCN's."""
    refine = settings.refinement
    return {"maunet": maunet_config(config, settings), "refine": refine.enabled, "scn": dict(refine.network),
            "scn_with_image": refine.scn_with_image, "residual": refine.residual, "detach": True}


def roi_network(run: RunState) -> nn.Module:
    """The MAUNet + SCN network of the bundle, the MAUNet's weights from the segmentation stage."""
    roi_net = build_net("maunet_scn", {**setup(run).dims, **roi_config(run.config, run.settings)})
    roi_net.maunet.load_state_dict(run.shared["maunet"].state_dict())
    return roi_net


def refinement_stage(run: RunState) -> dict[str, Any]:
    s, refine = setup(run), run.settings.refinement
    roi_net = roi_network(run)
    run.shared["roi_net"] = roi_net
    done = run.done("refinement")
    if done is not None:
        restore(run.folder("refinement"), roi_net)
        return done
    load_init(run, roi_net.scn, "roi.scn.", "refinement (SCN)")
    for p in roi_net.maunet.parameters():
        p.requires_grad_(False)
    config = stage_config(segmentation_config(run), refine)
    config.augmentation.samples_per_case = refine.samples_per_case
    loss = build_loss(config.loss.name, s.task.output_kind, **config.loss.config)
    train_dl = roi_loader(run, config, refine.samples_per_case, refine.batch_size)
    set_iterations(config, refine.iterations, train_dl, "refinement")
    frozen = type("RefinementTrainer", (FrozenMAUNetMixin, trainer_for(run)), {})
    result = run_stage("refinement", run.out, config, s.task, roi_net, loss, roi_net.scn.parameters(),
                       {"name": "maunet_scn", "config": {**s.dims, **roi_config(run.config, run.settings)}}, train_dl,
                       val_roi_loader(run, config), trainer_cls=frozen, resume=run.resume)
    for p in roi_net.maunet.parameters():
        p.requires_grad_(True)
    return {"val_dice": result.best_metrics or None, "last_epoch": result.last_epoch}
