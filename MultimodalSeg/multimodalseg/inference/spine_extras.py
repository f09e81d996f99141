"""The spine task's report extras (``TaskSpec.report_extras``, protocol in ``inference.extras``).

Before the network pass (:func:`spine_extras`): decide whether a fused CT-MR image is made and load the fusion
bundle, so that a bad ``--fusion-model`` fails before the segmentation runs. Options (``Predictor(report_options=
...)``; ``segment`` passes them): ``fusion`` (False: no fused image written), ``fusion_model`` (catalog id or bundle
file; None: the one the segmentation bundle was trained on, else the newest fusion model of the catalogs, skipped
with a note when there is none), ``fusion_pad`` (False: fuse unpadded slices; default: padded as the fusion bundle
was trained, ``inference.fusion.FusionRunner``), ``fusion_pad_mode``, ``fusion_metrics`` (EN/MI/SF/VIF in the
report), ``lowest_level`` (level of the lowest vertebra, ``L5``), ``device``, ``transforms`` (role -> the transform
the predictor applied), ``progress`` (the predictor's within-stage progress callback) and ``bundle_meta`` (the
segmentation bundle's metadata, which the predictor passes).

The paper's pipeline (METHODS §E; the default of bundles whose ``preprocessing.input`` is ``"fused"``): register,
fuse CT and MR with the fusion network, then segment the fused image (1 channel). The predictor asks the extra for
the network input (:meth:`SpineExtra.network_input`): the extra fuses the case on the CT grid once, before the
sliding window (its own ``fusion`` stage), and the same fused volume is the ``fused`` output image. Such a bundle
cannot run without fusion: ``fusion=False`` (``--no-fusion``) then only stops the fused image from being written.
Older bundles (``preprocessing.input`` absent or ``"channels"``: CT and MR as two channels, the ablation) fuse after
the segmentation, only for the output image.

Progress: when it fuses, the extra declares its own stage, ``progress_stage = ("fusion", weight, before)``; the
predictor places it before ``before`` (``sliding window`` for a fused-input bundle, else ``write``) and the
fusion reports the fraction of slices fused per batch.

After it (:meth:`SpineExtra.finish`): the vertebrae of the label map named by their cranio-caudal order
(``postprocessing.spine.name_vertebrae``) and the fused image on the CT grid, which the predictor writes beside the
label map as ``<out>_fused.nii.gz`` (``images``). The disagreement map of an ensemble bundle (MCF's UNet and VNet)
is :func:`disagreement_image`, which the predictor calls for any bundle with several ``inference.members``.

Slice plane (:func:`slice_axis`): a 2D bundle may name ``inference.plane`` (``axial``, ``sagittal``, ``coronal``:
the paper's 924 slices of 47 patients suggest sagittal); the predictor then slices along the array axis closest to
that plane's normal on each case's grid (``postprocessing.spine.plane_axis``), as training did.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from multimodalseg import io
from multimodalseg import preprocessing as prep
from multimodalseg.errors import UserError
from multimodalseg.postprocessing.spine import LEVELS, PLANES, disagreement_map, name_vertebrae, plane_axis
from multimodalseg.tasks.spec import TaskSpec

FUSION_PROGRESS_WEIGHT = 1.0
FUSED_INPUT = "fused"  # preprocessing.input of a bundle that segments the fused image (the paper's pipeline)
CHANNEL_INPUT = "channels"  # CT and MR as channels (the ablation; bundles without preprocessing.input)
INPUTS = (FUSED_INPUT, CHANNEL_INPUT)


def network_input_kind(meta: Mapping[str, Any]) -> str:
    """``fused`` or ``channels``: what a segmentation bundle's network takes (``preprocessing.input``)."""
    kind = str((meta.get("preprocessing") or {}).get("input") or CHANNEL_INPUT)
    if kind not in INPUTS:
        raise UserError(f"bundle preprocessing.input must be one of {', '.join(INPUTS)}, got '{kind}'")
    return kind


def fused_channels(fused01: np.ndarray) -> np.ndarray:
    """The fused ``(Z, Y, X)`` volume (the fusion network's [0, 1] output) as MCF's ``(1, Z, Y, X)`` float32 input;
    training (``training.spine.fused``) and inference use this one function."""
    return np.clip(np.asarray(fused01, np.float32), 0.0, 1.0)[None]


