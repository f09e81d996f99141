"""``python -m training fit``: run a config's recipe stage by stage in one run folder (:mod:`training.core.recipes`).

``--resume`` continues where the run stopped: stages the summary marks done are not trained again (their results
are reloaded), the stage that was running continues from its last checkpoint (epoch) where it keeps one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from multimodalseg.errors import UserError

from training.core.config import TrainingConfig, save_config
from training.core.recipes import Plan, RunState, resolve


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def dry_run(config: TrainingConfig) -> Plan:
    """Validate the config and the data layout and describe the recipe; trains nothing."""
    recipe, settings = resolve(config)
    return recipe.plan(config, settings)


def fit_run(config: TrainingConfig, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False
            ) -> dict[str, Any]:
    """Train every stage of the config's recipe under ``out``; returns the run summary (``summary.json``)."""
    recipe, settings = resolve(config)
    stages = recipe.stages(config, settings)
    if world_size() > 1:
        single = [s.name for s in stages if not s.ddp]
        if single:
            raise UserError(f"recipe {recipe.name}: stage(s) {', '.join(single)} do not support torchrun (DDP); "
                            "run it as one process")
    out = Path(out)
    summary_path = out / "summary.json"
    started = summary_path.exists() or any((out / s.name / "checkpoints" / "last.pt").exists() for s in stages)
    if started and not resume and not overwrite:
        raise UserError("folder already holds a run; resume it with --resume, or choose another --out", out)
    if resume and not started:
        raise UserError("--resume: no run to continue in this folder (no summary.json, no checkpoints)", out)
    previous: dict[str, Any] = {}
    if resume and summary_path.exists():
        import json

        previous = json.loads(summary_path.read_text())
        if previous.get("recipe") not in (None, recipe.name):
            raise UserError(f"--resume: the run was trained with recipe {previous['recipe']}, the config names "
                            f"{recipe.name}", out)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    summary = {"recipe": recipe.name, "task": config.task, "name": config.name, "version": config.version,
               "status": "running", "stages": dict(previous.get("stages") or {}), "bundle": previous.get("bundle")}
    run = RunState(config, settings, out, resume=resume, overwrite=overwrite, summary=summary)
    main = rank() == 0
    for stage in stages:
        entry = stage.run(run)
        summary["stages"][stage.name] = {**entry, "status": "done"}
        if main:  # written once a stage is done, so a config or data error leaves no run folder behind
            out.mkdir(parents=True, exist_ok=True)
            save_config(config, out / "config.yaml")
            run.write_summary()
    summary.update(recipe.finish(run))
    summary["status"] = "done"
    if main:
        run.write_summary()
    return summary
