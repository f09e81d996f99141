"""The predictor: one model bundle, any case of its task, labels on the reference input's grid."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from multimodalseg import catalog, io
from multimodalseg import preprocessing as prep
from multimodalseg.bundles import Bundle, check_label_names, check_roles
from multimodalseg.errors import UserError
from multimodalseg.inference import extras, postprocess, quality, spine_extras
from multimodalseg.inference.brain_mask import masker_for
from multimodalseg.inference.devices import choose_precision, precision_name, resolve_device
from multimodalseg.inference.engine import (
    NetworkInput,
    NetworkPass,
    WindowSettings,
    count_windows,
    crop_margin_voxels,
    mirror_swap,
    predict_probabilities,
    run_with_fallback,
    training_flip_axes,
    tta_mirror_axes,
)
from multimodalseg.inference.missing import check_missing
from multimodalseg.inference.onednn import route_convolutions
from multimodalseg.orientation import Reorientation, check_code, orientation_code, reorient_grid, reorientation
from multimodalseg.progress import ProgressCallback, Stages
from multimodalseg.tasks import get_task

InputValue = str | os.PathLike | sitk.Image


# Bundle metadata section -> "module:attribute" of the runner that replaces the sliding window for it, called as
# ``runner(predictor, **stage_switches)``. By name, so the predictor imports no workflow module (none imports back).
RUNNERS: dict[str, str] = {"cascade": "multimodalseg.inference.heart_cascade:HeartCascadeRunner"}
# Tasks whose paper tests with flip TTA; Predictor(tta=None) turns it on for them on CUDA (CPU: opt-in, 8x slower).
TTA_ON_GPU: frozenset[str] = frozenset({"brain-tumor"})


@dataclass
class Result:
    """What :meth:`Predictor.predict` returns.

    Attributes:
        labels: label map with the task's output values (uint8, or uint16 above 255), exactly on the reference
            input's grid.
        indices: the same map as training indices ``(Z, Y, X)``.
        timings: seconds per stage (``load``, ``preprocess``, ``sliding window``, ``postprocess``, ``write``) and
            ``total``.
        report: JSON-ready summary (inputs, model, device, settings, timings, volumes in mL).
        probabilities: ``(K, Z, Y, X)`` float32 softmax or sigmoid on ``probability_grid`` (network spacing, cropped
            to the foreground box), when asked for.
        tables: CSV texts of the task's report extras by name (petmr-brain: ``{"suv": ...}``; the same data is in
            ``report[name]``), for the caller to write (``inference.extras.write_tables``).
        images: further volumes on the reference grid by name, written beside the label map as
            ``<out>_<name>.nii.gz`` (:meth:`write_images`): ``disagreement`` (uint8, 1 where the members of an
            ensemble bundle, e.g. MCF's UNet and VNet, give different labels) and the images of the task's report
            extras (spine: ``fused``).
    """

    labels: sitk.Image
    indices: np.ndarray
    timings: dict[str, float]
    report: dict[str, Any]
    probabilities: np.ndarray | None = None
    probability_grid: sitk.Image | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    images: dict[str, sitk.Image] = field(default_factory=dict)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the label map atomically (``io.write_image``)."""
        return io.write_image(self.labels, path)

    def write_images(self, label_path: str | os.PathLike) -> dict[str, str]:
        """Write :attr:`images` beside ``label_path`` (``seg.nii.gz`` -> ``seg_<name>.nii.gz``), each atomically;
        on a failure the ones already written are removed. Returns ``{name: path}``."""
        written: dict[str, str] = {}
        try:
            for name, image in self.images.items():
                written[name] = os.fspath(io.write_image(image, extras.image_path(label_path, name)))
        except BaseException:
            for path in written.values():
                Path(path).unlink(missing_ok=True)
            raise
        return written


def load_model(task_id: str, model: str | os.PathLike | None) -> Bundle:
    """A bundle from ``model``: None (the task's newest catalog model), a catalog id, or a bundle file path.

    Raises:
        UserError: no model for the task, unknown id, missing/tampered/truncated bundle, a bundle of another task.
    """
    return catalog.load(get_task(task_id).id, model)


class Predictor:
    """Segments cases of one task with one model bundle.

    Args:
        bundle: a loaded bundle (``bundles.load_bundle`` or :func:`load_model`).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``.
        tta: average the probabilities over the flips of the axes the bundle's training mirrored (8 passes for all 3
            axes, 2 for the left-right axis only: ``engine.tta_mirror_axes``); None: :func:`default_tta`.
        sw_batch_size: windows per forward call.
        overlap: sliding-window overlap in [0, 1); Gaussian blending when above 0. None: the bundle's
            ``inference.overlap``, else 0.25.
        progress: receives ``started``, ``progress`` and ``warning`` events (``multimodalseg.progress``).
        precision: ``auto`` (AMP on CUDA; fp32 on CPU unless the bundle validated bf16), ``fp32``, ``bf16``, ``fp16``.
        crop: run the network only on the foreground bounding box of the inputs, grown by the bundle's
            ``preprocessing.crop_margin`` voxels (training's), else by ``crop_margin_mm``; voxels
            outside are background. Background = zero for MR/PET channels, below -500 HU for CT channels.
        modality: ``ct`` or ``mr`` for bundles whose network is conditioned on it (``meta["conditional_modality"]``).
        convention: write label values in this convention of the task (e.g. ``brats2023``).
        keep_probabilities: keep the network-grid probabilities in the result.
        report_options: options of the task's report extras (``inference.extras``; petmr-brain: ``{"suv":
            SUVOverrides}``).
        cascade: stage switches of a cascade bundle (``meta["cascade"]``, ``inference.heart_cascade``):
            ``{"localize": bool, "refine": bool, "fallback": "body"|"image"}``; ignored by other bundles.
        skull_strip: tasks on skull-stripped MR (``TaskSpec.skull_strip``, brain tumour): ``auto`` strips
            whole-head input with a brain-mask bundle before the network, ``always``, ``never``
            (``inference.brain_mask``); the report's ``skull_strip`` says what was done. Other tasks refuse anything
            but ``auto``.
        brain_mask_model: that bundle (catalog id or file); None: the newest brain-mask model in the catalogs.

    Bundle metadata used (``bundles.py`` lists the keys): ``preprocessing.patch_size`` (window, ITK order; default
    the task's), ``preprocessing.spacing`` (network spacing; null: the reference's own; absent: the task's),
    ``preprocessing.normalization`` (role -> scheme, default the task's), ``preprocessing.roles`` (channel order),
    ``preprocessing.orientation`` (the window runs on the arrays permuted and flipped to it, as in training),
    ``network.config.spatial_dims`` (2: slice-wise along ``inference.plane`` or ``slice_axis``), ``preprocessing.input``
    (``fused``: the task's extra makes the 1-channel input, spine), ``conditional_modality``, ``bf16_validated``,
    ``channels_last``, ``inference.members`` (an ensemble: names of the members whose logits the network returns
    concatenated; their softmax is averaged for the labels and their disagreement is an extra output). The label
    table must use the task's label names and training indices. Fusion bundles (``meta["kind"] == "fusion"``) are
    refused. A bundle with ``meta["cascade"]`` (whole heart: localisation -> ROI -> MAUNet -> SCN -> paste-back) runs
    ``inference.heart_cascade.HeartCascadeRunner`` instead of the sliding window.
    """

    def __init__(self, bundle: Bundle, device: str = "auto", *, tta: bool | None = None, sw_batch_size: int = 1,
                 overlap: float | None = None, progress: ProgressCallback | None = None, precision: str = "auto",
                 crop: bool = True, crop_margin_mm: float = 10.0, modality: str | None = None,
                 convention: str | None = None, keep_probabilities: bool = False,
                 report_options: Mapping[str, Any] | None = None, cascade: Mapping[str, Any] | None = None,
                 skull_strip: str = "auto", brain_mask_model: str | os.PathLike | None = None) -> None:
        if sw_batch_size < 1:
            raise UserError(f"sw-batch-size must be at least 1, got {sw_batch_size}")
        self.bundle = bundle
        self.task = get_task(bundle.task)
        self.meta = bundle.meta
        if self.meta.get("kind", "segmentation") != "segmentation":
            raise UserError(f"model '{bundle.id}' is a {self.meta['kind']} model, not a segmentation model"
                            + (" (use 'multimodalseg fuse')" if self.meta["kind"] == "fusion" else ""), bundle.path)
        self.members = [str(m) for m in ((self.meta.get("inference") or {}).get("members") or [])]
        if len(self.members) == 1 or (self.members and self.task.output_kind != "labels"):
            raise UserError("bundle inference.members must name 2 or more members of a softmax (labels) network",
                            bundle.path)
        pre = self.meta.get("preprocessing", {}) or {}
        self.roles = check_roles(self.task, pre.get("roles"), bundle.path)
        # "channels": the roles as channels; otherwise the task's extra makes the input (spine: "fused", 1 channel)
        self.input_kind = str(pre.get("input") or "channels")
        check_label_names(self.task, self.meta.get("labels", []), bundle.path)
        self.spacing = tuple(pre["spacing"]) if pre.get("spacing") is not None else (
            None if "spacing" in pre else self.task.spacing)
        self.schemes = dict(pre.get("normalization") or {})
        try:  # the arrays' orientation in training (absent: as given); the sliding window runs in it
            self.orientation = check_code(pre["orientation"]) if pre.get("orientation") else None
        except ValueError as error:
            raise UserError(f"bundle preprocessing.{error}", bundle.path) from None
        config = self.meta["network"].get("config", {})
        window = self.meta.get("inference", {}) or {}
        if overlap is None:
            overlap = float(window.get("overlap", 0.25))
        if not 0.0 <= overlap < 1.0:
            raise UserError(f"overlap must be in [0, 1), got {overlap}")
        roi = prep.zyx(window.get("roi_size") or pre.get("patch_size") or self.task.patch_size)
        self.device = resolve_device(device)
        if tta is None:
            tta = default_tta(self.task.id, self.device, self.meta)
        self.settings = WindowSettings(tuple(int(r) for r in roi), overlap, sw_batch_size, bool(tta))
        self.crop_margin = pre.get("crop_margin")  # voxels on the reference grid, as in training
        self.two_d = config.get("spatial_dims", 3) == 2
        self.autocast = choose_precision(precision, self.device, self.meta)
        self.progress = progress
        self.crop, self.crop_margin_mm = crop, crop_margin_mm
        self.modality = modality
        self.convention = convention
        if convention is not None:
            self.task.values(convention)  # an unknown convention fails now, not after the network pass
        self.keep_probabilities = keep_probabilities
        self.report_options = dict(report_options or {})
        # Per-architecture layout flag, set by whoever measured it to help (PERFORMANCE.md §2.6).
        self.channels_last = bool(self.meta.get("channels_last")) and not self.two_d
        self.model = bundle.build_model().to(self.device)
        route_convolutions(self.model)  # small 3D convs on the CPU: oneDNN instead of the slow path (onednn.py)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self._check_channels(config)
        self.masker = masker_for(self.task, skull_strip, brain_mask_model, self.device)  # None: not a stripped task
        self.cascade = None
        for section, target in RUNNERS.items():  # a bundle that is not one sliding window names its runner
            if self.meta.get(section):
                module, attr = target.split(":")
                self.cascade = getattr(importlib.import_module(module), attr)(self, **dict(cascade or {}))

    @classmethod
    def from_model(cls, task_id: str, model: str | os.PathLike | None = None, **options: Any) -> Predictor:
        return cls(load_model(task_id, model), **options)

    def _reduce(self, probs: torch.Tensor) -> torch.Tensor:
        """Per-voxel reduction of ``(K·members, z, Y, X)`` probabilities for the streamed stitching: the argmax of the
        (member-averaged) softmax, then each member's argmax, stacked ``(1 + members, z, Y, X)`` (the same values
        the full-volume path computes)."""
        dtype = torch.uint8 if self.task.num_classes <= 256 else torch.int16
        if not self.members:
            return probs.argmax(0, keepdim=True).to(dtype)
        member_probs = probs.unflatten(0, (len(self.members), -1))
        return torch.cat([member_probs.mean(0).argmax(0, keepdim=True).to(dtype), member_probs.argmax(1).to(dtype)])

    def _check_channels(self, config: Mapping[str, Any]) -> None:
        expected_out = len(self.task.regions) if self.task.output_kind == "regions" else self.task.num_classes
        n_in = len(self.roles) if self.input_kind == "channels" else 1
        if "in_channels" in config and int(config["in_channels"]) != n_in:
            raise UserError(f"bundle network takes {config['in_channels']} input channels, task {self.task.id} "
                            f"gives {n_in} ({self.input_kind})", self.bundle.path)
        if "out_channels" in config and int(config["out_channels"]) != expected_out:  # per member for ensembles
            raise UserError(f"bundle network has {config['out_channels']} output channels, task {self.task.id} "
                            f"needs {expected_out} ({self.task.output_kind})", self.bundle.path)

    def _modality_index(self, modality: str | None) -> int | None:
        if not self.meta.get("conditional_modality"):
            return None
        known = self.task.modalities
        if modality is None:
            raise UserError(f"model {self.bundle.id} is conditioned on the modality: pass --modality "
                            f"{'|'.join(known)}")
        if modality.lower() not in known:
            raise UserError(f"unknown modality '{modality}' for task {self.task.id} (use {', '.join(known)})")
        return known.index(modality.lower())

    def predict(self, inputs: Mapping[str, InputValue], *, output: str | os.PathLike | None = None,
                modality: str | None = None, span: tuple[float, float] = (0.0, 1.0),
                extra: Mapping[str, Any] | None = None,
                transforms: Mapping[str, sitk.Transform] | None = None) -> Result:
        """Segment one case.

        Args:
            inputs: role -> file, DICOM folder or ``sitk.Image``.
            output: write the label map here (atomically) as the last stage, and :attr:`Result.images` beside it.
            transforms: role -> registration transform applied while resampling that input onto the reference
                grid (fixed -> moving, as ``multimodalseg register`` writes it); also passed to the task's extras.
            modality: overrides the predictor's ``modality`` for this case.
            span, extra: progress fractions cover ``span`` of the run and events carry ``extra`` (batch mode).
        """
        t_start = time.perf_counter()
        task = self.task
        modality_index = self._modality_index(modality or self.modality)
        stages = Stages(self.progress, span=span, extra=dict(extra or {}))
        paths = {r: os.fspath(p) for r, p in inputs.items() if not isinstance(p, sitk.Image)}
        stages.emit({"event": "started", "task": task.id, "model": self.bundle.id,
                     "version": str(self.meta.get("version")), "device": str(self.device), "inputs": paths})

        stages.start("load")
        images = prep.load_inputs(task, inputs)
        missing = check_missing(self.task, self.meta, self.bundle.id, images, stages.emit)
        strips = self.masker is not None and self.masker.network is not None and self.masker.mode != "never"
        checks = quality.QualityChecks(task, images, modality or self.modality, stages.emit,  # warnings, never labels
                                       strips=strips)
        # The task's report extras check their inputs now (e.g. SUV tags), before the network pass.
        report_extra = extras.prepare(task, inputs, images, {**self.report_options, "progress": stages.update,
                                                             "transforms": dict(transforms or {}),
                                                             "bundle_meta": self.meta})
        channels = getattr(report_extra, "network_input", None) if self.input_kind != "channels" else None
        if self.input_kind != "channels" and channels is None:
            raise UserError(f"model '{self.bundle.id}' takes the {self.input_kind} image, which task {task.id} "
                            "does not make", self.bundle.path)
        extra_stage = getattr(report_extra, "progress_stage", None)  # (name, weight[, before]): its own stage
        extra_before = extra_stage[2] if extra_stage and len(extra_stage) > 2 else "write"
        if extra_stage:  # set before any fraction above 0, so fractions stay increasing
            stages.weights = extras.place_stage(stages.weights, extra_stage)
        for note in report_extra.notes if report_extra is not None else ():
            stages.emit({"event": "warning", "message": note})

        stages.start("preprocess")
        raw, reference = prep.to_reference_grid(task, images, paths, transforms)
        stripped = None
        if self.masker is not None:
            if self.masker.note:
                stages.emit({"event": "warning", "message": self.masker.note})
            raw, stripped = self.masker.apply(raw, reference, task.roles.index(task.reference_role),
                                              lambda m: stages.emit({"event": "warning", "message": m}))
        mod_name = modality or self.modality
        if self.cascade is not None:
            net = self.cascade.run(raw, reference, mod_name, modality_index, stages)
        else:
            net = self._sliding_window(raw, reference, mod_name, modality_index, stages,
                                       channels, extra_stage[0] if channels and extra_stage else None)
        del raw
        indices = net.indices
        values = prep.indices_to_values(indices, task, self.convention)
        out_dtype = np.uint8 if values.max(initial=0) <= 255 and max(task.index_to_value(self.convention).values()) \
            <= 255 else np.uint16
        labels = io.copy_geometry(values.astype(out_dtype), reference)
        label_ml, region_ml = postprocess.volumes_ml(indices, task, float(np.prod(reference.GetSpacing())) / 1000.0)
        checks.after(labels, label_ml, region_ml)
        images_out: dict[str, sitk.Image] = dict(net.images)
        extra_report: dict[str, Any] = dict(net.report)
        tables = {}
        if report_extra is not None:
            names = {v: name for name, v in task.values(self.convention).items()}
            if extra_stage and extra_before == "write":
                stages.start(extra_stage[0])  # the extra reports within it through options["progress"]
            extra_report[report_extra.name], table = report_extra.finish(labels, names)
            tables = {report_extra.name: table} if table is not None else {}
            images_out.update(getattr(report_extra, "images", None) or {})  # spine: the fused CT-MR image

        outputs: dict[str, str] = {}
        result = Result(labels, indices, {}, {}, probabilities=net.probabilities,
                        probability_grid=net.probability_grid if net.probabilities is not None else None,
                        outputs=outputs, tables=tables, images=images_out)
        stages.start("write")
        if output is not None:
            outputs["labels"] = os.fspath(io.write_image(labels, output))
            try:
                outputs.update(result.write_images(output))
            except BaseException:
                Path(outputs["labels"]).unlink(missing_ok=True)  # all or nothing
                raise
        stages.stop()
        timings = {**stages.timings, "total": round(time.perf_counter() - t_start, 4)}
        report = {
            "task": task.id,
            "inputs": {r: _describe(images[r], paths.get(r)) for r in images},
            "missing_inputs": missing,
            "reference": task.reference_role,
            "model": {"id": self.bundle.id, "version": str(self.meta.get("version")), "sha256": self.bundle.sha256,
                      "path": os.fspath(self.bundle.path), "network": self.meta["network"]["name"],
                      "demo": bool(self.meta.get("demo", False))},
            "device": str(net.device),
            "precision": precision_name(self.autocast if net.device.type == self.device.type else None),
            "settings": {"tta": self.settings.tta, "overlap": self.settings.overlap,
                         "sw_batch_size": self.settings.sw_batch_size, **net.settings,
                         "modality": mod_name, "convention": self.convention, "orientation": self.orientation},
            "timings": timings,
            "volumes_ml": label_ml,
            "regions_ml": region_ml,
            "quality": checks.report(),
            **({"skull_strip": stripped} if stripped is not None else {}),
            "outputs": outputs,
            **extra_report,
        }
        result.timings, result.report = timings, report
        return result

    def _sliding_window(self, raw: np.ndarray, reference: sitk.Image, modality: str | None,
                        modality_index: int | None, stages: Stages, channels: Any = None,
                        channels_stage: str | None = None) -> NetworkPass:
        """The ordinary path: foreground crop, normalisation (or ``channels(raw, task, box)``: the task's extra
        makes the input, spine: the fused image, in stage ``channels_stage``), network spacing, sliding window
        (2D: along the bundle's ``inference.plane``), argmax, the task's post-processing, back onto the reference
        grid."""
        task = self.task
        box = None
        if self.crop:
            margin = self.crop_margin if self.crop_margin is not None else \
                crop_margin_voxels(reference.GetSpacing(), self.crop_margin_mm)
            box = prep.bounding_box(prep.foreground_mask(task, raw), margin)
            if box is not None and all(s.start == 0 and s.stop == n for s, n in zip(box, raw.shape[1:])):
                box = None
        sub = reference
        if box is not None:
            raw, sub = raw[(slice(None), *box)], prep.crop_image(reference, box)
        if channels is not None:
            if channels_stage:
                stages.start(channels_stage)
            normalized = channels(raw, task, box)
        else:
            normalized = prep.normalize_channels(task, raw, self.schemes)
            normalized = normalized[[task.roles.index(r) for r in self.roles]]
        turn = reorientation(sub.GetDirection(), self.orientation) if self.orientation else Reorientation()
        array, grid = prep.to_spacing(normalized, sub, turn.source_values(self.spacing))  # spacing: network axes
        del raw, normalized
        net_grid, _ = reorient_grid(grid, self.orientation)  # lossless; undone on the probabilities
        array = np.ascontiguousarray(turn.apply(array))
        axis = spine_extras.slice_axis(self.meta, net_grid) if self.two_d else 0
        if axis:  # the 2D engine slices along z: move the bundle's plane there, and back after
            array = np.ascontiguousarray(np.moveaxis(array, 1 + axis, 1))

        stages.start("sliding window")
        settings = replace(self.settings, mirror_axes=tta_mirror_axes(self.meta, net_grid.GetDirection()))
        windows = count_windows(array.shape[1:], settings.roi, settings.overlap)
        total = windows * len(settings.flips())
        done = [0]

        def on_windows(n: int) -> None:
            done[0] += n
            stages.update(done[0] / total)

        activation = "sigmoid" if task.output_kind == "regions" else "softmax"
        net = NetworkInput(self.model, activation, modality_index, self.two_d, on_windows, self.channels_last,
                           max(1, len(self.members)))

        members = max(1, len(self.members))
        mirror = mirror_swap(task, net_grid.GetDirection(), task.num_classes * members, members)  # TTA flips: L <-> R
        # Labels only: the engine reduces plane by plane and never holds the whole probability volume (issue 18).
        reduce = self._reduce if task.output_kind == "labels" and not self.keep_probabilities else None

        def run(compute: torch.device, stitch: torch.device) -> torch.Tensor:
            done[0] = 0
            self.model.to(compute)
            return predict_probabilities(net, array, settings, compute, stitch, self.autocast, mirror=mirror,
                                         reduce=reduce)

        def warn(message: str) -> None:
            stages.emit({"event": "warning", "message": message})

        probs, used = run_with_fallback(run, self.device, warn)
        if axis:
            probs = probs.movedim(1, 1 + axis)
        probs = probs if turn.identity else turn.undo(probs).contiguous()

        stages.start("postprocess")
        member_labels = None
        if reduce is not None:  # (1 + members, Z, Y, X): the label map, then each member's
            reduced = probs.cpu().numpy()
            prediction, member_labels = reduced[0], (reduced[1:] if self.members else None)
            kept = None
        else:
            if self.members:  # an ensemble: average the members' softmax; keep each member's argmax (disagreement)
                member_probs = probs.unflatten(0, (len(self.members), -1))
                member_labels = member_probs.argmax(1).to(torch.uint8).cpu().numpy()
                probs = member_probs.mean(0)
                del member_probs
            if task.output_kind == "regions":
                prediction = probs.cpu().numpy()
            else:
                dtype = torch.uint8 if task.num_classes <= 256 else torch.int16
                prediction = probs.argmax(0).to(dtype).cpu().numpy()  # argmax before any resampling
            kept = probs.cpu().numpy() if self.keep_probabilities else None
        del probs
        voxel_ml = float(np.prod(grid.GetSpacing())) / 1000.0
        options = {"threshold": 0.5, "spacing": tuple(grid.GetSpacing()), "voxel_ml": voxel_ml,
                   "modality": modality, **self.meta.get("postprocessing", {})}  # e.g. et_mode of the bundle
        indices_grid = postprocess.apply(prediction, task, options)
        indices_sub = prep.labels_to_grid(indices_grid, grid, sub)
        if box is None:
            indices = indices_sub.astype(postprocess.index_dtype(task), copy=False)
        else:
            indices = np.zeros(reference.GetSize()[::-1], postprocess.index_dtype(task))
            indices[box] = indices_sub
        net = NetworkPass(indices, used, {"roi_zyx": list(self.settings.roi), "tta_passes": len(settings.flips()),
                                          "network_spacing": list(grid.GetSpacing()), "windows": windows,
                                          "crop_zyx": [[s.start, s.stop] for s in box] if box else None},
                          kept, grid if kept is not None else None)
        if member_labels is not None:
            net.images["disagreement"], net.report["members"] = spine_extras.disagreement_image(
                member_labels, self.members, grid, sub, reference, box)
        return net


def _describe(image: sitk.Image, path: str | None) -> dict[str, Any]:
    return {"path": path, "size": list(image.GetSize()), "spacing": [round(s, 6) for s in image.GetSpacing()],
            "orientation": orientation_code(image.GetDirection())}


def default_tta(task_id: str, device: torch.device, meta: Mapping[str, Any] | None = None) -> bool:
    """Flip TTA when none is asked for: on for ``TTA_ON_GPU`` tasks on CUDA (the tumour paper tests with it), and on
    every device for a bundle trained with left-right mirroring only, whose TTA is one mirrored pass
    (``engine.tta_mirror_axes``; PET/MR 0.5.0 on the real T1s: fsaverage 0.333 -> 0.357, Colin27 0.284 -> 0.290)."""
    return training_flip_axes(meta or {}) == "lateral" or (device.type == "cuda" and task_id in TTA_ON_GPU)