def slice_axis(meta: Mapping[str, Any], grid: sitk.Image) -> int:
    """The array axis a 2D bundle slices ``grid`` along: its ``inference.plane`` (see the module docstring), else
    its ``inference.slice_axis`` (0, 1, 2 of (Z, Y, X)), else 0 (the z index axis, as older bundles were trained)."""
    window = meta.get("inference") or {}
    plane = window.get("plane")
    if plane is None:
        axis = int(window.get("slice_axis", 0))
        if axis not in (0, 1, 2):
            raise UserError(f"bundle inference.slice_axis must be 0, 1 or 2, got {axis}")
        return axis
    if plane not in PLANES:
        raise UserError(f"bundle inference.plane must be one of {', '.join(PLANES)}, got '{plane}'")
    return plane_axis(grid, plane)


def disagreement_image(member_labels: np.ndarray, names: Sequence[str], grid: sitk.Image, sub: sitk.Image,
                       reference: sitk.Image, box: tuple[slice, ...] | None) -> tuple[sitk.Image, dict[str, Any]]:
    """Where the members' argmax maps ``(M, Z, Y, X)`` (network grid) differ, as a uint8 image on the reference
    grid (``postprocessing.spine.disagreement_map`` of the first member against each other one), and a summary."""
    diff = np.zeros(member_labels.shape[1:], np.uint8)
    for other in member_labels[1:]:
        diff |= disagreement_map(member_labels[0], other)
    diff_sub = prep.labels_to_grid(diff, grid, sub)
    full = np.zeros(reference.GetSize()[::-1], np.uint8)
    full[box if box is not None else ...] = diff_sub
    voxels = int(full.sum())
    summary = {"names": list(names), "combined": "mean of the members' softmax",
               "disagreement_voxels": voxels,
               "disagreement_ml": round(voxels * float(np.prod(reference.GetSpacing())) / 1000.0, 3)}
    return io.copy_geometry(full, reference), summary


class SpineExtra:
    """Vertebra levels and the fused image of one spine case (see the module docstring)."""

    name = "spine"
    progress_stage: tuple[str, float, str] | None = None

    def __init__(self, images: Mapping[str, sitk.Image], options: Mapping[str, Any], runner: Any | None,
                 notes: list[str], *, fused_input: bool = False, write_fused: bool = True) -> None:
        self.source_images = dict(images)
        self.options = dict(options)
        self.runner = runner
        self.notes = notes
        self.fused_input = fused_input
        self.write_fused = write_fused
        self.images: dict[str, sitk.Image] = {}
        self._fused: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = None  # fused, ct01, mr01, seconds
        if runner is not None:
            # share of the progress bar next to the segmentation's stages (sum 1.0); fusing padded 512 x 512
            # slices usually takes longer than the segmentation itself
            self.progress_stage = ("fusion", FUSION_PROGRESS_WEIGHT, "sliding window" if fused_input else "write")

    def _fuse(self, ct_hu: np.ndarray, mr: np.ndarray) -> None:
        from multimodalseg.inference.fusion import scale_inputs

        t0 = time.perf_counter()
        ct01, mr01 = scale_inputs(ct_hu, mr, self.runner.settings)
        fused = self.runner.fuse(ct01, mr01, self.options.get("progress"))
        self._fused = (fused, ct01, mr01, time.perf_counter() - t0)

    def network_input(self, raw: np.ndarray, task: TaskSpec, box: tuple[slice, ...] | None) -> np.ndarray:
        """MCF's 1-channel input from the raw ``(C, Z, Y, X)`` CT/MR stack on the CT grid (the MR already through
        its registration transform): the case is fused on the whole grid once, then cropped to ``box``."""
        if self._fused is None:
            self._fuse(raw[task.roles.index("ct")], raw[task.roles.index("mr")])
        fused = self._fused[0]
        return fused_channels(fused[box] if box is not None else fused)

    def finish(self, labels: sitk.Image, names: Mapping[int, str]) -> tuple[dict[str, Any], str | None]:
        vertebra = next((v for v, n in names.items() if n == "vertebra"), None)
        data: dict[str, Any] = {"lowest_level": self.options.get("lowest_level") or "L5",
                                "network_input": FUSED_INPUT if self.fused_input else CHANNEL_INPUT}
        if vertebra is not None:
            table, _ = name_vertebrae(labels, vertebra_value=int(vertebra), lowest=data["lowest_level"],
                                      instance_map=False)
            data["vertebrae"] = [{**row, "volume_ml": round(row["volume_ml"], 3),
                                  "centroid_lps": [round(c, 2) for c in row["centroid_lps"]],
                                  "superior_mm": round(row["superior_mm"], 2)} for row in table]
            data["levels"] = [row["level"] for row in table if row["level"]]
        if self.runner is not None and self._fused is None:  # channel-input bundle: fuse for the output image
            from multimodalseg.inference.fusion import inputs_on_ct_grid

            transform = (self.options.get("transforms") or {}).get("mr")
            self._fuse(*inputs_on_ct_grid(self.source_images["ct"], self.source_images["mr"], transform=transform))
        if self.runner is not None:
            data["fusion"] = self._fusion_report(labels)
        return data, None

    def _fusion_report(self, reference: sitk.Image) -> dict[str, Any]:
        """The fused image (kept in :attr:`images` unless ``fusion=False``) and the report of ``fuse_case``."""
        from multimodalseg.fusion_metrics import comparison_metrics, unit_to_gray8
        from multimodalseg.postprocessing.spine import fused_on_ct_grid

        fused, ct01, mr01, seconds = self._fused
        image = fused_on_ct_grid(fused, reference)
        if self.write_fused:
            self.images["fused"] = image
        t0 = time.perf_counter()
        scores = comparison_metrics(sitk.GetArrayFromImage(image), unit_to_gray8(ct01), unit_to_gray8(mr01),
                                    int(self.runner.settings["axis"])) if self.options.get("fusion_metrics") else {}
        meta = self.runner.bundle.meta
        return {"model": {"id": self.runner.bundle.id, "version": str(meta.get("version")),
                          "sha256": self.runner.bundle.sha256, "path": os.fspath(self.runner.bundle.path),
                          "demo": bool(meta.get("demo", False))},
                "device": str(self.runner.device),
                "settings": {**self.runner.describe(), "transform": bool((self.options.get("transforms") or {})
                                                                         .get("mr")), "grid": "ct"},
                "segmented": self.fused_input, "written": self.write_fused, "metrics": scores,
                "timings": {"fusion": round(seconds, 4), "metrics": round(time.perf_counter() - t0, 4)}}


