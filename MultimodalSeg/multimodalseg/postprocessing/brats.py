"""BraTS labels and regions: label conventions, the ET threshold and the inference post-processing hook.

Training indices of the ``brain-tumor`` task: 0 background, 1 NCR/NET, 2 ED, 3 ET. Value conventions
(``task.label_conventions``, METHODS §B.8): ``brats2021`` (BraTS 2017-2022: 1 NCR, 2 ED, 4 ET; also the
task's own values), ``brats2023`` (1 NCR, 2 ED, 3 ET) and ``msd`` (MSD Task01: 1 ED, 2 NCR, 3 ET). Regions:
WT = NCR ∪ ED ∪ ET, TC = NCR ∪ ET, ET. Numpy and scipy only.

Example:
    >>> from multimodalseg.tasks import get_task
    >>> task = get_task("brain-tumor")
    >>> convert_labels(np.array([0, 1, 2, 4]), task, "brats2021", "msd")
    array([0, 2, 1, 3], dtype=uint8)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from multimodalseg.errors import UserError
from multimodalseg.inference.postprocess import labels_to_regions, regions_to_labels
from multimodalseg.tasks.brain_tumor import ET, NCR
from multimodalseg.tasks.spec import TaskSpec

EtMode = Literal["total", "components"]

# DMFNet's predict.py: fewer than 500 predicted ET voxels (1 mm³ each) are relabelled NCR, i.e. 0.5 mL.
ET_MIN_ML = 0.5
# DMFNet's whole-map rule, as the paper (issue 16). "components" (per connected component, so a small spurious ET
# speck next to a real enhancing rim goes too) is the option: a bundle's ``postprocessing: {et_mode: components}``.
ET_MODE: EtMode = "total"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _lut(table: Mapping[int, int], dtype: type = np.uint8) -> np.ndarray:
    lut = np.zeros(max(table) + 1, dtype)
    for key, value in table.items():
        lut[key] = value
    return lut


def values_to_indices(
    label_map: np.ndarray, task: TaskSpec, convention: str | None = None, path: str | None = None
) -> np.ndarray:
    """Label values in ``convention`` (None: the task's own) -> training indices, uint8.

    Raises:
        UserError: a value outside the convention's table (naming ``path`` when given).
    """
    label_map = np.asarray(label_map)
    task.check_label_values(np.unique(label_map).tolist(), path, convention)
    return _lut(task.value_to_index(convention))[label_map]


def indices_to_values(indices: np.ndarray, task: TaskSpec, convention: str | None = None) -> np.ndarray:
    """Training indices -> label values in ``convention`` (None: the task's own), uint8."""
    return _lut(task.index_to_value(convention))[np.asarray(indices)]


def convert_labels(
    label_map: np.ndarray, task: TaskSpec, source: str | None, target: str | None, path: str | None = None
) -> np.ndarray:
    """Label values from one convention to another (e.g. ``"brats2021"`` 4 -> ``"brats2023"`` 3), uint8."""
    return indices_to_values(values_to_indices(label_map, task, source, path), task, target)


def detect_convention(values: Iterable[int]) -> str | None:
    """The BraTS convention a set of label values implies: ``"brats2021"`` if 4 occurs, ``"brats2023"`` if 3 does.

    Returns None when neither occurs (values 0, 1, 2 mean the same in both BraTS conventions). MSD Task01 uses the
    same values as BraTS 2023 with another meaning, so it cannot be detected: set it explicitly.

    Raises:
        UserError: both 3 and 4 occur, or values outside 0-4.
    """
    present = {int(v) for v in values}
    if present - {0, 1, 2, 3, 4}:
        raise UserError(f"label values {sorted(present - {0, 1, 2, 3, 4})} are not BraTS labels (0, 1, 2, 3/4)")
    if {3, 4} <= present:
        raise UserError("label map holds both 3 and 4: neither the BraTS <= 2022 (ET = 4) nor the 2023 (ET = 3) "
                        "convention")
    return "brats2021" if 4 in present else "brats2023" if 3 in present else None


def values_to_regions(label_map: np.ndarray, task: TaskSpec, convention: str | None = None) -> np.ndarray:
    """Label values (Z, Y, X) in ``convention`` -> region masks (R, Z, Y, X) bool in ``task.regions`` order."""
    return labels_to_regions(values_to_indices(label_map, task, convention), task)


def regions_to_values(regions: np.ndarray, task: TaskSpec, convention: str | None = None,
                      threshold: float = 0.5) -> np.ndarray:
    """Region masks or probabilities (R, Z, Y, X) -> label values (Z, Y, X) in ``convention`` (nested regions)."""
    return indices_to_values(regions_to_labels(np.asarray(regions, np.float32), task, threshold), task, convention)


def et_threshold(
    indices: np.ndarray,
    task: TaskSpec,
    min_voxels: int,
    mode: EtMode = ET_MODE,
    connectivity: int = 3,
) -> np.ndarray:
    """Relabel small enhancing tumour as NCR/NET (a copy of the training-index map).

    ``mode="total"`` (DMFNet's ``predict.py``): when the whole map holds fewer than ``min_voxels`` ET voxels, all of
    them become NCR. ``mode="components"``: each connected ET component (``connectivity`` 1: faces, 2: edges,
    3: corners) smaller than ``min_voxels`` becomes NCR. Either way TC keeps its voxels; only ET shrinks.
    """
    if mode not in ("total", "components"):
        raise UserError(f"ET threshold mode must be 'total' or 'components', got '{mode}'")
    et, ncr = task.label(ET).index, task.label(NCR).index
    out = np.array(indices, copy=True)
    is_et = out == et
    if min_voxels <= 0 or not is_et.any():
        return out
    if mode == "total":
        if int(is_et.sum()) < min_voxels:
            out[is_et] = ncr
        return out
    components, n = ndimage.label(is_et, structure=ndimage.generate_binary_structure(out.ndim, connectivity))
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    small = sizes < min_voxels
    small[0] = False  # background of the component map
    out[small[components]] = ncr
    return out


def min_et_voxels(options: Mapping[str, Any]) -> int:
    """The ET threshold in voxels of the prediction grid, from ``et_min_voxels`` or ``et_min_ml`` and ``voxel_ml``.

    ``et_min_voxels`` wins when given; otherwise ``et_min_ml`` (default 0.5 mL = 500 voxels of 1 mm³, as DMFNet)
    divided by the grid's voxel volume (``voxel_ml``, default 0.001 mL). 0 turns the threshold off.
    """
    if options.get("et_min_voxels") is not None:
        value = options["et_min_voxels"]
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise UserError(f"et_min_voxels must be a non-negative integer, got {value!r}")
        return int(value)
    min_ml = options.get("et_min_ml", ET_MIN_ML)
    voxel_ml = options.get("voxel_ml", 0.001)
    if not _is_number(min_ml) or min_ml < 0:
        raise UserError(f"et_min_ml must be a non-negative number, got {min_ml!r}")
    if not _is_number(voxel_ml) or voxel_ml <= 0:
        raise ValueError(f"voxel_ml must be positive, got {voxel_ml!r}")
    # Rounding first absorbs float error (0.5 / 0.001 = 499.99999999999994 must give 500, not 501 or 499).
    return math.ceil(round(float(min_ml) / float(voxel_ml), 4))


def postprocess(prediction: np.ndarray, task: TaskSpec, options: Mapping[str, Any]) -> np.ndarray:
    """The brain-tumor hook of ``multimodalseg.inference.postprocess``.

    Args:
        prediction: region probabilities (R, Z, Y, X) float in ``task.regions`` order (WT, TC, ET), or an already
            decided training-index map (Z, Y, X).
        task: the brain-tumor task.
        options: ``threshold`` (region probability cut, 0.5), ``et_min_voxels`` or ``et_min_ml`` (0.5 mL) with
            ``voxel_ml`` (the grid's voxel volume), ``et_mode`` (``"total"``, DMFNet's whole-map rule, the default;
            or ``"components"``), ``et_connectivity`` (3). Other keys are ignored.

    Returns:
        (Z, Y, X) uint8 training indices: 0 background, 1 NCR/NET, 2 ED, 3 ET.
    """
    prediction = np.asarray(prediction)
    if task.output_kind == "regions" and prediction.ndim == 4:
        threshold = options.get("threshold", 0.5)
        if not _is_number(threshold) or not 0.0 <= threshold < 1.0:
            raise UserError(f"region threshold must be in [0, 1), got {threshold!r}")
        indices = regions_to_labels(prediction, task, float(threshold))
    elif prediction.ndim == 3:
        indices = prediction
    else:
        raise ValueError(f"{task.id} post-processing expects (R, Z, Y, X) region probabilities or a (Z, Y, X) "
                         f"index map, got shape {prediction.shape}")
    return et_threshold(indices, task, min_et_voxels(options), options.get("et_mode", ET_MODE),
                        int(options.get("et_connectivity", 3))).astype(np.uint8, copy=False)
