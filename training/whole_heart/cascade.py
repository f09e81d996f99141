"""Train the whole-heart cascade stage by stage and export it as ONE bundle (METHODS §C.3-§C.6, §D).

Stages, each a :class:`~training.trainer.SupervisedTrainer` run in its own folder under ``--out``:

1. ``localization``: the heart-centre heatmap on the coarse whole-image grid (32³ at 10 mm CT / 12 mm MR by
   default), target from the labels' centre (σ = 1.5 voxels), Payer's L2 loss (:class:`HeatmapL2Loss`), the grid
   shifted by up to ``shift_mm`` for augmentation. One localiser for CT and MR.
2. ``segmentation``: the modality-conditioned MAUNet (top-level ``model``/``loss``/``optimizer``/``train`` of the
   config, :class:`~training.heart_trainer.ModalityConditionedTrainer`) on ROIs cropped around the ground-truth
   centre jittered by up to ``jitter_mm``, plus random rotation/scaling and intensity changes; real CT + MR cases,
   plus ``synthetic.fraction × real CT`` (rounded half up) synthetic CT cases of the CycleGAN
   (``python -m training.cyclegan``).
3. ``refinement``: the SCN on the frozen MAUNet's detached softmax (and the image), same samples and loss.

The bundle (``heart_cascade`` network, ``cascade`` metadata section: ``multimodalseg.inference.heart_cascade``) is
then run through the Predictor on the validation cases at their native resolution, and the mean Dice over the 7
structures goes into its metrics. Config: a training YAML with a ``cascade`` section (:class:`CascadeConfig`),
e.g. ``training/configs/whole-heart-cascade.yaml``.

Run::

    python -m training.heart_cascade --config training/configs/whole-heart-cascade.yaml --data DIR --out runs/whc
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from monai.data import DataLoader
from multimodalseg import io
from multimodalseg.bundles import Bundle, save_bundle
from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write_json
from multimodalseg.inference.heart_cascade import cascade_grids
from multimodalseg.postprocessing import heart as geometry
from multimodalseg.tasks import get_task
from multimodalseg.tasks.spec import TaskSpec
from torch import nn

from training import heart_cascade_data as data
from training.checkpoint import load_checkpoint
from training.config import TrainingConfig, build_section, save_config
from training.data import make_dataset, split_cases
from training.datasets import Case, find_cases
from training.evaluation import class_names, out_channels
from training.export import bundle_meta
from training.heart_trainer import ModalityConditionedTrainer
from training.loggers import RunLogger
from training.losses import build_loss
from training.optim import build_optimizer, build_scheduler
from training.run import load_cases
from training.trainer import FitResult, SupervisedTrainer


@dataclass
class StageConfig:
    """One extra stage: its network arguments and optimisation (the loss and schedule are the config's)."""

    enabled: bool = True
    network: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 1
    samples_per_case: int = 2


@dataclass
class LocalizationStage(StageConfig):
    """The localiser: ``grid`` per modality (None: METHODS'), the coarse grid shifted by up to ``shift_mm``."""

    grid: dict[str, Any] | None = None
    shift_mm: float = 20.0


@dataclass
class RefinementStage(StageConfig):
    """The SCN: reads the image too (``scn_with_image``); ``residual``: MAUNet logits + SCN output."""

    scn_with_image: bool = True
    residual: bool = True


@dataclass
class SyntheticConfig:
    """CycleGAN MR -> CT data (``python -m training.cyclegan`` writes ``dir``; this trainer mixes it in).

    Args:
        dir: folder of synthetic CT cases (MM-WHS layout, ``ct_synth_<id>``); None: no synthetic data.
        fraction: synthetic cases added = fraction × real CT training cases, rounded half up (paper: 0.5).
        iterations, lr, batch_size, patch_size, spacing, generator, discriminator: the CycleGAN's training.
    """

    dir: str | None = None
    fraction: float = 0.5
    iterations: int = 2000
    lr: float = 2e-4
    batch_size: int = 2
    patch_size: int = 32
    spacing: float = 3.0
    generator: dict[str, Any] = field(default_factory=lambda: {"channels": 8, "num_downsampling": 2,
                                                                "num_blocks": 2})
    discriminator: dict[str, Any] = field(default_factory=lambda: {"channels": 8, "num_layers_d": 2})


@dataclass
class CascadeConfig:
    """The ``cascade`` section: ROI grid per modality (None: 64³ at 3 mm CT / 4 mm MR), ROI augmentation, stages."""

    roi: dict[str, Any] | None = None
    jitter_mm: float = 10.0
    rotate_degrees: float = 10.0
    scale_range: float = 0.1
    augment_prob: float = 0.5
    fallback: str = "body"
    evaluate: bool = True
    localization: LocalizationStage = field(default_factory=LocalizationStage)
    refinement: RefinementStage = field(default_factory=RefinementStage)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


def load_cascade_config(path: str | Path, overrides: Sequence[str] = ()) -> tuple[TrainingConfig, CascadeConfig]:
    """The training config and its ``cascade`` section (``--set cascade.jitter_mm=5`` works too)."""
    p = Path(path)
    if not p.is_file():
        raise UserError("config file not found", p)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"invalid YAML: {exc}", p) from None
    if not isinstance(raw, dict):
        raise UserError("config must be a mapping", p)
    section = raw.pop("cascade", None) or {}
    config = TrainingConfig.from_dict(raw, source=str(p))
    plain = [o for o in overrides if not o.startswith("cascade.")]
    config = config.with_overrides(plain) if plain else config
    from training.config import assign_override, parse_override

    for item in (o for o in overrides if o.startswith("cascade.")):
        key, value = parse_override(item)
        assign_override(section, key.removeprefix("cascade."), value)
    cascade = build_section(CascadeConfig, section, "cascade.", str(p))
    if config.task != "whole-heart":
        raise UserError(f"the heart cascade trains task whole-heart, not {config.task}", p)
    return config, cascade


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
    """The main config with the stage's epochs, learning rate and batch."""
    out = TrainingConfig.from_dict(config.to_dict())
    out.train.epochs, out.optimizer.lr, out.train.batch_size = stage.epochs, stage.lr, stage.batch_size
    return out


