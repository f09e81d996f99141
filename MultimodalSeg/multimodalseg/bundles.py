"""Model bundles: one ``.pt`` file holding a state dict and JSON-able metadata, with a sha256 beside it.

A bundle is written by ``training export`` (or :func:`save_bundle`) as ``NAME.pt`` plus ``NAME.pt.sha256``
(``sha256sum`` format). Loading checks the sha256 first (from the catalog, the caller, or the sidecar) and
only then calls ``torch.load(..., weights_only=True)``: no pickled code is ever executed.

Metadata keys (``meta``):
    format: ``"multimodalseg-bundle/1"``
    id, version: the model's name and version string
    task: task id; labels: ``[{"index", "value", "name"}]`` as trained
    network: ``{"name": registry name, "config": keyword arguments}``
    preprocessing: ``{"spacing", "patch_size", "normalization": {role: scheme}, "roles": [...]}``; optional
    ``crop_margin`` (voxels kept around the foreground), ``orientation`` (the code, e.g. ``LIA``, training
    permuted and flipped every case's arrays to: inference does the same to the input and undoes it on the
    output, ``multimodalseg.orientation``; absent or null: as given), ``missing_inputs`` (``{role: "zeros"}``: roles
    ``segment`` may go without, trained with modality dropout) and, for spine segmentation bundles, ``input``
    (``"fused"``: the network segments the fused CT-MR image; ``"channels"`` or absent: CT and MR as channels)
    inference: optional ``{"overlap", "roi_size", "plane" or "slice_axis", "members"}``: the window, ``plane``
    for 2-D networks run slice by slice (spine MCF: ``"sagittal"``), ``members`` for an ensemble
    fusion_model: spine segmentation bundles trained on fused images name the fusion bundle
    (``{"model", "version", "sha256", "pad"}``; ``segment`` notes a different one); kind: ``"fusion"`` for
    fusion bundles, whose ``fusion`` block holds ``{"ct_window", "mr_percentile", "axis", "roles"}``
    training: the training configuration; metrics: validation metrics; demo: trained on phantoms
    optional, read by inference: ``conditional_modality`` (the network's ``forward(x, modality=LongTensor(B))``
    takes the task's modality index, CT 0 / MR 1), ``bf16_validated`` (Dice checked under bf16: CPU bf16 autocast
    allowed), ``channels_last`` (measured to help: windows fed as ``channels_last_3d``), ``seconds``
    (``{"cpu", "gpu", "cpu_machine", "gpu_machine"}`` measured per case, copied into the catalog), ``description``,
    ``created``. ``preprocessing.spacing`` null means "the reference input's own spacing"; absent means the
    task's. ``spacing`` and ``patch_size`` are ITK (x, y, z) order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from multimodalseg.tasks.spec import TaskSpec

BUNDLE_FORMAT = "multimodalseg-bundle/1"
REQUIRED_META = ("id", "version", "task", "network", "labels")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}.sha256")


def read_sidecar(path: str | os.PathLike) -> str | None:
    side = sidecar_path(path)
    if not side.exists():
        return None
    text = side.read_text().split()
    return text[0].lower() if text else None


@dataclass
class Bundle:
    """A loaded bundle: its file, checksum, metadata and weights."""

    path: Path
    sha256: str
    meta: dict[str, Any]
    state_dict: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    def build_model(self):
        """The network with the bundle's weights, in eval mode."""
        from multimodalseg.nets import build_network
        from multimodalseg.nets.cin import pin_legacy_scope

        net = build_network(self.meta["network"]["name"], **pin_legacy_scope(self.meta["network"].get("config", {})))
        try:
            net.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise UserError(f"weights do not fit network {self.meta['network']['name']}: {exc}", self.path) from exc
        return net.eval()


def save_bundle(path: str | os.PathLike, state_dict: dict[str, Any], meta: dict[str, Any]) -> str:
    """Write a bundle and its ``.sha256`` sidecar atomically; returns the sha256."""
    import torch

    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"bundle metadata lacks {', '.join(missing)}")
    from multimodalseg.nets.cin import pin_current_scope

    if isinstance(meta.get("network"), dict) and "config" in meta["network"]:
        # A conditional MAUNet's scope goes into the bundle: a missing one reads as the pre-0.3 "all".
        meta = {**meta, "network": {**meta["network"], "config": pin_current_scope(meta["network"]["config"])}}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": BUNDLE_FORMAT, "meta": {**meta, "format": BUNDLE_FORMAT},
               "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}}
    atomic_write(p, lambda tmp: torch.save(payload, tmp), ".pt")
    digest = sha256_file(p)
    atomic_write_text(sidecar_path(p), f"{digest}  {p.name}\n")
    return digest


