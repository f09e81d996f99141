"""The ``cascade`` recipe: [CycleGAN ->] localiser -> MAUNet -> SCN, exported as ONE bundle (METHODS §C, §D).

The stages are in :mod:`training.whole_heart.cascade`; this module names them, describes them for ``--dry-run``
and, after the last one, writes the bundle (``heart_cascade`` network, ``cascade`` metadata section:
``multimodalseg.inference.heart_cascade``) to ``RUN/<name>-<version>.pt``, then runs it through the Predictor on
the validation cases at their native resolution (mean Dice over the 7 structures, into its metrics).
Config: ``recipe: {name: cascade, config: ...}`` (:class:`~training.whole_heart.settings.CascadeConfig`), e.g.
``training/configs/whole-heart-cascade.yaml`` (the demo: real CT + MR, CIN) or
``training/configs/whole-heart-cascade-paper.yaml`` (CM-TranCaF: CT + synthetic CT; its header lists the ablation
switches).
"""

from __future__ import annotations

import sys
from typing import Any

from multimodalseg.bundles import Bundle, save_bundle
from multimodalseg.errors import UserError
from multimodalseg.nets.cin import pin_current_scope
from multimodalseg.tasks import get_task

from training.core.config import TrainingConfig
from training.core.evaluation import out_channels
from training.core.export import bundle_meta
from training.core.recipes import NetworkInfo, Plan, Recipe, RunState, Stage, count_parameters, plain
from training.core.supervised import describe_augmentation, describe_data, load_cases
from training.whole_heart import cascade as stages
from training.whole_heart import cascade_data as data
from training.whole_heart.settings import CascadeConfig
from training.whole_heart.synthetic import split_synthetic