def loader(cases: Sequence[Case], transform: Any, config: TrainingConfig, batch_size: int, *, train: bool
           ) -> DataLoader:
    dataset = make_dataset([c.to_record() for c in cases], transform, config.data.cache, config.data.num_workers)
    if train and len(dataset) < batch_size:
        raise UserError(f"{len(dataset)} training case(s) are too few for a batch of {batch_size}")
    generator = torch.Generator()
    generator.manual_seed(config.seed)  # re-seeded every epoch by the trainer (training.data.seed_epoch)
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


def split_synthetic(cases: Sequence[Case], folder: str | None, task: TaskSpec) -> tuple[list[Case], list[Case]]:
    """Real cases, and the synthetic CT candidates (the ``dir`` folder's, and any ``ct_synth_`` under the data)."""
    real = [c for c in cases if not c.id.startswith("ct_synth_")]
    synthetic = [c for c in cases if c.id.startswith("ct_synth_")]
    if folder:
        if not Path(folder).is_dir():
            raise UserError("synthetic CT folder not found", folder)
        synthetic += [c for c in find_cases(task, folder, "mmwhs")[1] if c.labelled]
    return real, synthetic


def localization_errors(model: nn.Module, cases: Sequence[Case], grids: dict[str, geometry.GridSpec], scheme: str
                        ) -> list[float]:
    """Distances (mm) between the localiser's centre and the labels' centre, case by case (grid on the image centre)."""
    loader_ = data.LoadHeartCased()
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


