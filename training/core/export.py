"""Export a training checkpoint as a model bundle the predictor loads (``multimodalseg.bundles.save_bundle``).

The bundle metadata follows ``multimodalseg/bundles.py``: id, version, task, labels (index, value, name as
trained), network (registry name and keyword arguments), preprocessing (network spacing, patch size, the
normalisation scheme per role as trained: the task's, overridden by ``data.normalization``; the roles in channel
order), the training configuration, the validation metrics
of the exported weights and the ``demo`` flag. Region tasks also record the region channels. A trainer can add
keys through ``extra_state()["bundle_meta"]`` (e.g. ``{"conditional_modality": True}`` for a network that takes
the modality).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from multimodalseg.bundles import save_bundle
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task
from multimodalseg.tasks.spec import TaskSpec

from training.core.checkpoint import load_checkpoint
from training.core.config import TrainingConfig
from training.core.modality_dropout import STAND_IN, droppable_roles
from training.core.transforms import network_orientation, network_spacing, normalization_schemes, patch_size, roi_size


def bundle_meta(config: TrainingConfig, task: TaskSpec, network: dict[str, Any], metrics: dict[str, Any],
                *, epoch: int | None = None, best_epoch: int | None = None) -> dict[str, Any]:
    """The ``meta`` of a bundle trained with ``config``."""
    meta: dict[str, Any] = {
        "id": config.name,
        "version": config.version,
        "task": task.id,
        "labels": [{"index": lab.index, "value": lab.value, "name": lab.name}
                   for lab in sorted(task.labels, key=lambda lab: lab.index)],
        "output_kind": task.output_kind,
        "network": {"name": network["name"], "config": dict(network["config"])},
        "preprocessing": {
            "spacing": network_spacing(config, task),
            "patch_size": patch_size(config, task),
            "normalization": normalization_schemes(config, task),  # data.normalization over the task's
            "roles": list(task.roles),
            "crop_margin": config.data.crop_margin,
            "orientation": network_orientation(config, task),  # None: as given
        },
        "inference": {"roi_size": roi_size(config, task), "overlap": config.validation.overlap,
                      "mode": config.validation.mode},
        "training": {**config.to_dict(), "epochs_trained": epoch, "best_epoch": best_epoch},
        "metrics": metrics,
        "demo": bool(config.demo),
    }
    if config.augmentation.modality_dropout:  # segment accepts any subset of these roles, zeros standing in
        roles = droppable_roles(task, dict(config.augmentation.modality_dropout).get("roles"))
        meta["preprocessing"]["missing_inputs"] = {role: STAND_IN for role in roles}
    if task.output_kind == "regions":
        meta["regions"] = [{"name": r.name, "labels": list(r.labels)} for r in task.regions]
    return meta


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, model_id: str | None = None,
                      version: str | None = None, demo: bool | None = None) -> tuple[Path, str]:
    """Write the bundle ``out`` (+ ``out.sha256``) from a checkpoint; returns the path and its sha256.

    Raises:
        UserError: unreadable checkpoint, output not a ``.pt`` file, or output equal to the checkpoint.
    """
    src, dst = Path(checkpoint), Path(out)
    if dst.suffix != ".pt":
        raise UserError("a model bundle file name must end in .pt", dst)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise UserError("the bundle would overwrite its checkpoint; choose another output", dst)
    state = load_checkpoint(src)
    config = TrainingConfig.from_dict(state["config"], source=os.fspath(src))
    if model_id is not None:
        config.name = model_id
    if version is not None:
        config.version = version
    if demo is not None:
        config.demo = demo
    network = state.get("network") or {}
    if not network.get("name"):
        raise UserError("checkpoint does not record its network", src)
    task = get_task(config.task)
    epoch = int(state["epoch"])
    # The metrics of these very weights: best.pt was saved at the best epoch, last.pt maybe after a validation.
    if epoch == int(state.get("best_epoch", -1)):
        metrics = dict(state.get("best_metrics") or {})
    elif epoch == int(state.get("last_metrics_epoch", -1)):
        metrics = dict(state.get("last_metrics") or {})
    else:
        metrics = {}
    meta = bundle_meta(config, task, network, metrics, epoch=epoch, best_epoch=int(state.get("best_epoch", 0)))
    # A workflow trainer adds keys the predictor reads (e.g. ``conditional_modality``) through its extra state.
    meta.update(dict((state.get("extra") or {}).get("bundle_meta") or {}))
    try:
        digest = save_bundle(dst, state["model"], meta)
    except OSError as exc:
        raise UserError(f"cannot write the bundle ({exc.strerror or exc})", dst) from None
    return dst, digest


def export_run(run: str | os.PathLike, out: str | os.PathLike, *, model_id: str | None = None,
               version: str | None = None, demo: bool | None = None) -> tuple[Path, str]:
    """The bundle of a ``fit`` run folder: the one its recipe assembled (cascade, MCF, fusion), re-saved with the
    given id/version/demo, else the last stage's best checkpoint exported (supervised)."""
    import json

    from multimodalseg.bundles import load_bundle

    folder = Path(run)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise UserError("not a run folder of `python -m training fit` (no summary.json)", folder)
    summary = json.loads(summary_path.read_text())
    if summary.get("status") != "done":
        raise UserError("the run has not finished; continue it with `fit --resume`", folder)
    if summary.get("bundle"):
        dst = Path(out)
        if dst.suffix != ".pt":
            raise UserError("a model bundle file name must end in .pt", dst)
        bundle = load_bundle(folder / summary["bundle"])
        meta = dict(bundle.meta)
        for key, value in (("id", model_id), ("version", version), ("demo", demo)):
            if value is not None:
                meta[key] = value
        return dst, save_bundle(dst, bundle.state_dict, meta)
    stages = list((summary.get("stages") or {}).values())
    checkpoint = stages[-1].get("checkpoint") if stages else None
    if not checkpoint:
        raise UserError("the run records no bundle and no checkpoint", folder)
    path = folder / checkpoint  # recorded relative to the run folder
    return export_checkpoint(path, out, model_id=model_id, version=version, demo=demo)