class CascadeRecipe(Recipe):
    name = "cascade"
    settings_cls = CascadeConfig
    bundle = True
    fine_tunes = True

    def check(self, config: TrainingConfig, settings: CascadeConfig) -> None:
        if config.task != "whole-heart":
            raise UserError(f"the cascade recipe trains task whole-heart, not {config.task}")
        known = get_task(config.task).modalities
        names = [m.lower() for m in settings.train_modalities]
        bad = [m for m in names if m not in known]
        if not names or bad or len(set(names)) != len(names):
            raise UserError(f"config recipe.config.train_modalities must list distinct modalities of "
                            f"{', '.join(known)}, got {settings.train_modalities}")
        for name, value in (("iterations", settings.iterations),
                            ("localization.iterations", settings.localization.iterations),
                            ("refinement.iterations", settings.refinement.iterations)):
            if value is not None and value < 1:
                raise UserError(f"config recipe.config.{name} must be >= 1 (or null), got {value}")

    def stages(self, config: TrainingConfig, settings: CascadeConfig) -> list[Stage]:
        out = []
        if settings.synthetic.train:
            out.append(Stage("synthetic", stages.synthetic_stage,
                             description=f"MR -> CT CycleGAN, {settings.synthetic.iterations} iterations, then "
                                         f"synthetic CT = {settings.synthetic.fraction} x real CT"))
        if settings.localization.enabled:
            out.append(Stage("localization", stages.localization_stage,
                             description=f"heart-centre heatmap, "
                                         f"{_length(settings.localization.iterations, settings.localization.epochs)}"))
        modalities = "+".join(stages.train_modalities(settings)).upper()
        hybrid = ", modality-conditioned (MI-Seg hybrid)" if settings.mi_seg_hybrid else ""
        out.append(Stage("segmentation", stages.segmentation_stage,
                         description=f"MAUNet on {modalities} ROIs{hybrid}, "
                                     f"{_length(settings.iterations, config.train.epochs)}"))
        if settings.refinement.enabled:
            out.append(Stage("refinement", stages.refinement_stage,
                             description=f"SCN on the frozen MAUNet, "
                                         f"{_length(settings.refinement.iterations, settings.refinement.epochs)}"))
        return out

    def plan(self, config: TrainingConfig, settings: CascadeConfig) -> Plan:
        task = get_task(config.task)
        layout, cases = load_cases(config, task)
        roi, loc = stages.grids(settings, task)
        dims = {"spatial_dims": 3, "in_channels": 1, "out_channels": out_channels(task)}
        nets = []
        if settings.synthetic.train:
            from training.whole_heart.cyclegan import CycleGAN

            gan = {"generator": dict(settings.synthetic.generator),
                   "discriminator": dict(settings.synthetic.discriminator)}
            nets.append(NetworkInfo("synthetic", "cyclegan (2 generators, 2 discriminators)",
                                    count_parameters(lambda: CycleGAN(3, **gan))))
        if settings.localization.enabled:
            spec = {**dims, "out_channels": 1, **settings.localization.network}
            nets.append(NetworkInfo("localization", "heart_localization",
                                    count_parameters(lambda: stages.build_net("heart_localization", spec))))
        maunet = {**dims, **stages.maunet_config(config, settings)}
        nets.append(NetworkInfo("segmentation", "maunet", count_parameters(lambda: stages.build_net("maunet", maunet))))
        if settings.refinement.enabled:
            net = stages.build_net("maunet_scn", {**dims, **stages.roi_config(config, settings)})
            nets.append(NetworkInfo("refinement", "scn (of maunet_scn)", sum(p.numel() for p in net.scn.parameters())))
        lines = describe_data(config, task, layout, cases)[:2]
        lines.append(f"ROI grids {_grids(roi)}, localisation grids {_grids(loc)}")
        synthetic = "RUN/synthetic (CycleGAN stage)" if settings.synthetic.train else settings.synthetic.dir
        lines.append(f"synthetic CT: {synthetic or 'none'}; real training modalities: "
                     f"{', '.join(stages.train_modalities(settings)).upper()}")
        if settings.synthetic.dir and not settings.synthetic.train:
            split_synthetic(cases, settings.synthetic.dir, task)  # the folder must exist
        lines.append(f"normalisation: {stages.image_scheme(config, task)} (bundle preprocessing.normalization)")
        localiser = ([f"localiser: grid shifted by up to {settings.localization.shift_mm} mm, the same intensity "
                      f"steps"] if settings.localization.enabled else [])
        augment = data.augmentations(config.augmentation, settings.rotate_degrees, settings.scale_range,
                                     settings.augment_prob)
        return Plan(self.name, self.stages(config, settings), nets, lines,
                    [f"ROI centre jitter up to {settings.jitter_mm} mm", *describe_augmentation(augment),
                     "no mirroring (a mirrored heart swaps the left and right chambers)", *localiser])

    def finish(self, run: RunState) -> dict[str, Any]:
        """The bundle: one file, both networks, the geometry between them; then its validation Dice."""
        config, settings, s = run.config, run.settings, stages.setup(run)
        localizer = run.shared.get("localizer")
        roi_net = run.shared.get("roi_net") or stages.roi_network(run)
        roi_config = stages.roi_config(config, settings)
        size = s.roi_size
        network = {"name": "heart_cascade", "config": {
            **s.dims, "localization": (dict(settings.localization.network) if localizer is not None else None),
            "roi": roi_config}}
        meta = bundle_meta(config, s.task, network, {}, epoch=config.train.epochs)
        meta["preprocessing"].update(spacing=None, patch_size=[size] * 3, crop_margin=None)
        meta["inference"] = {"roi_size": [size] * 3, "overlap": 0.0, "mode": "constant"}
        meta["cascade"] = {"roi": {m: g._asdict() for m, g in s.roi_grids.items()},
                           "localization": {m: g._asdict() for m, g in s.loc_grids.items()},
                           "fallback": settings.fallback, "modalities": stages.train_modalities(settings)}
        meta["conditional_modality"] = bool(roi_config["maunet"].get("conditional_modality"))
        meta["training"]["cascade"] = plain(settings)
        state = {f"roi.{k}": v for k, v in roi_net.state_dict().items()}
        if localizer is not None:
            state.update({f"localizer.{k}": v for k, v in localizer.state_dict().items()})
        done = run.summary["stages"]
        metrics: dict[str, Any] = {}
        if "localization" in done:
            metrics["localization_error_mm"] = done["localization"].get("localization_error_mm")
        for name in ("segmentation", "refinement"):
            if name in done:
                metrics[f"{name}_val_dice"] = done[name].get("val_dice")
        summary: dict[str, Any] = {"train_cases": [c.id for c in s.roi_train], "val_cases": [c.id for c in s.split.val]}
        if settings.evaluate and s.split.val:
            # as save_bundle will write it: today's CIN scope pinned, so the in-memory bundle never reads as legacy
            unsaved = {**meta, "metrics": metrics,
                       "network": {**meta["network"], "config": pin_current_scope(meta["network"]["config"])}}
            bundle = Bundle(run.out / "unsaved.pt", "", unsaved, state)
            summary["cascade_val"] = metrics["cascade_val"] = stages.cascade_dice(bundle, s.split.val, s.task)
            print(f"cascade: validation mean Dice {summary['cascade_val']['dice_mean']} at native resolution",
                  file=sys.stderr)
        meta["metrics"] = metrics
        name = f"{config.name}-{config.version}.pt"
        summary["bundle"], summary["sha256"] = name, save_bundle(run.out / name, state, meta)
        return summary


def _length(iterations: int | None, epochs: int) -> str:
    return f"{iterations} iterations" if iterations is not None else f"{epochs} epochs"


def _grids(table: dict[str, Any]) -> str:
    return ", ".join(f"{m} {g.size}³ at {g.spacing} mm" for m, g in table.items())


RECIPE = CascadeRecipe()