def train_cascade(config: TrainingConfig, cascade: CascadeConfig, out: Path, *, resume: bool = False,
                  bundle_path: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """All stages, the bundle and its evaluation; returns the bundle path and the summary."""
    task = get_task(config.task)
    if not resume and any((out / s / "checkpoints" / "last.pt").exists()
                          for s in ("localization", "segmentation", "refinement")):
        raise UserError("folder already holds a cascade run; resume it with --resume, or choose another --out", out)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.seed)
    _, cases = load_cases(config, task)
    real, synthetic = split_synthetic(cases, cascade.synthetic.dir, task)
    split = split_cases(real, config)
    try:
        roi_grids = cascade_grids(cascade.roi, geometry.ROI_GRID, task.modalities)
        loc_grids = cascade_grids(cascade.localization.grid, geometry.LOCALIZATION_GRID, task.modalities)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"config cascade grids: {exc}") from None
    if len({g.size for g in roi_grids.values()}) != 1 or len({g.size for g in loc_grids.values()}) != 1:
        raise UserError("config cascade: the ROI (and localisation) size must be the same for CT and MR "
                        "(batches mix them)")
    scheme = task.inputs[0].normalization
    roi_train = split.train
    if synthetic and cascade.synthetic.fraction > 0:
        try:
            roi_train = data.mix_synthetic(split.train, synthetic, cascade.synthetic.fraction, config.seed,
                                           excluded_sources=[c.id for c in split.val])
        except ValueError as exc:
            raise UserError(f"config cascade.synthetic: {exc}") from None
    summary: dict[str, Any] = {"train_cases": [c.id for c in roi_train], "val_cases": [c.id for c in split.val]}
    dims = {"spatial_dims": 3, "in_channels": 1, "out_channels": out_channels(task)}
    aug = config.augmentation

    # 1. Localisation.
    loc_config, localizer = None, None
    if cascade.localization.enabled:
        stage = cascade.localization
        loc_config = stage_config(config, stage)
        localizer = _build_net("heart_localization", {**dims, "out_channels": 1, **stage.network})
        sampler = data.HeartLocalizationSamplesd(loc_grids, scheme, stage.samples_per_case, stage.shift_mm)
        augment = data.augmentations(0, 0, 0, aug.intensity_scale, aug.intensity_shift, aug.intensity_prob)
        train_dl = loader(split.train, data.stage_transforms(sampler, augment), loc_config, stage.batch_size,
                          train=True)
        run_stage("localization", out, loc_config, task, localizer, HeatmapL2Loss(), localizer.parameters(),
                  {"name": "heart_localization", "config": {**dims, "out_channels": 1, **stage.network}}, train_dl,
                  None, resume=resume)
        errors = localization_errors(localizer, split.val or split.train, loc_grids, scheme)
        summary["localization_error_mm"] = {"mean": round(float(np.mean(errors)), 2),
                                            "max": round(float(np.max(errors)), 2)}

    # 2. MAUNet on ROIs.
    size = next(iter(roi_grids.values())).size
    seg_config = TrainingConfig.from_dict(config.to_dict())
    seg_config.augmentation.patch_size = [size] * 3
    seg_config.validation.roi_size, seg_config.validation.overlap = [size] * 3, 0.0
    maunet_spec = {**dict(config.model.config)}
    augment = data.augmentations(cascade.rotate_degrees, cascade.scale_range, cascade.augment_prob,
                                 aug.intensity_scale, aug.intensity_shift, aug.intensity_prob)

    def roi_loader(samples: int, batch: int) -> DataLoader:
        sampler = data.HeartROISamplesd(roi_grids, scheme, samples, cascade.jitter_mm)
        return loader(roi_train, data.stage_transforms(sampler, augment), seg_config, batch, train=True)

    train_dl = roi_loader(aug.samples_per_case, config.train.batch_size)
    val_dl = loader(split.val, data.stage_transforms(data.HeartROISamplesd(roi_grids, scheme, 1, 0.0)),
                    seg_config, 1, train=False) if split.val else None
    maunet = _build_net("maunet", {**dims, **maunet_spec})
    loss = build_loss(config.loss.name, task.output_kind, **config.loss.config)
    conditional = bool(maunet_spec.get("conditional_modality"))
    trainer_cls = ModalityConditionedTrainer if conditional else SupervisedTrainer
    result = run_stage("segmentation", out, seg_config, task, maunet, loss, maunet.parameters(),
                       {"name": "maunet", "config": {**dims, **maunet_spec}}, train_dl, val_dl,
                       trainer_cls=trainer_cls, resume=resume)
    summary["segmentation_val_dice"] = result.best_metrics or None

    # 3. SCN refinement on the frozen MAUNet.
    refine = cascade.refinement
    roi_config = {"maunet": maunet_spec, "refine": refine.enabled, "scn": dict(refine.network),
                  "scn_with_image": refine.scn_with_image, "residual": refine.residual, "detach": True}
    roi_net = _build_net("maunet_scn", {**dims, **roi_config})
    roi_net.maunet.load_state_dict(maunet.state_dict())
    if refine.enabled:
        for p in roi_net.maunet.parameters():
            p.requires_grad_(False)
        scn_config = stage_config(seg_config, refine)
        scn_config.augmentation.samples_per_case = refine.samples_per_case
        train_dl = roi_loader(refine.samples_per_case, refine.batch_size)
        frozen = type("RefinementTrainer", (FrozenMAUNetMixin, trainer_cls), {})
        result = run_stage("refinement", out, scn_config, task, roi_net, loss, roi_net.scn.parameters(),
                           {"name": "maunet_scn", "config": {**dims, **roi_config}}, train_dl, val_dl,
                           trainer_cls=frozen, resume=resume)
        summary["refinement_val_dice"] = result.best_metrics or None
        for p in roi_net.maunet.parameters():
            p.requires_grad_(True)

    # The bundle: one file, both networks, the geometry between them.
    network = {"name": "heart_cascade", "config": {
        **dims, "localization": ({**dict(cascade.localization.network)} if localizer is not None else None),
        "roi": roi_config}}
    meta = bundle_meta(config, task, network, {}, epoch=config.train.epochs)
    meta["preprocessing"].update(spacing=None, patch_size=[size] * 3, crop_margin=None)
    meta["inference"] = {"roi_size": [size] * 3, "overlap": 0.0, "mode": "constant"}
    meta["cascade"] = {"roi": {m: g._asdict() for m, g in roi_grids.items()},
                       "localization": {m: g._asdict() for m, g in loc_grids.items()},
                       "fallback": cascade.fallback}
    meta["conditional_modality"] = conditional
    meta["training"]["cascade"] = _plain(cascade)
    state = {f"roi.{k}": v for k, v in roi_net.state_dict().items()}
    if localizer is not None:
        state.update({f"localizer.{k}": v for k, v in localizer.state_dict().items()})
    metrics = {k: v for k, v in summary.items() if k not in ("train_cases", "val_cases")}
    if cascade.evaluate and split.val:
        bundle = Bundle(out / "unsaved.pt", "", {**meta, "metrics": metrics}, state)
        summary["cascade_val"] = metrics["cascade_val"] = cascade_dice(bundle, split.val, task)
        print(f"cascade: validation mean Dice {summary['cascade_val']['dice_mean']} at native resolution",
              file=sys.stderr)
    meta["metrics"] = metrics
    path = bundle_path or out / f"{config.name}-{config.version}.pt"
    summary["bundle"], summary["sha256"] = str(path), save_bundle(path, state, meta)
    atomic_write_json(out / "summary.json", summary)
    return path, summary


