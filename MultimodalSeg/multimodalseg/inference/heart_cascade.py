"""The whole-heart cascade at inference (METHODS §C.6): localise -> crop the ROI -> MAUNet -> SCN -> paste back.

A cascade bundle is ONE bundle file (one catalog entry, one sha256) whose network is ``heart_cascade``
(``nets.heart_cascade.HeartCascade``: the optional localisation network and the ROI network, MAUNet + optional SCN,
as sub-modules of one state dict) and whose metadata has a ``cascade`` section with the geometry between them::

    "cascade": {
        "localization": {"ct": {"size": 32, "spacing": 10.0}, "mr": {"size": 32, "spacing": 12.0}},
        "roi": {"ct": {"size": 64, "spacing": 3.0}, "mr": {"size": 64, "spacing": 4.0}},
        "fallback": "body",
        "modalities": ["ct"]
    }

Each grid is per modality, or one ``{"size", "spacing"}`` for all; a missing one is METHODS' (Payer's) default
(``postprocessing.heart.LOCALIZATION_GRID`` / ``ROI_GRID``). ``fallback`` is where the ROI is centred without
localisation: ``body`` (the centre of the body's bounding box) or ``image``. ``modalities`` (optional, default the
task's) are those the networks were trained on: the paper's recipe trains on CT only, so an MR input gets a warning,
and without ``--modality`` the grids of the one trained modality are used. The intensities of both grids are
normalised with the bundle's ``preprocessing.normalization`` of the image role, as in training
(``training.whole_heart.cascade_data``).

Stages (each switchable at inference, :class:`HeartCascadeRunner` arguments):

1. localisation (``localize``): the whole image on the coarse grid -> heatmap -> heart centre (arg-max, sub-voxel
   fit). A bundle without a localisation network, ``localize=False``, a heatmap whose peak is below
   :data:`MIN_HEATMAP_PEAK` (the target peak is 1) or a centre outside the image all give the fallback centre (the
   last two with a warning).
2. ROI: the image resampled on the ROI grid around the centre (anti-aliased, in the image's orientation after it
   is permuted and flipped to the bundle's ``preprocessing.orientation``, as training does).
3. MAUNet, modality-conditioned when the bundle says so (``conditional_modality``); then the SCN refinement on its
   softmax (``refine``; a bundle without an SCN has none).
4. The last stage's softmax is interpolated linearly onto the full input grid (zero outside the ROI, so
   background), then arg-max (Payer's paste-back); the task's post-processing hook, if any, runs on that map.

Flip TTA is not applied: the ROI networks are trained on hearts in one orientation (a flip swaps left and right).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any, Protocol

import numpy as np
import SimpleITK as sitk
import torch

from multimodalseg import io
from multimodalseg.errors import UserError
from multimodalseg.inference import postprocess
from multimodalseg.inference.engine import NetworkPass, run_with_fallback
from multimodalseg.postprocessing import heart as geometry
from multimodalseg.progress import Stages


class PredictorView(Protocol):
    """What the runner reads of ``multimodalseg.inference.predictor.Predictor`` (described here rather than
    imported: the predictor finds this runner through its ``RUNNERS`` table, so neither module imports the other)."""

    bundle: Any
    task: Any
    orientation: str | None
    meta: dict[str, Any]
    model: Any
    device: Any
    settings: Any
    schemes: dict[str, str]
    autocast: Any
    keep_probabilities: bool

MIN_HEATMAP_PEAK = 0.2
FALLBACKS = ("body", "image")


def cascade_grids(value: Any, defaults: Mapping[str, geometry.GridSpec],
                  modalities: tuple[str, ...]) -> dict[str, geometry.GridSpec]:
    """Modality -> grid from a bundle's ``cascade.roi`` / ``cascade.localization`` (see the module docstring).

    Raises:
        ValueError: a malformed grid or an unknown modality.
    """
    if value is None:
        return {m: defaults[m] for m in modalities}
    if isinstance(value, Mapping) and "size" in value:
        return {m: geometry.grid_spec(value, defaults[m]) for m in modalities}
    if not isinstance(value, Mapping) or set(value) - set(modalities):
        raise ValueError(f"grids must be {{'size', 'spacing'}} or keyed by {', '.join(modalities)}, got {value}")
    return {m: geometry.grid_spec(value.get(m), defaults[m]) for m in modalities}


class HeartCascadeRunner:
    """Runs a cascade bundle's stages for :class:`~multimodalseg.inference.predictor.Predictor`.

    Args:
        predictor: the predictor holding the bundle, its built network (``HeartCascade``), device and precision.
        localize: run the localisation network (when the bundle has one). Default True.
        refine: run the SCN refinement (when the bundle has one). Default True.
        fallback: ``body`` or ``image``: the ROI centre without localisation; None: the bundle's (default body).

    Raises:
        UserError: a cascade section the predictor cannot use (another network, several inputs, bad grids).
    """

    def __init__(self, predictor: PredictorView, *, localize: bool = True, refine: bool = True,
                 fallback: str | None = None) -> None:
        from multimodalseg.nets.heart_cascade import HeartCascade

        bundle, task = predictor.bundle, predictor.task
        spec = dict(predictor.meta.get("cascade") or {})
        self.predictor, self.model = predictor, predictor.model
        if not isinstance(self.model, HeartCascade):
            name = predictor.meta["network"]["name"]
            raise UserError(f"a cascade bundle needs the heart_cascade network, not {name}", bundle.path)
        if len(task.inputs) != 1 or not task.modalities:
            raise UserError(f"the cascade needs a one-input task with modalities; {task.id} is not", bundle.path)
        try:
            self.roi_grids = cascade_grids(spec.get("roi"), geometry.ROI_GRID, task.modalities)
            self.loc_grids = cascade_grids(spec.get("localization"), geometry.LOCALIZATION_GRID, task.modalities)
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"bundle cascade section: {exc}", bundle.path) from None
        self.modalities = tuple(str(m).lower() for m in spec.get("modalities") or task.modalities)
        self.fallback = fallback or str(spec.get("fallback", "body"))
        if self.fallback not in FALLBACKS:
            raise UserError(f"cascade fallback must be one of {', '.join(FALLBACKS)}, got '{self.fallback}'")
        self.localize = bool(localize) and self.model.localizer is not None
        self.refine = bool(refine) and self.model.has_refinement
        role = task.inputs[0].role
        self.scheme = predictor.schemes.get(role, task.inputs[0].normalization)

    def _grid(self, table: dict[str, geometry.GridSpec], modality: str | None, what: str) -> geometry.GridSpec:
        if modality is not None:
            return table[modality.lower()]
        if len(self.modalities) == 1:  # a one-modality model (the paper's CT-only recipe)
            return table[self.modalities[0]]
        if len(set(table.values())) == 1:
            return next(iter(table.values()))
        raise UserError(f"model {self.predictor.bundle.id} uses a {what} grid per modality: pass --modality "
                        f"{'|'.join(table)}")

    def _centre(self, image: sitk.Image, modality: str | None, device: torch.device,
                warn: Any) -> tuple[np.ndarray, str, float | None]:
        """The heart centre (LPS mm), where it came from, and the heatmap peak (None without localisation)."""
        if self.localize:
            grid = self._grid(self.loc_grids, modality, "localisation")
            array, coarse = geometry.localization_array(image, grid, self.scheme)
            x = torch.from_numpy(array)[None, None].to(device)
            with torch.inference_mode(), self._autocast(device):
                heatmap = self.model.localize(x)[0, 0].float().cpu().numpy()
            peak = float(heatmap.max())
            centre = geometry.centre_from_heatmap(heatmap, coarse)
            inside = np.all(np.abs(np.asarray(image.TransformPhysicalPointToContinuousIndex(
                [float(c) for c in centre])) - (np.asarray(image.GetSize()) - 1) / 2)
                <= np.asarray(image.GetSize()) / 2)
            if peak >= MIN_HEATMAP_PEAK and inside:
                return centre, "localization", peak
            warn(f"heart localisation unsure (heatmap peak {peak:.2f}"
                 f"{'' if inside else ', centre outside the image'}); ROI centred on the {self.fallback}")
            return self._fallback_centre(image), self.fallback, peak
        return self._fallback_centre(image), self.fallback, None

    def _fallback_centre(self, image: sitk.Image) -> np.ndarray:
        return geometry.body_centre(image) if self.fallback == "body" else geometry.image_centre(image)

    def _autocast(self, device: torch.device):
        dtype = self.predictor.autocast
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    def run(self, raw: np.ndarray, reference: sitk.Image, modality: str | None, modality_index: int | None,
            stages: Stages) -> NetworkPass:
        """Segment the (C=1, Z, Y, X) reference-grid image; indices come back on ``reference``'s grid."""
        task, predictor = self.predictor.task, self.predictor
        image = io.copy_geometry(raw[0], reference)
        if predictor.orientation:  # as in training: the grids below take the image's direction
            image = sitk.DICOMOrient(image, predictor.orientation)
        roi_spec = self._grid(self.roi_grids, modality, "ROI")
        if modality is not None and modality.lower() not in self.modalities:
            stages.emit({"event": "warning", "message": f"model {predictor.bundle.id} was trained on "
                         f"{'/'.join(self.modalities).upper()} only; this {modality.upper()} input is outside its "
                         "training"})
        if predictor.settings.tta:
            stages.emit({"event": "warning", "message": "flip TTA is not used by the whole-heart cascade (its "
                         "networks see hearts in one orientation)"})

        def warn(message: str) -> None:
            stages.emit({"event": "warning", "message": message})

        stages.start("sliding window")

        def run(compute: torch.device, stitch: torch.device):
            self.model.to(compute)
            centre, source, peak = self._centre(image, modality, compute, warn)
            stages.update(0.3)
            array, roi = geometry.roi_array(image, centre, roi_spec, self.scheme)
            x = torch.from_numpy(array)[None, None].to(compute)
            kwargs = {}
            if self.model.conditional:
                kwargs["modality"] = torch.full((1,), int(modality_index), dtype=torch.long, device=compute)
            with torch.inference_mode(), self._autocast(compute):
                coarse, refined = self.model.forward_stages(x, **kwargs)
                logits = refined if self.refine and refined is not None else coarse
                probs = torch.softmax(logits.float(), 1)[0].to(stitch)
            stages.update(1.0)
            return probs, centre, source, peak, roi

        (probs, centre, source, peak, roi), used = run_with_fallback(run, predictor.device, warn)

        stages.start("postprocess")
        probabilities = probs.cpu().numpy()
        del probs
        pasted = sitk.GetArrayFromImage(geometry.paste_probabilities(probabilities, roi, reference))
        options = {"threshold": 0.5, "spacing": tuple(reference.GetSpacing()),
                   "voxel_ml": float(np.prod(reference.GetSpacing())) / 1000.0, "modality": modality}
        indices = postprocess.apply(pasted.astype(postprocess.index_dtype(task)), task, options)
        settings = {"roi_zyx": [roi_spec.size] * 3, "network_spacing": list(roi.GetSpacing()), "windows": 1,
                    "crop_zyx": None,
                    "cascade": {"centre_lps": [round(float(c), 3) for c in centre], "centre_from": source,
                                "heatmap_peak": None if peak is None else round(peak, 4),
                                "refinement": self.refine, "roi_size": roi_spec.size,
                                "roi_spacing_mm": roi_spec.spacing}}
        kept = probabilities if predictor.keep_probabilities else None
        return NetworkPass(indices, used, settings, kept, roi if kept is not None else None)
