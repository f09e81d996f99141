"""What the benchmark runs: phantom cases written to files, the networks per task, and their temporary bundles.

Cases are ``multimodalseg.phantoms.make_case`` phantoms at the clinical sizes of issue 10 (or tiny ones with
``--quick``), written once as ``.nii.gz`` files into a cache folder, so every configuration reads the same files
through the same ``Predictor`` code path as a user's case.

Networks per task: the task's own network (``task.network``) at the demo width (the module's ``DEMO_CONFIG``) and the
paper width (``PAPER_CONFIG``, else the constructor's defaults, which are the paper's), MONAI
``SegResNet(init_filters=16)`` and MONAI ``UNet`` with a width chosen to match each of our networks' parameter
count. All are saved as bundles (random weights, fixed seed) with the SAME window settings (the task's patch size,
overlap 0.25), so only the network differs between rows.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from multimodalseg import io
from multimodalseg.nets import NETWORKS
from multimodalseg.tasks import get_task
from multimodalseg.tasks.spec import TaskSpec

TASKS = ("brain-tumor", "petmr-brain", "whole-heart", "spine")
OVERLAP = 0.25  # PERFORMANCE.md §2.7: the CPU choice; the same for every network of a run

# Network options needed for a one-tensor inference forward (MCF returns a pair for training otherwise).
INFERENCE_OPTIONS: dict[str, dict[str, Any]] = {"mcf": {"output": "mean"}}


@dataclass(frozen=True)
class CaseSpec:
    """One phantom case to benchmark.

    Args:
        task: task id.
        shape: reference grid ``(z, y, x)`` voxels.
        spacing: reference spacing ``(x, y, z)`` mm; None keeps the phantom's field of view (spacing follows shape).
        modality: ``ct``/``mr`` for whole-heart.
        roi: window ``(x, y, z)`` (ITK order, like bundles); None: the task's patch size.
        native_spacing: run the network at the reference's own spacing (bundle ``preprocessing.spacing: null``)
            instead of the task's (used by ``--quick`` and the scaling part, so the network grid follows the case).
        clinical: the phantom's clinical field of view and moving-role grids (False: the small test defaults).
        seed: phantom seed.
    """

    task: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] | None = None
    modality: str | None = None
    roi: tuple[int, int, int] | None = None
    native_spacing: bool = False
    clinical: bool = True
    seed: int = 0

    def describe(self) -> str:
        n = len(get_task(self.task).roles)
        size = "×".join(str(s) for s in self.shape[::-1])
        sp = "" if self.spacing is None else " @ " + "×".join(f"{s:.3g}" for s in self.spacing) + " mm"
        return f"{n}×{size}{sp}" + (f" ({self.modality})" if self.modality else "")


# Issue 10's clinical sizes. Spine: 512×512×60 keeping the phantom's field of view (about 0.3×0.31×3.3 mm).
CLINICAL: dict[str, CaseSpec] = {
    "brain-tumor": CaseSpec("brain-tumor", (155, 240, 240), (1.0, 1.0, 1.0)),
    "petmr-brain": CaseSpec("petmr-brain", (256, 256, 256), (1.0, 1.0, 1.0)),
    "whole-heart": CaseSpec("whole-heart", (200, 512, 512), (0.4, 0.4, 0.6), modality="ct"),
    "spine": CaseSpec("spine", (60, 512, 512)),
}

# Tiny cases for --quick (the harness's smoke test): network at the case's own spacing, 32-voxel windows.
QUICK: dict[str, CaseSpec] = {
    "brain-tumor": CaseSpec("brain-tumor", (24, 40, 40), roi=(32, 32, 32), native_spacing=True, clinical=False),
    "petmr-brain": CaseSpec("petmr-brain", (32, 40, 32), roi=(32, 32, 32), native_spacing=True, clinical=False),
    "whole-heart": CaseSpec("whole-heart", (32, 40, 40), modality="ct", roi=(32, 32, 32), native_spacing=True,
                            clinical=False),
    "spine": CaseSpec("spine", (12, 40, 40), roi=(32, 32, 1), native_spacing=True, clinical=False),
}

SCALING_FACTORS = (0.5, 1.0, 2.0)  # voxel-count multiples of the base case (per axis: cube roots)


def case_spec(task: str, quick: bool) -> CaseSpec:
    return (QUICK if quick else CLINICAL)[task]


def scaling_specs(task: str, quick: bool) -> list[CaseSpec]:
    """Three sizes of the same phantom (same field of view, finer grid), run at their own spacing."""
    base = case_spec(task, quick)
    specs = []
    for factor in SCALING_FACTORS:
        f = factor ** (1 / 3)
        shape = tuple(max(8, int(round(s * f))) for s in base.shape)
        if base.roi is not None and base.roi[2] == 1:  # slice-wise task: keep slices, grow the plane
            shape = (base.shape[0], *(max(8, int(round(s * math.sqrt(factor)))) for s in base.shape[1:]))
        spacing = None if base.spacing is None else tuple(
            sp * b / s for sp, b, s in zip(base.spacing, base.shape[::-1], shape[::-1]))
        specs.append(replace(base, shape=shape, spacing=spacing, native_spacing=True))
    return specs


# --- case files ---------------------------------------------------------------------------------------------------

@dataclass
class CaseFiles:
    """A phantom case on disk: ``inputs`` role -> file, ``label`` file, ``info`` (sizes, spacings, voxels)."""

    spec: CaseSpec
    inputs: dict[str, str]
    label: str
    info: dict[str, Any] = field(default_factory=dict)


def _key(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_case(spec: CaseSpec, workdir: Path) -> CaseFiles:
    """Generate the phantom once and cache its files under ``workdir/cases`` (a manifest marks a complete case)."""
    from multimodalseg.phantoms import make_case

    key = _key([spec.shape, spec.spacing, spec.modality, spec.clinical, spec.seed])
    folder = workdir / "cases" / f"{spec.task}-{key}"
    manifest = folder / "case.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        return CaseFiles(spec, data["inputs"], data["label"], {**data["info"], "description": spec.describe()})
    case = make_case(spec.task, spec.seed, shape=spec.shape, spacing=spec.spacing, modality=spec.modality,
                     clinical=spec.clinical)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = {role: os.fspath(io.write_image(img, folder / f"{role}.nii.gz")) for role, img in case.images.items()}
    label = os.fspath(io.write_image(case.label, folder / "label.nii.gz"))
    ref = case.images[get_task(spec.task).reference_role]
    info = {
        "description": spec.describe(),
        "reference_size_xyz": list(ref.GetSize()),
        "reference_spacing_xyz": [round(s, 4) for s in ref.GetSpacing()],
        "reference_voxels": int(np.prod(ref.GetSize())),
        "inputs": {r: {"size_xyz": list(i.GetSize()), "spacing_xyz": [round(s, 4) for s in i.GetSpacing()],
                       "pixel": i.GetPixelIDTypeAsString()} for r, i in case.images.items()},
    }
    manifest.write_text(json.dumps({"inputs": inputs, "label": label, "info": info}, indent=1))
    return CaseFiles(spec, inputs, label, info)


def read_labels(path: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the label values present in either map (1.0 when both are all background)."""
    values = sorted(set(np.unique(a).tolist()) | set(np.unique(b).tolist()) - {0})
    if not values:
        return 1.0
    scores = []
    for v in values:
        x, y = a == v, b == v
        scores.append(2.0 * np.count_nonzero(x & y) / (np.count_nonzero(x) + np.count_nonzero(y)))
    return float(np.mean(scores))