def _build_net(name: str, config: dict[str, Any]) -> nn.Module:
    from training.run import make_network

    return make_network({"name": name, "config": config})


def _plain(value: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _run(args: argparse.Namespace) -> int:
    config, cascade = load_cascade_config(args.config, args.overrides)
    config.data.root = args.data
    if args.synthetic:
        cascade.synthetic.dir = args.synthetic
    bundle = Path(args.bundle) if args.bundle else None
    if bundle is not None and bundle.suffix != ".pt":
        raise UserError("a model bundle file name must end in .pt", bundle)
    path, summary = train_cascade(config, cascade, Path(args.out), resume=args.resume, bundle_path=bundle)
    print(f"cascade bundle {path} (sha256 {summary['sha256'][:12]}...)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from multimodalseg.cli import run_command

    p = argparse.ArgumentParser(prog="python -m training.heart_cascade", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="training YAML with a cascade section")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--data", required=True, help="MM-WHS-layout folder of CT and MR cases")
    p.add_argument("--synthetic", help="synthetic CT folder (python -m training.cyclegan); overrides the config's")
    p.add_argument("--out", required=True, help="run folder (one sub-folder per stage)")
    p.add_argument("--bundle", help="bundle file (default OUT/NAME-VERSION.pt)")
    p.add_argument("--resume", action="store_true", help="continue the stages from their last checkpoints")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_run, command="cascade")
    return run_command(p.parse_args(argv), "training")


if __name__ == "__main__":
    raise SystemExit(main())
