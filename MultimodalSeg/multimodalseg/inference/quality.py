"""Plausibility checks before and after the network: is this an image the model can have seen (issue 15 item 3)?

Before: per input, intensities against its modality (CT must look like HU), the field of view and the body's extent
against the task's anatomy. After: predicted volumes against plausible ranges, and (CT) what the labels lie on.
Each finding is a ``warning`` event and an entry of the report's ``quality``; labels are never changed or hidden.

The ranges are data (``RANGES``, one small table per task) with their sources; they are deliberately wide (adult
anatomy, whole organ in the field of view), so a warning means "look at this", not "wrong". Checks run on a copy
shrunk to about 4 mm, so they cost well under a second.

Example:
    >>> checks = QualityChecks(task, images, modality="ct", emit=print)  # warnings for the inputs
    >>> checks.after(labels, volumes_ml)                                # warnings for the outputs
    >>> report["quality"] = checks.report()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import SimpleITK as sitk

from multimodalseg.tasks import TaskSpec

CHECK_MM = 4.0  # shrink to about this spacing before any check
CT_BODY_HU = -300.0  # soft tissue and denser: the body, not air, lung or the couch foam

# Volume ranges in mL are adult whole-organ ranges, widened by about half beyond the cited normal limits.
# Sources: Kawel-Boehm N et al., "Normal values for cardiovascular magnetic resonance in adults and children",
# J Cardiovasc Magn Reson 2015;17:29 (LV/RV volumes, LV mass at 1.05 g/mL, atrial volumes); aortic and pulmonary
# trunk segments as MM-WHS draws them (Zhuang X, Shen J, Med Image Anal 2016;31:77-87); FreeSurfer aseg volumes from
# Potvin O et al., "Normative data for subcortical regional volumes over the lifetime of the adult human brain",
# NeuroImage 2016;137:9-20; BraTS whole-tumour volumes (Baid U et al., arXiv:2107.02314, 2021: up to ~350 mL);
# adult head breadth 130-170 mm and chest breadth 250-400 mm (anthropometry, e.g. ANSUR II 2012).
RANGES: dict[str, dict[str, Any]] = {
    "whole-heart": {
        "fov_min_mm": 80.0,  # a heart is about 120 mm across; a smaller field of view cannot hold one
        "body_lr_mm": (200.0, None),  # a body fully inside the image narrower than this is a head or a limb
        "volumes_ml": {"Myo": (50, 400), "LA": (15, 250), "LV": (30, 450), "RA": (15, 300), "RV": (30, 450),
                       "AA": (3, 250), "PA": (3, 250)},
        "ct_on_bone": (700.0, 0.05),  # (HU, largest share): contrast blood stays below ~600 HU, skull and cortex not
    },
    "petmr-brain": {
        "fov_min_mm": 100.0,
        "body_lr_mm": (None, 230.0),  # a head; a wider body is a torso
        "volumes_ml": {"Left-Thalamus": (3, 14), "Right-Thalamus": (3, 14), "Left-Caudate": (1.5, 7),
                       "Right-Caudate": (1.5, 7), "Left-Putamen": (2, 9), "Right-Putamen": (2, 9),
                       "Left-Pallidum": (0.5, 3.5), "Right-Pallidum": (0.5, 3.5), "Left-Hippocampus": (1.5, 6.5),
                       "Right-Hippocampus": (1.5, 6.5), "Left-Amygdala": (0.5, 3), "Right-Amygdala": (0.5, 3),
                       "Brain-Stem": (10, 40), "Left-Cerebellum-Cortex": (25, 80),
                       "Right-Cerebellum-Cortex": (25, 80), "Left-Lateral-Ventricle": (1, 120),
                       "Right-Lateral-Ventricle": (1, 120), "Left-Cerebral-White-Matter": (120, 420),
                       "Right-Cerebral-White-Matter": (120, 420), "Left-Cerebral-Cortex": (140, 400),
                       "Right-Cerebral-Cortex": (140, 400)},
    },
    "brain-tumor": {
        "fov_min_mm": 100.0,
        "body_lr_mm": (None, 230.0),
        "regions_ml": {"WT": (0, 400)},  # no tumour (0 mL) is plausible; more than 400 mL is not
        # BraTS inputs are skull-stripped: what is above background is the brain, 1.1-2.0 L (intracranial volume,
        # e.g. Buckner RL et al., NeuroImage 2004;23:724-738). A whole head (scalp, skull, face) is 3-5 L, where the
        # network calls scalp fat and orbits oedema. Measured: real stripped MRs 1.6-1.8 L, head MRs 3.6-4.3 L.
        "stripped_max_ml": 2500.0,
        # BraTS sequences are 1 mm after co-registration; a 2-D clinical FLAIR/T2 has 4-6.5 mm slices. Measured
        # (benchmarks/results/thick_slice_robustness.txt): 5 mm FLAIR/T1/T2 cost the shipped model WT 0.05 on the
        # real metastasis MR, 0.17 on held-out synthetic cases.
        "slice_max_mm": 3.0,
    },
    "spine": {
        "fov_min_mm": 30.0,
        "ct_label_hu": {"vertebra": (100.0, None)},  # median HU under a vertebra label: bone, not soft tissue
    },
}


def _shrunk(image: sitk.Image) -> sitk.Image:
    factors = [max(1, min(int(CHECK_MM // s), n)) for s, n in zip(image.GetSpacing(), image.GetSize())]
    image = sitk.Cast(image, sitk.sitkFloat32)
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _modality(task: TaskSpec, role: str, modality: str | None) -> str:
    spec = next(i for i in task.inputs if i.role == role)
    kinds = spec.modality.upper().split("|")
    if len(kinds) > 1 and modality:
        return modality.upper()
    return kinds[0] if len(kinds) == 1 else ""


def _body(image: sitk.Image, kind: str) -> np.ndarray:
    """The largest connected foreground component (CT: HU > -300; otherwise Otsu), after a small opening."""
    if kind == "CT":
        mask = sitk.BinaryThreshold(image, CT_BODY_HU, 1e9, 1, 0)
    else:
        mask = sitk.OtsuThreshold(image, 0, 1)
    mask = sitk.BinaryMorphologicalOpening(mask, [1, 1, 1])
    comps = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    return sitk.GetArrayFromImage(comps) == 1


def _lr_extent(body: np.ndarray, image: sitk.Image) -> tuple[float, bool]:
    """(left-right extent of the body in mm, whether it touches the image's border along that axis)."""
    direction = np.abs(np.asarray(image.GetDirection()).reshape(3, 3))
    axis = int(np.argmax(direction[0]))  # the voxel axis closest to patient left-right (LPS x)
    along = np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != 2 - axis)))
    if not len(along):
        return 0.0, False
    touches = along[0] == 0 or along[-1] == body.shape[2 - axis] - 1
    return float((along[-1] - along[0] + 1) * image.GetSpacing()[axis]), bool(touches)