# --- networks -----------------------------------------------------------------------------------------------------

@dataclass
class NetSpec:
    """One network row: ``label`` (table name), registry ``name``, ``width`` (demo, paper, baseline), full ``config``
    (with spatial_dims and channels), ``kind`` (ours, baseline, catalog), ``model`` (catalog id for a catalog row)."""

    label: str
    name: str
    width: str
    config: dict[str, Any]
    kind: str
    model: str | None = None
    params: int | None = None
    conditional: bool = False


def io_config(task: TaskSpec, roi_xyz: tuple[int, int, int]) -> dict[str, int]:
    out = len(task.regions) if task.output_kind == "regions" else task.num_classes
    return {"spatial_dims": 2 if 1 in roi_xyz else 3, "in_channels": len(task.roles), "out_channels": out}


def _factory(name: str):
    module, attr = NETWORKS[name].split(":")
    mod = importlib.import_module(module)
    return mod, getattr(mod, attr)


def width_config(name: str, width: str) -> dict[str, Any]:
    """The module's ``DEMO_CONFIG`` / ``PAPER_CONFIG`` (paper: the constructor defaults when it has none)."""
    mod, _ = _factory(name)
    attr = {"demo": "DEMO_CONFIG", "paper": "PAPER_CONFIG"}[width]
    cfg = getattr(mod, attr, None)
    if cfg is None and width == "demo":
        raise ValueError(f"network '{name}' has no DEMO_CONFIG")
    return dict(cfg or {})


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def count_params(name: str, config: dict[str, Any]) -> int:
    """Parameters of ``build_network(name, **config)``, built on the meta device (no memory, no init cost)."""
    import torch
    from multimodalseg.nets import build_network

    try:
        with torch.device("meta"):
            net = build_network(name, **config)
    except Exception:  # a module that computes with real tensors in __init__: build it for real
        net = build_network(name, **config)
    return int(sum(p.numel() for p in net.parameters()))


def _init_parameters(name: str) -> Mapping[str, inspect.Parameter]:
    _, factory = _factory(name)
    try:
        return inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}