def spine_extras(task: TaskSpec, inputs: Mapping[str, Any], images: Mapping[str, sitk.Image],
                 options: Mapping[str, Any]) -> SpineExtra:
    """First phase: check the options and load the fusion model (UserError for a bad one)."""
    lowest = options.get("lowest_level") or "L5"
    if lowest not in LEVELS:
        raise UserError(f"unknown vertebral level '{lowest}' for the lowest vertebra (use one of "
                        f"{', '.join(LEVELS)})")
    meta = options.get("bundle_meta") or {}
    fused_input = network_input_kind(meta) == FUSED_INPUT
    trained_with = meta.get("fusion_model") or {}
    write = bool(options.get("fusion", True))
    notes: list[str] = []
    runner = None
    if (write or fused_input) and "mr" in images:
        from multimodalseg import catalog
        from multimodalseg.inference.fusion import FUSION_KIND, FusionRunner, load_fusion_model

        model = options.get("fusion_model") or trained_with.get("model")
        if model is None and not catalog.entries(task.id, FUSION_KIND):
            notes.append("no fusion model in the catalogs: the fused CT-MR image is not written "
                         "(give one with --fusion-model)")
        else:
            bundle = load_fusion_model(model)
            if trained_with.get("sha256") and bundle.sha256 != trained_with["sha256"]:
                notes.append(f"the segmentation model was trained on the fused images of {trained_with['model']} "
                             f"{trained_with.get('version')}; fusing with {bundle.id} {bundle.meta.get('version')}")
            pad = bool(options.get("fusion_pad", trained_with.get("pad", True)))
            runner = FusionRunner(bundle, options.get("device") or "auto", pad=pad,
                                  pad_mode=options.get("fusion_pad_mode"), workers=options.get("fusion_workers"))
    if fused_input and runner is None:
        raise UserError("this spine model segments the fused CT-MR image, and no fusion model is available: give "
                        "one with --fusion-model")
    return SpineExtra(images, {**options, "lowest_level": lowest}, runner, notes, fused_input=fused_input,
                      write_fused=write)
