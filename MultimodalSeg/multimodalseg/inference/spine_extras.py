"""The spine task's report extras (``TaskSpec.report_extras``, protocol in ``inference.extras``).

Before the network pass (:func:`spine_extras`): decide whether a fused CT-MR image is made and load the fusion
bundle, so that a bad ``--fusion-model`` fails before the segmentation runs. Options (``Predictor(report_options=
...)``; ``segment`` passes them): ``fusion`` (False: no fused image), ``fusion_model`` (catalog id or bundle file;
None: the newest fusion model of the catalogs, skipped with a note when there is none), ``fusion_pad`` (False:
fuse unpadded slices; default: padded to 512 x 512, ``inference.fusion.FusionRunner``), ``fusion_pad_mode``,
``fusion_metrics`` (EN/MI/SF/VIF in the report), ``lowest_level`` (level of the lowest vertebra, ``L5``),
``device``, ``transforms`` (role -> the transform the predictor applied) and ``progress`` (the predictor's
within-stage progress callback).

Progress: when it fuses, the extra declares its own stage, ``progress_stage = ("fusion", weight)``; the predictor
runs :meth:`SpineExtra.finish` inside that stage and the fusion reports the fraction of slices fused per batch.

After it (:meth:`SpineExtra.finish`): the vertebrae of the label map named by their cranio-caudal order
(``postprocessing.spine.name_vertebrae``) and the fused image on the CT grid (``inference.fusion.fuse_case``),
which the predictor writes beside the label map as ``<out>_fused.nii.gz`` (``images``). The disagreement map of
the MCF pair is not made here: the predictor makes it for any bundle with several ``inference.members``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.postprocessing.spine import LEVELS, name_vertebrae
from multimodalseg.tasks.spec import TaskSpec

FUSION_PROGRESS_WEIGHT = 1.0


class SpineExtra:
    """Vertebra levels and the fused image of one spine case (see the module docstring)."""

    name = "spine"
    progress_stage: tuple[str, float] | None = None

    def __init__(self, images: Mapping[str, sitk.Image], options: Mapping[str, Any], runner: Any | None,
                 notes: list[str]) -> None:
        self.source_images = dict(images)
        self.options = dict(options)
        self.runner = runner
        self.notes = notes
        self.images: dict[str, sitk.Image] = {}
        if runner is not None:
            # share of the progress bar next to the segmentation's stages (sum 1.0); fusing padded 512 x 512
            # slices usually takes longer than the segmentation itself
            self.progress_stage = ("fusion", FUSION_PROGRESS_WEIGHT)

    def finish(self, labels: sitk.Image, names: Mapping[int, str]) -> tuple[dict[str, Any], str | None]:
        vertebra = next((v for v, n in names.items() if n == "vertebra"), None)
        data: dict[str, Any] = {"lowest_level": self.options.get("lowest_level") or "L5"}
        if vertebra is not None:
            table, _ = name_vertebrae(labels, vertebra_value=int(vertebra), lowest=data["lowest_level"],
                                      instance_map=False)
            data["vertebrae"] = [{**row, "volume_ml": round(row["volume_ml"], 3),
                                  "centroid_lps": [round(c, 2) for c in row["centroid_lps"]],
                                  "superior_mm": round(row["superior_mm"], 2)} for row in table]
            data["levels"] = [row["level"] for row in table if row["level"]]
        if self.runner is not None:
            from multimodalseg.inference.fusion import fuse_case

            transform = (self.options.get("transforms") or {}).get("mr")
            result = fuse_case(self.runner, self.source_images["ct"], self.source_images["mr"], transform=transform,
                               metrics=bool(self.options.get("fusion_metrics", False)),
                               on_progress=self.options.get("progress"))
            self.images["fused"] = result.fused
            data["fusion"] = result.report
        return data, None


def spine_extras(task: TaskSpec, inputs: Mapping[str, Any], images: Mapping[str, sitk.Image],
                 options: Mapping[str, Any]) -> SpineExtra:
    """First phase: check the options and load the fusion model (UserError for a bad one)."""
    lowest = options.get("lowest_level") or "L5"
    if lowest not in LEVELS:
        raise UserError(f"unknown vertebral level '{lowest}' for the lowest vertebra (use one of "
                        f"{', '.join(LEVELS)})")
    notes: list[str] = []
    runner = None
    if options.get("fusion", True) and "mr" in images:
        from multimodalseg import catalog
        from multimodalseg.inference.fusion import FUSION_KIND, FusionRunner, load_fusion_model

        model = options.get("fusion_model")
        if model is None and not catalog.entries(task.id, FUSION_KIND):
            notes.append("no fusion model in the catalogs: the fused CT-MR image is not written "
                         "(give one with --fusion-model)")
        else:
            runner = FusionRunner(load_fusion_model(model), options.get("device") or "auto",
                                  pad=bool(options.get("fusion_pad", True)), pad_mode=options.get("fusion_pad_mode"))
    return SpineExtra(images, {**options, "lowest_level": lowest}, runner, notes)
