"""Synthetic CT cases of the whole-heart cascade: their names, how many, and how they join the training cases.

The CycleGAN stage (:mod:`training.whole_heart.cyclegan`) writes them and the segmentation stages read them; both
use these helpers, so neither imports the other.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

from multimodalseg.errors import UserError
from multimodalseg.tasks.spec import TaskSpec

from training.datasets import Case, find_cases


def synthetic_target(n_real_ct: int, fraction: float) -> int:
    """``fraction × n_real_ct`` rounded half up (1 real CT at 0.5 gives 1, not Python's round-half-even 0)."""
    if fraction < 0 or n_real_ct < 0:
        raise ValueError("fraction and counts must be >= 0")
    return int(math.floor(fraction * n_real_ct + 0.5))


def synthetic_count(n_real_ct: int, fraction: float, n_mr: int) -> int:
    """How many synthetic CTs to add: :func:`synthetic_target`, at most the MR cases available."""
    if n_mr < 0:
        raise ValueError("fraction and counts must be >= 0")
    return min(n_mr, synthetic_target(n_real_ct, fraction))


def synthetic_id(mr_case_id: str) -> str:
    """The MM-WHS case id of the synthetic CT made from MR case ``mr_case_id``: ``ct_synth_`` + its alphanumerics
    (``mr_train_1001`` -> ``ct_synth_mrtrain1001``), so the layout reader sees a CT case."""
    return "ct_synth_" + "".join(ch for ch in str(mr_case_id) if ch.isalnum())


def mix_synthetic(train: Sequence[Case], synthetic: Sequence[Case], fraction: float, seed: int,
                  excluded_sources: Sequence[str] = ()) -> list[Case]:
    """The training cases plus ``fraction × real CT training cases`` (rounded half up, :func:`synthetic_target`)
    synthetic CT cases, a seeded choice.

    Args:
        train: the real training cases (CT and MR).
        synthetic: candidate synthetic CT cases (``cyclegan.write_synthetic_cases``: ``ct_synth_<id>``, carrying
            the MR label maps).
        fraction: the share of the real CT count (paper: 0.5).
        excluded_sources: case ids (validation MR cases) whose synthetic CT must not be used; matched on the
            synthetic id (``ct_synth_`` + the alphanumerics of the MR id).

    Raises:
        ValueError: fewer usable synthetic cases than asked for, or a negative fraction.
    """
    if fraction < 0:
        raise ValueError(f"the synthetic fraction must be >= 0, got {fraction}")
    n_ct = sum(1 for c in train if c.modality == "ct")
    wanted = synthetic_target(n_ct, fraction)
    banned = {synthetic_id(source) for source in excluded_sources}
    usable = sorted((c for c in synthetic if c.id not in banned), key=lambda c: c.id)
    if wanted > len(usable):
        raise ValueError(f"{wanted} synthetic CT cases wanted ({fraction} x {n_ct} real CT) but {len(usable)} usable "
                         f"in the synthetic folder")
    return [*train, *random.Random(seed).sample(usable, wanted)]


def split_synthetic(cases: Sequence[Case], folder: str | None, task: TaskSpec) -> tuple[list[Case], list[Case]]:
    """Real cases, and the synthetic CT candidates (the ``dir`` folder's, and any ``ct_synth_`` under the data)."""
    real = [c for c in cases if not c.id.startswith("ct_synth_")]
    synthetic = [c for c in cases if c.id.startswith("ct_synth_")]
    if folder:
        if not Path(folder).is_dir():
            raise UserError("synthetic CT folder not found", folder)
        synthetic += [c for c in find_cases(task, folder, "mmwhs")[1] if c.labelled]
    return real, synthetic