class QualityChecks:
    """Runs the input checks on construction and the output checks in :meth:`after`; ``emit`` gets the events.

    Args:
        task: the task (``RANGES[task.id]`` holds its table; a task without one gets the modality checks only).
        images: role -> input image as read (native grids; the reference role's grid is the output grid).
        modality: ``ct`` or ``mr`` for a role whose task modality is ``CT|MR`` (whole heart), else None.
        emit: called with each ``{"event": "warning", "message": ..., "check": ...}`` (None: collect only).
        strips: a brain-mask model strips whole-head input before the network (``inference.brain_mask``): the
            whole-head warning says so instead of asking the user to strip the skull.
    """

    def __init__(self, task: TaskSpec, images: Mapping[str, sitk.Image], modality: str | None = None,
                 emit: Callable[[dict], None] | None = None, strips: bool = False) -> None:
        self.task, self.images, self.emit, self.strips = task, dict(images), emit, strips
        self.table = RANGES.get(task.id, {})
        self.kinds = {role: _modality(task, role, modality) for role in self.images}
        self.findings: list[dict[str, Any]] = []
        self.checked: list[str] = []
        for role, image in self.images.items():
            self._input(role, image)

    def _warn(self, stage: str, check: str, message: str, **values: Any) -> None:
        finding = {"stage": stage, "check": check, "message": message, **values}
        self.findings.append(finding)
        if self.emit is not None:
            self.emit({"event": "warning", "message": f"quality: {message}", "check": check})

    def _stripped(self, role: str, small: sitk.Image, arr: np.ndarray, p99: float) -> None:
        """Warn when more than a brain is above background (the largest component above 2 % of the range)."""
        most = self.table.get("stripped_max_ml")
        if most is None:
            return
        low = float(arr.min())
        above = sitk.GetImageFromArray((arr > low + 0.02 * (p99 - low)).astype(np.uint8))
        largest = sitk.GetArrayViewFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(above), True)) == 1
        ml = float(largest.sum() * np.prod(small.GetSpacing()) / 1000.0)
        self.checked.append(f"{role}: skull-stripped (at most {most:g} mL above background)")
        if ml > most:
            self._warn("input", "skull_stripped", f"input '{role}' has {ml:.0f} mL above background: a whole head, "
                       f"not a skull-stripped brain (at most {most:g} mL); {self.task.id} models are trained on "
                       "skull-stripped brains, " + ("the brain-mask model strips it first (skull_strip in the report)"
                                                     if self.strips else "strip the skull first"),
                       role=role, volume_ml=round(ml, 1))

    def _slices(self, role: str, image: sitk.Image) -> None:
        """Warn when an input's thickest axis is coarser than the task's models were shown (a 2-D protocol)."""
        most = self.table.get("slice_max_mm")
        if most is None:
            return
        thickest = max(image.GetSpacing())
        self.checked.append(f"{role}: voxel spacing <= {most:g} mm")
        if thickest > most:
            self._warn("input", "thick_slices", f"input '{role}' has {thickest:.1f} mm slices (more than {most:g} mm): "
                       f"{self.task.id} models are trained on 1-2 mm images and lose Dice on thick slices, mostly at "
                       "the tumour's borders", role=role, spacing_mm=round(thickest, 2))

    def _input(self, role: str, image: sitk.Image) -> None:
        kind = self.kinds[role]
        small = _shrunk(image)
        arr = sitk.GetArrayViewFromImage(small)
        p1, p50, p99 = (float(v) for v in np.percentile(arr, [1, 50, 99]))
        self.checked.append(f"{role}: intensity ({kind or 'any'})")
        if p99 - p1 <= 0:
            self._warn("input", "intensity", f"input '{role}' is constant ({p50:g}): no image content", role=role)
            return
        # CT in HU has fat (-100) or air (-1000) even in a tight crop; an MR's background sits at 0 or above
        if kind == "CT" and not (-3100 <= p1 <= -50 and 50 <= p99 <= 4000):
            self._warn("input", "intensity", f"input '{role}' does not look like CT in HU (1st/99th percentiles "
                       f"{p1:.0f}/{p99:.0f}; expected fat or air below -50 and tissue or bone at 50-4000)",
                       role=role, percentiles=[round(p1, 1), round(p99, 1)])
        elif kind in ("MR", "PET") and p1 < -0.05 * abs(p99) and p1 <= -200:
            self._warn("input", "intensity", f"input '{role}' has HU-like negative values (1st percentile {p1:.0f}); "
                       f"a CT given as {kind}?", role=role, percentiles=[round(p1, 1), round(p99, 1)])
        self._stripped(role, small, arr, p99)
        self._slices(role, image)
        if role != self.task.reference_role:
            return
        fov = [n * s for n, s in zip(image.GetSize(), image.GetSpacing())]
        fov_min = self.table.get("fov_min_mm")
        if fov_min is not None:
            self.checked.append(f"{role}: field of view >= {fov_min:g} mm")
            if min(fov) < fov_min:
                self._warn("input", "field_of_view", f"input '{role}' field of view {min(fov):.0f} mm is smaller than "
                           f"the {fov_min:g} mm the {self.task.id} anatomy needs", role=role)
        bounds = self.table.get("body_lr_mm")
        if bounds is None:
            return
        extent, touches = _lr_extent(_body(small, kind), small)
        lo, hi = bounds
        self.checked.append(f"{role}: body left-right extent in [{lo or 0:g}, {hi or 'inf'}] mm")
        if lo is not None and extent < lo and not touches:
            self._warn("input", "body_extent", f"the body in '{role}' is {extent:.0f} mm wide, inside the image: "
                       f"too narrow for {self.task.id} (>= {lo:g} mm; a head or a limb?)", role=role,
                       extent_mm=round(extent, 1))
        if hi is not None and extent > hi:
            self._warn("input", "body_extent", f"the body in '{role}' is {extent:.0f} mm wide: too wide for "
                       f"{self.task.id} (<= {hi:g} mm; a torso?)", role=role, extent_mm=round(extent, 1))

    def after(self, labels: sitk.Image, volumes_ml: Mapping[str, float],
              regions_ml: Mapping[str, float] | None = None) -> None:
        """Check the predicted volumes (mL, by label name or region) and, for a CT reference, what labels lie on."""
        for key, given in (("volumes_ml", volumes_ml), ("regions_ml", regions_ml or {})):
            for name, (lo, hi) in self.table.get(key, {}).items():
                if name not in given:
                    continue
                self.checked.append(f"volume {name} in [{lo:g}, {hi:g}] mL")
                v = float(given[name])
                if not lo <= v <= hi:
                    self._warn("output", "volume", f"{name} {v:.1f} mL is outside the plausible {lo:g}-{hi:g} mL",
                               label=name, volume_ml=round(v, 2), range_ml=[lo, hi])
        ref = self.task.reference_role
        if self.kinds.get(ref) != "CT" or ref not in self.images:
            return
        ct, lab = self.images[ref], labels
        if ct.GetSize() != lab.GetSize():
            return
        hu = sitk.GetArrayViewFromImage(ct)
        values = sitk.GetArrayViewFromImage(lab)
        on_bone = self.table.get("ct_on_bone")
        if on_bone is not None and (values > 0).any():
            threshold, most = on_bone
            share = float((hu[values > 0] >= threshold).mean())
            self.checked.append(f"labels on CT >= {threshold:g} HU at most {most:.0%}")
            if share > most:
                self._warn("output", "on_bone", f"{share:.0%} of the labelled voxels are on bone (>= {threshold:g} "
                           f"HU; at most {most:.0%} expected)", share=round(share, 4))
        names = {lab_.name: lab_.value for lab_ in self.task.labels}
        for name, (lo, _hi) in self.table.get("ct_label_hu", {}).items():
            mask = values == names.get(name, -1)
            if not mask.any():
                continue
            med = float(np.median(hu[mask]))
            self.checked.append(f"median CT under {name} >= {lo:g} HU")
            if med < lo:
                self._warn("output", "label_intensity", f"{name} lies on {med:.0f} HU (median): not bone "
                           f"(>= {lo:g} HU expected)", label=name, median_hu=round(med, 1))

    def report(self) -> dict[str, Any]:
        """The report's ``quality`` entry: ``ok`` (no finding), the checks run, the warnings and their values."""
        return {"ok": not self.findings, "checked": list(self.checked),
                "warnings": [f["message"] for f in self.findings], "findings": list(self.findings)}