def load_bundle(path: str | os.PathLike, *, sha256: str | None = None, task: str | None = None) -> Bundle:
    """Check the checksum, then load with ``weights_only=True``.

    Args:
        path: the ``.pt`` file.
        sha256: the expected checksum (a catalog's); the sidecar's when None. No checksum at all is refused.
        task: refuse a bundle trained for another task.

    Raises:
        UserError: missing file, no checksum, checksum mismatch (tampered or truncated), unreadable content,
            wrong format, another task, or (with ``task``) a label table other than the task's
            (:func:`check_label_table`).
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise UserError("model bundle not found", p)
    expected = (sha256 or read_sidecar(p) or "").lower()
    if not expected:
        raise UserError("model bundle has no sha256 (no catalog entry and no .sha256 file); "
                        "import it with 'multimodalseg models import FILE --sha256 HEX'", p)
    actual = sha256_file(p)
    if actual != expected:
        raise UserError(f"model bundle sha256 mismatch (expected {expected[:12]}..., got {actual[:12]}...): "
                        "the file is damaged, truncated or was changed", p)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad archives
        raise UserError(f"model bundle cannot be read ({type(exc).__name__})", p) from exc
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        raise UserError(f"not a MultimodalSeg model bundle (format {BUNDLE_FORMAT} expected)", p)
    meta = payload["meta"]
    if task is not None and meta.get("task") != task:
        raise UserError(f"model bundle is for task '{meta.get('task')}', not '{task}'", p)
    if task is not None:
        check_label_table(meta, p)
    return Bundle(p, actual, meta, payload["state_dict"])


def check_label_table(meta: dict[str, Any], path: str | os.PathLike | None = None) -> None:
    """Refuse a bundle whose label table is not its task's: same labels, values and training indices.

    A network trained on another table would write its classes under the wrong names (the PET/MR demo 0.1.0 was
    trained on the ``aseg.stats`` rows; the task now uses the 45 labels of ``aseg.mgz``), so this is a UserError
    that says what differs, never a silent relabelling. An empty table (hand-made wiring bundles) is not checked
    here; the predictor then takes the task's.
    """
    from multimodalseg.tasks import get_task

    task = get_task(str(meta.get("task")))
    theirs = {(int(lab["index"]), int(lab["value"]), str(lab["name"])) for lab in meta.get("labels") or []
              if isinstance(lab, dict) and {"index", "value", "name"} <= lab.keys()}
    ours = {(lab.index, lab.value, lab.name) for lab in task.labels}
    if not meta.get("labels") or theirs == ours:
        return
    names_theirs, names_ours = {n for _, _, n in theirs}, {n for _, _, n in ours}
    lacks, extra = sorted(names_ours - names_theirs), sorted(names_theirs - names_ours)

    def shown(names: list[str]) -> str:
        return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")

    what = []
    if lacks:
        what.append(f"lacks {shown(lacks)}")
    if extra:
        what.append(f"has {shown(extra)}")
    if not what:
        what.append("uses other values or training indices")
    raise UserError(f"model {meta.get('id')} {meta.get('version')} was trained on another {task.id} label table "
                    f"({len(theirs)} labels; it {'; '.join(what)}): retrain it for the current table of "
                    f"{len(ours)} labels", path)


def check_roles(task: TaskSpec, roles: Any, path: Path) -> tuple[str, ...]:
    """The bundle's input roles (channel order); the task's when it lists none; they must be the task's."""
    if not roles:
        return task.roles
    if sorted(roles) != sorted(task.roles):
        raise UserError(f"bundle inputs {', '.join(roles)} do not match task {task.id} inputs "
                        f"{', '.join(task.roles)}", path)
    return tuple(roles)


def check_label_names(task: TaskSpec, labels: Any, path: Path) -> None:
    """The bundle's label table must name the task's labels with the task's training indices."""
    for lab in labels or []:
        try:
            spec = task.label(str(lab.get("name")))
        except KeyError:
            raise UserError(f"bundle label '{lab.get('name')}' is not a {task.id} label", path) from None
        if int(lab.get("index", spec.index)) != spec.index:
            raise UserError(f"bundle label '{spec.name}' has index {lab['index']}, task {task.id} uses {spec.index}",
                            path)
