"""The spine recipes of ``python -m training fit``: ``mcf`` (semi-supervised segmentation, METHODS §E.5) and
``fusion`` (CDDFuse, two stages, METHODS §E.3). Both read a spine dataset folder (``case_NNN/{ct,mr[,label]}``,
``training.spine.data``) and write their bundle to ``RUN/<name>-<version>.pt``.

- ``mcf``: stage ``mcf`` trains the UNet + VNet pair with ``labelled_fraction`` of the labelled cases' labels
  (the rest unlabelled); with ``compare_unet`` a stage ``unet_alone`` trains the UNet subnet on the labelled
  cases only (same start, budget, optimiser and seed) and both Dice scores go into the summary and the bundle.
  The network segments the fused CT-MR image by default, as the spine paper (``input: fused``): the frozen fusion
  bundle ``fusion_model`` fuses each case once on its CT grid (cached, ``training.spine.fused``); ``input:
  channels`` is the ablation (CT and MR as two channels). ``network`` holds the widths, ``plane`` the slice plane.
- ``fusion``: one stage ``fusion`` running CDDFuse's two phases in one iteration schedule: phase I (auto-encoder
  per modality, the first ``fusion.stage_one_fraction`` of the iterations), phase II (the fusion layers added).

Their loops run on one process (no DDP). A stage a resumed run had finished is reloaded from
``RUN/<stage>/checkpoints/last.pt``; an interrupted stage continues from the loop checkpoint it keeps there every
``train.checkpoint_interval`` iterations (default 200: models, optimisers, the sampler's generator, random states).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from multimodalseg.bundles import save_bundle
from multimodalseg.errors import UserError
from multimodalseg.nets.cddfuse import DEMO_CONFIG as FUSION_DEMO_CONFIG
from multimodalseg.nets.cddfuse import CDDFuse
from multimodalseg.postprocessing.spine import PLANES, plane_axis
from multimodalseg.tasks import get_task

from training.core.checkpoint import LoopCheckpoint, load_checkpoint, save_checkpoint
from training.core.config import TrainingConfig, build_section
from training.core.loggers import IterationLogger
from training.core.recipes import NetworkInfo, Plan, Recipe, RunState, Stage, count_parameters
from training.datasets import check_dataset, find_cases
from training.spine import runs
from training.spine.data import SpineCase, choose_labelled, load_cases
from training.spine.fused import fused_volume, fusion_reference, fusion_runner, network_input
from training.spine.fusion import FusionConfig, train_fusion
from training.spine.mcf import MCFConfig
from training.spine.slice_augment import slice_augmentation

LOOP_CHECKPOINT_EVERY = 200  # iterations between loop checkpoints of the fusion and MCF stages

def _settings(cls: type, values: dict[str, Any], seed: int, key: str) -> Any:
    """``recipe.config.<key>`` as the loop's dataclass, the config's seed in it."""
    try:
        return build_section(cls, {**values, "seed": seed}, f"recipe.config.{key}.", None)
    except ValueError as exc:
        raise UserError(f"config recipe.config.{key}: {exc}") from None


@dataclass
class MCFSettings:
    """``recipe.config`` of ``mcf``: the labelled share, the UNet-alone comparison, data options, MCF's settings
    (:class:`~training.spine.mcf.MCFConfig`; its ``seed`` is the config's ``seed``)."""

    labelled_fraction: float = 0.2
    compare_unet: bool = False
    val_data: str | None = None
    limit: int | None = None
    spacing: list[float] | None = field(default_factory=lambda: list(runs.SPACING))  # None: the CT grid's own
    mcf: dict[str, Any] = field(default_factory=lambda: {"iterations": 6000, "patch_size": [64, 64]})
    input: str = "fused"  # the paper: MCF segments the fused image; "channels": CT and MR as 2 channels (ablation)
    fusion_model: str | None = "spine-fusion-demo"  # frozen fusion bundle (catalog id or file) for input "fused"
    fusion_pad: bool = True  # pad the slices as the fusion bundle was trained (what inference does)
    fusion_cache: str | None = None  # folder of cached fused volumes; None: RUN/fused_cache
    network: dict[str, Any] = field(default_factory=lambda: dict(runs.MCF_DEMO_CONFIG))  # MCFNet widths
    plane: str | None = None  # axial | sagittal | coronal per case grid (overrides mcf.axis); the bundle records it
    single_modality: bool = False  # also train on fused (CT, zero MR) / (zero CT, MR) variants of the cases


@dataclass
class FusionSettings:
    """``recipe.config`` of ``fusion``: data options and CDDFuse's settings (:class:`~training.spine.fusion.
    FusionConfig`; its ``seed`` is the config's ``seed``)."""

    limit: int | None = None
    fusion: dict[str, Any] = field(default_factory=lambda: {"iterations": 3000, "batch": 8, "patch_size": [128, 128]})
    network: dict[str, Any] = field(default_factory=lambda: {k: v for k, v in FUSION_DEMO_CONFIG.items()
                                                             if k != "pad_to"})  # CDDFuse widths


def _check_spine(config: TrainingConfig, recipe: str) -> None:
    if config.task != "spine":
        raise UserError(f"the {recipe} recipe trains task spine, not {config.task}")


def _root(config: TrainingConfig) -> str:
    if not config.data.root:
        raise UserError("no dataset folder: give --data DIR or data.root in the config")
    return config.data.root


def _data_lines(config: TrainingConfig, with_labels: bool) -> list[str]:
    task = get_task("spine")
    layout, cases = find_cases(task, _root(config), "spine")
    report = check_dataset(task, cases, layout)
    if not report.ok:
        print(report.format(), file=sys.stderr)
        report.raise_if_problems()
    labelled = sum(c.labelled for c in cases)
    return [f"{config.data.root}: layout {layout}, {len(cases)} case(s)"
            + (f", {labelled} labelled" if with_labels else " (labels not used)")]


def _save_stage(run: RunState, stage: str, model: torch.nn.Module, history: list[dict[str, float]]) -> None:
    folder = run.folder(stage)
    logger = IterationLogger(folder, run.config.logging)
    for i, row in enumerate(history):
        logger.log(i, row)
    logger.close()
    save_checkpoint(folder / "checkpoints" / "last.pt", {"model": model.state_dict(), "iteration": len(history)})


def loop_checkpoint(run: RunState, stage: str) -> LoopCheckpoint:
    """The stage's iteration-loop checkpoint, ``RUN/<stage>/checkpoints/last.pt``, every ``train.checkpoint_interval``
    iterations (default :data:`LOOP_CHECKPOINT_EVERY`): ``--resume`` continues an interrupted stage from it.
    Once the stage is done, :func:`_save_stage` replaces it with the trained weights."""
    every = run.config.train.checkpoint_interval or LOOP_CHECKPOINT_EVERY
    return LoopCheckpoint(run.folder(stage) / "checkpoints" / "last.pt", every, resume=run.resume)


def _restore(run: RunState, stage: str, model: torch.nn.Module) -> None:
    path = run.folder(stage) / "checkpoints" / "last.pt"
    if not path.exists():
        raise UserError("--resume: the stage is marked done but has no checkpoint", run.folder(stage))
    model.load_state_dict(load_checkpoint(path)["model"])


class MCFRecipe(Recipe):
    name = "mcf"
    settings_cls = MCFSettings
    bundle = True

    def settings(self, config: TrainingConfig) -> MCFSettings:
        settings = super().settings(config)
        self.mcf_config(config, settings)  # refuse bad values now
        return settings

    def check(self, config: TrainingConfig, settings: MCFSettings) -> None:
        _check_spine(config, self.name)
        if settings.input not in ("fused", "channels"):
            raise UserError(f"config recipe.config.input must be fused or channels, got '{settings.input}'")
        if settings.plane is not None and settings.plane not in PLANES:
            raise UserError(f"config recipe.config.plane must be one of {', '.join(PLANES)}, got '{settings.plane}'")
        try:
            runs.build_mcf(0, 1, network=settings.network)
        except (TypeError, ValueError) as exc:
            raise UserError(f"config recipe.config.network: {exc}") from None

    def in_channels(self, settings: MCFSettings) -> int:
        return 1 if settings.input == "fused" else 2

    def mcf_config(self, config: TrainingConfig, settings: MCFSettings) -> MCFConfig:
        return _settings(MCFConfig, settings.mcf, config.seed, "mcf")

    def stages(self, config: TrainingConfig, settings: MCFSettings) -> list[Stage]:
        iterations = settings.mcf.get("iterations")
        out = [Stage("mcf", self.train_mcf, description=f"UNet + VNet pair, {iterations} iterations, "
                                                         f"{settings.labelled_fraction:.0%} of the labels")]
        if settings.compare_unet:
            out.append(Stage("unet_alone", self.train_unet, description="the UNet subnet on the labelled cases"))
        return out

    def data(self, run: RunState) -> dict[str, Any]:
        if "cases" not in run.shared:
            s = run.settings
            cases = load_cases(_root(run.config), s.spacing, limit=s.limit)
            val = load_cases(s.val_data, s.spacing) if s.val_data else []
            labelled = choose_labelled(cases, s.labelled_fraction, run.config.seed)
            fusion = None
            if s.input == "fused":
                runner = fusion_runner(s.fusion_model, pad=s.fusion_pad)
                fusion = fusion_reference(runner)
                cache = s.fusion_cache or run.out / "fused_cache"
            axis = self.mcf_config(run.config, s).axis
            prepared: dict[str, list[SpineCase]] = {"train": [], "val": []}
            for part, items, root in (("train", cases, _root(run.config)), ("val", val, s.val_data)):
                for i, case in enumerate(items):
                    # single-modality variants: alternately without MR and without CT, training cases only
                    variants = ["both"] + ([("no_mr", "no_ct")[i % 2]] if s.single_modality and part == "train"
                                           else [])
                    for variant in variants:
                        if fusion is not None:
                            fused = fused_volume(runner, case.id, case.ct_hu, case.mr, variant, cache, root)
                            image = network_input(fused, case.reference, s.spacing)
                        else:
                            image = case.image.copy()
                            if variant != "both":  # the normalised zero image: 0 HU and 0 MR both give 0
                                image[0 if variant == "no_ct" else 1] = 0.0
                        case_axis = plane_axis(case.grid, s.plane) if s.plane else axis
                        prepared[part].append(runs.sliced_along(replace(case, image=image), case_axis))
            run.shared.update(cases=cases, val=prepared["val"], labelled=labelled, fusion=fusion,
                              train=runs.slice_cases(prepared["train"], labelled))
        return run.shared

    def _mcf_loop_config(self, run: RunState) -> MCFConfig:
        """MCF's settings for the loops: the cases are already sliced along their plane, first (axis 0)."""
        return replace(self.mcf_config(run.config, run.settings), axis=0, augmentation=run.config.augmentation)

    def train_mcf(self, run: RunState) -> dict[str, Any]:
        d, config = self.data(run), self._mcf_loop_config(run)
        s = run.settings
        done = run.done("mcf")
        if done is not None:
            model = runs.build_mcf(config.seed, self.in_channels(s), network=s.network)
            _restore(run, "mcf", model)
            run.shared["mcf"] = runs.SegmentationRun(model, done["seconds"], done["dice"], [])
            return done
        print(f"MCF: {len(d['labelled'])} labelled ({', '.join(d['labelled'])}), "
              f"{len(d['cases']) - len(d['labelled'])} unlabelled, {config.iterations} iterations", file=sys.stderr)
        result = runs.train_mcf_run(d["train"], d["val"], config, in_channels=self.in_channels(s), network=s.network,
                                    checkpoint=loop_checkpoint(run, "mcf"))
        _save_stage(run, "mcf", result.model, result.history)
        run.shared["mcf"] = result
        return {"seconds": round(result.seconds, 1), "dice": result.dice, "labelled_cases": d["labelled"],
                "unlabelled_cases": [c.id for c in d["cases"] if c.id not in d["labelled"]],
                "validation_cases": [c.id for c in d["val"]]}

    def train_unet(self, run: RunState) -> dict[str, Any]:
        done = run.done("unet_alone")
        if done is not None:
            return done
        d, config, s = self.data(run), self._mcf_loop_config(run), run.settings
        result = runs.train_unet_alone(d["train"], d["val"], config, in_channels=self.in_channels(s),
                                       network=s.network)
        _save_stage(run, "unet_alone", result.model, result.history)
        return {"seconds": round(result.seconds, 1), "dice": result.dice}

    def plan(self, config: TrainingConfig, settings: MCFSettings) -> Plan:
        config_mcf = self.mcf_config(config, settings)
        lines = _data_lines(config, True)
        if settings.val_data:
            lines.append(f"validation: {settings.val_data}")
        where = f"{settings.plane} slices" if settings.plane else f"2D slices along axis {config_mcf.axis}"
        lines.append(f"{where}, patch {list(config_mcf.patch_size)}, spacing {settings.spacing} mm")
        lines.append("input: " + (f"the fused image of the frozen fusion bundle {settings.fusion_model} (1 channel, "
                                  "each case fused once and cached)" if settings.input == "fused"
                                  else "CT and MR as two channels (ablation)")
                     + (", plus one single-modality variant per case" if settings.single_modality else ""))
        nets = [NetworkInfo("mcf", "mcf (UNet + VNet)", count_parameters(
            lambda: runs.build_mcf(config.seed, self.in_channels(settings), network=settings.network)))]
        aug = [f"random slice crops ({config_mcf.pos_fraction:.0%} on foreground for labelled slices)"]
        steps = slice_augmentation(config.augmentation)  # also refuses settings the 2-D slices cannot use
        aug.append("then " + ", ".join(f"{type(t).__name__} p {t.prob:g}" for t in steps) if steps
                   else "no intensity or spatial augmentation (MCF's reference)")
        return Plan(self.name, self.stages(config, settings), nets, lines, aug)

    def finish(self, run: RunState) -> dict[str, Any]:
        config, mcf = self.mcf_config(run.config, run.settings), run.shared["mcf"]
        stages = run.summary["stages"]
        d = self.data(run)
        training = {"labelled_cases": d["labelled"], "cases": len(d["cases"]), "seconds": round(mcf.seconds, 1),
                    "validation_cases": [c.id for c in d["val"]], "threads": torch.get_num_threads(),
                    "parameters": sum(p.numel() for p in mcf.model.parameters())}
        if "unet_alone" in stages:
            training["unet_alone_dice"] = stages["unet_alone"]["dice"]
        training["single_modality_variants"] = bool(run.settings.single_modality)
        meta = runs.mcf_bundle_meta(config, mcf.model, run.config.name, run.config.version, dice=mcf.dice,
                                    training=training, network=run.settings.network, spacing=run.settings.spacing,
                                    fusion=d.get("fusion"), plane=run.settings.plane)
        meta["demo"] = bool(run.config.demo)
        name = f"{run.config.name}-{run.config.version}.pt"
        return {"bundle": name, "sha256": save_bundle(run.out / name, mcf.model.state_dict(), meta)}


class FusionRecipe(Recipe):
    name = "fusion"
    settings_cls = FusionSettings
    bundle = True

    def settings(self, config: TrainingConfig) -> FusionSettings:
        settings = super().settings(config)
        self.fusion_config(config, settings)
        return settings

    def check(self, config: TrainingConfig, settings: FusionSettings) -> None:
        _check_spine(config, self.name)
        try:
            self.model(settings)
        except (TypeError, ValueError) as exc:
            raise UserError(f"config recipe.config.network: {exc}") from None

    def fusion_config(self, config: TrainingConfig, settings: FusionSettings) -> FusionConfig:
        return _settings(FusionConfig, settings.fusion, config.seed, "fusion")

    def stages(self, config: TrainingConfig, settings: FusionSettings) -> list[Stage]:
        c = self.fusion_config(config, settings)
        return [Stage("fusion", self.train, description=f"stage I (auto-encoders, {c.stage_one_iterations} "
                                                         f"iterations) then stage II (fusion layers, "
                                                         f"{c.iterations - c.stage_one_iterations})")]

    def model(self, settings: FusionSettings, config: FusionConfig | None = None) -> CDDFuse:
        """CDDFuse with the config's widths; it pads in ``forward`` as training pads (``fusion.pad_to``)."""
        pad = dict(pad_to=config.pad_to, pad_mode=config.pad_mode) if config is not None else {"pad_to": None}
        return CDDFuse(2, 1, 1, **{**settings.network, **pad})

    def train(self, run: RunState) -> dict[str, Any]:
        from multimodalseg.inference.fusion import scale_inputs

        config = self.fusion_config(run.config, run.settings)
        torch.manual_seed(config.seed)
        model = self.model(run.settings, config)
        run.shared["model"] = model
        done = run.done("fusion")
        if done is not None:
            _restore(run, "fusion", model)
            return done
        cases = load_cases(_root(run.config), None, with_labels=False, limit=run.settings.limit)
        volumes = [scale_inputs(c.ct_hu, c.mr) for c in cases]
        config = config.for_slices(sum(ct.shape[config.axis] for ct, _ in volumes))  # epochs -> iterations
        t0 = time.perf_counter()

        def log(iteration: int, row: dict[str, float]) -> None:
            if iteration % 25 == 0 or iteration == config.iterations - 1:
                print(f"iteration {iteration}: stage {int(row['stage'])} loss {row['loss']:.4f} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

        history = train_fusion(model, volumes, config, callback=log, checkpoint=loop_checkpoint(run, "fusion"))
        seconds = time.perf_counter() - t0
        _save_stage(run, "fusion", model, history)
        last = history[-min(len(history), 25):]
        return {"cases": [c.id for c in cases], "seconds": round(seconds, 1), "iterations": config.iterations,
                "final_loss": round(float(np.mean([r["loss"] for r in last])), 4) if last else None}

    def plan(self, config: TrainingConfig, settings: FusionSettings) -> Plan:
        c = self.fusion_config(config, settings)
        lines = [*_data_lines(config, False), f"2D slices along axis {c.axis}, patch {list(c.patch_size)}, "
                                              "CT and MR scaled to [0, 1] as inference scales them"]
        nets = [NetworkInfo("fusion", "cddfuse", count_parameters(lambda: self.model(settings, c)))]
        pad = f"slices padded to {list(c.pad_to)} ({c.pad_mode}, as inference)" if c.pad_to else "zero-padded slices"
        lines.append(f"{c.optimizer}, weight decay {c.weight_decay}, batch {c.batch}, "
                     + (f"{c.epochs} epochs" if c.epochs else f"{c.iterations} iterations"))
        aug = [f"random crops of {pad}, low-contrast crops (std < {c.min_contrast}) redrawn; no intensity or spatial "
               "augmentation (CDDFuse's reference; the config's augmentation block is not read)"]
        return Plan(self.name, self.stages(config, settings), nets, lines, aug)

    def finish(self, run: RunState) -> dict[str, Any]:
        config, model = self.fusion_config(run.config, run.settings), run.shared["model"]
        done = run.summary["stages"]["fusion"]
        metrics = {"final_loss": done["final_loss"]} if done.get("final_loss") is not None else {}
        meta = runs.fusion_bundle_meta(config, run.config.name, run.config.version,
                                       {"cases": done["cases"], "seconds": done["seconds"],
                                        "iterations": done.get("iterations", config.iterations),
                                        "parameters": sum(p.numel() for p in model.parameters()),
                                        "threads": torch.get_num_threads()}, metrics, network=run.settings.network)
        meta["demo"] = bool(run.config.demo)
        name = f"{run.config.name}-{run.config.version}.pt"
        return {"bundle": name, "sha256": save_bundle(Path(run.out) / name, model.state_dict(), meta)}


MCF_RECIPE = MCFRecipe()
FUSION_RECIPE = FusionRecipe()