def is_conditional(name: str, config: Mapping[str, Any]) -> bool:
    """Whether the network takes ``forward(x, modality=...)``: its ``conditional_modality`` switch when it has one,
    else a ``modality`` argument of ``forward``."""
    params = _init_parameters(name)
    if "conditional_modality" in params:
        return bool(config.get("conditional_modality", params["conditional_modality"].default))
    _, factory = _factory(name)
    forward = getattr(factory, "forward", None)
    return forward is not None and "modality" in inspect.signature(forward).parameters


def unet_config(base: dict[str, int], c: int) -> dict[str, Any]:
    return {**base, "channels": [c, 2 * c, 4 * c, 8 * c, 16 * c], "strides": [2, 2, 2, 2], "num_res_units": 2}


def matched_unet(base: dict[str, int], target: int) -> tuple[dict[str, Any], int]:
    """MONAI UNet (5 levels, channels c..16c, 2 residual units) whose parameter count is closest to ``target``."""
    lo, hi = 1, 2
    while count_params("unet", unet_config(base, hi)) < target and hi < 512:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # parameters grow monotonically with c
        mid = (lo + hi) // 2
        if count_params("unet", unet_config(base, mid)) < target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda c: abs(math.log(count_params("unet", unet_config(base, c)) / target)))
    cfg = unet_config(base, best)
    return cfg, count_params("unet", cfg)


def networks(task_id: str, roi_xyz: tuple[int, int, int], widths: list[str], baselines: list[str],
             notes: list[str]) -> list[NetSpec]:
    """Our network at each width, then SegResNet16, then a parameter-matched UNet per width of ours.

    Networks that are not registered (or fail to build) are left out with a line in ``notes``.
    """
    task = get_task(task_id)
    base = io_config(task, roi_xyz)
    nets: list[NetSpec] = []
    ours = task.network
    if ours is None or ours not in NETWORKS:
        notes.append(f"{task_id}: network '{ours}' is not registered yet; only the baselines ran")
    else:
        for width in widths:
            try:
                cfg = {**base, **dict(task.network_config), **width_config(ours, width),
                       **INFERENCE_OPTIONS.get(ours, {})}
                if task.modalities and "conditional_modality" in _init_parameters(ours):
                    cfg.setdefault("conditional_modality", True)  # one model for every modality of the task
                cfg = _jsonable(cfg)
                spec = NetSpec(ours, ours, width, cfg, "ours", params=count_params(ours, cfg),
                               conditional=is_conditional(ours, cfg))
            except Exception as exc:  # an unfinished network: say so, benchmark the rest
                notes.append(f"{task_id}: {ours} at {width} width cannot be built ({type(exc).__name__}: {exc})")
                continue
            nets.append(spec)
    ours_specs = list(nets)
    if "segresnet" in baselines:
        cfg = {**base, "init_filters": 16}
        nets.append(NetSpec("segresnet16", "segresnet", "baseline", cfg, "baseline",
                            params=count_params("segresnet", cfg)))
    if "unet" in baselines:
        # Matched to each width of ours; without ours, to SegResNet16 (4.7 M in 3D).
        targets = [(f"≈{ours} {s.width}", s.width, s.params) for s in ours_specs] or \
            [("≈segresnet16", "baseline", count_params("segresnet", {**base, "init_filters": 16}))]
        for text, width, target in targets:
            cfg, params = matched_unet(base, int(target))
            nets.append(NetSpec(f"unet ({text})", "unet", width, cfg, "baseline", params=params))
    return nets


def catalog_network(task_id: str) -> NetSpec | None:
    """The task's default catalog bundle (real weights: Dice against the phantom label is meaningful), if any."""
    from multimodalseg import catalog
    from multimodalseg.errors import UserError

    try:
        entry = catalog.default_for(task_id)
    except UserError:
        return None
    return NetSpec(f"catalog:{entry.id}", entry.network or "?", "catalog", {}, "catalog", model=entry.id)


def save_temp_bundle(workdir: Path, task_id: str, net: NetSpec, roi_xyz: tuple[int, int, int],
                     native_spacing: bool) -> str:
    """A bundle with random weights (seed 0) and the shared window settings; cached by content."""
    import torch
    from multimodalseg.bundles import save_bundle
    from multimodalseg.nets import build_network

    task = get_task(task_id)
    pre: dict[str, Any] = {"roles": list(task.roles), "patch_size": list(roi_xyz)}
    if native_spacing:
        pre["spacing"] = None
    meta = {
        "id": f"bench-{task_id}-{net.name}-{net.width}", "version": "0", "task": task_id,
        "network": {"name": net.name, "config": net.config},
        "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in task.labels],
        "preprocessing": pre,
        "inference": {"roi_size": list(roi_xyz), "overlap": OVERLAP},
        "conditional_modality": net.conditional,
        "demo": True, "description": "benchmark bundle: random weights",
    }
    path = workdir / "bundles" / f"{meta['id']}-{_key(meta)}.pt"
    if path.exists() and Path(f"{path}.sha256").exists():
        return os.fspath(path)
    torch.manual_seed(0)
    model = build_network(net.name, **net.config)
    save_bundle(path, model.state_dict(), meta)
    return os.fspath(path)
