"""On-the-fly synthetic training cases: every epoch draws fresh cases from ``multimodalseg.synthesis``.

With ``data.synthetic.on_the_fly: true`` the supervised recipe trains on :class:`SyntheticDataset` instead of the
files of ``--data``: item ``k`` of epoch ``e`` is the synthetic case of seed ``case_seed(seed, e, k)``, generated
from one of the task's *training* anatomies (:func:`training_anatomy`: the held-out ones of
``multimodalseg.synthesis.anatomy.HELD_OUT`` and those in ``data.synthetic.exclude`` are never drawn), prepared
exactly as a case read from disk (``multimodalseg.preprocessing.prepare_case``), then cropped and augmented by the
usual random steps. Validation still reads the labelled cases of ``--data``. Bank mode (a folder written once by
``multimodalseg synth``) stays the default: on a small CPU a generated case costs seconds, a cached one nothing.

Example:
    >>> cfg = load_config("training/configs/brain-tumor.yaml", ["data.synthetic.on_the_fly=true"])
    >>> task = get_task(cfg.task)
    >>> dataset = SyntheticDataset(cfg, task, train_transforms(cfg, task))
    >>> dataset.set_epoch(3)
    >>> patches = dataset[0]  # the patches of case 0 of epoch 3
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.data import Dataset
from monai.transforms import MapTransform, apply_transform
from multimodalseg.errors import UserError
from multimodalseg.preprocessing import prepare_case
from multimodalseg.synthesis.anatomy import Anatomy, load_anatomy, split_anatomy
from multimodalseg.synthesis.generate import random_contrast
from multimodalseg.tasks import get_task
from multimodalseg.tasks.spec import lateral_axis

from training.core.augment import LATERAL_KEY
from training.core.config import SyntheticConfig, TrainingConfig


def training_anatomy(task_id: str, synthetic: SyntheticConfig) -> tuple[Anatomy, ...]:
    """The label maps on-the-fly cases are drawn from: the task's packaged maps (or ``synthetic.anatomy``) without
    the held-out anatomies and without ``synthetic.exclude``.

    Raises:
        UserError: no anatomy is left to draw from.
    """
    maps = load_anatomy(task_id, synthetic.anatomy)
    train, _held_out = split_anatomy(task_id, maps)
    excluded = set(synthetic.exclude)
    train = tuple(m for m in train if m.name not in excluded)
    if not train:
        raise UserError(f"data.synthetic: no {task_id} anatomy left to draw from after the held-out ones and "
                        f"data.synthetic.exclude", synthetic.anatomy)
    return train


def case_seed(seed: int, epoch: int, index: int) -> int:
    """The generator seed of case ``index`` of ``epoch``: independent of the other cases, the process and the
    loader's order, so a resumed or distributed run draws the same cases."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index), 14]).generate_state(1)[0] % (2**31))


def draw(seed: int, n_maps: int, modalities: Sequence[str]) -> tuple[int, str | None]:
    """``(anatomy index, modality)`` of the case of ``seed``; modality None for tasks without one."""
    rng = np.random.default_rng([int(seed), 7])
    choice = int(rng.integers(n_maps))
    modality = str(modalities[int(rng.integers(len(modalities)))]) if modalities else None
    return choice, modality


class SynthesizeCased(MapTransform):
    """Generate the case of ``data["seed"]`` and prepare it like :class:`~training.core.transforms.PrepareCased`.

    Args:
        task_id: the task.
        synthetic: the generator's settings (anatomy folder, spacing, modalities, misregistration, exclusions).
        spacing: network spacing, ITK order, mm; None: the generated reference grid's.
        crop_margin: crop to the foreground box grown by this many voxels; None: no crop.
        schemes: role -> normalisation scheme.
        orientation: orientation code of the network arrays (:func:`~training.core.transforms.network_orientation`).
    """

    def __init__(self, task_id: str, synthetic: SyntheticConfig, spacing: Sequence[float] | None,
                 crop_margin: int | None, schemes: Mapping[str, str] | None = None,
                 orientation: str | None = None) -> None:
        super().__init__(keys=("seed",))
        self.task_id = task_id
        self.synthetic = synthetic
        self.spacing = None if spacing is None else list(spacing)
        self.crop_margin = crop_margin
        self.schemes = dict(schemes or {})
        self.orientation = orientation
        task = get_task(task_id)
        self.modalities = list(synthetic.modalities or task.modalities)
        unknown = [m for m in self.modalities if m not in task.modalities]
        if unknown:
            raise UserError(f"data.synthetic.modalities: task {task_id} has no modality {', '.join(unknown)} "
                            f"(modalities: {', '.join(task.modalities) or 'none'})")
        random_contrast(task_id, synthetic.random_contrast_fraction, "data.synthetic.random_contrast_fraction")

    def maps(self) -> tuple[Anatomy, ...]:
        # load_anatomy caches per process, so a DataLoader worker reads the maps once, not once per case
        return training_anatomy(self.task_id, self.synthetic)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from multimodalseg.synthesis import make_synth_case

        task = get_task(self.task_id)
        seed = int(data["seed"])
        maps = self.maps()
        choice, modality = draw(seed, len(maps), self.modalities)
        case = make_synth_case(task.id, seed, anatomy=(maps[choice],), spacing=self.synthetic.spacing,
                               modality=modality, misregister=self.synthetic.misregister,
                               random_contrast_fraction=self.synthetic.random_contrast_fraction)
        prepared = prepare_case(task, case.images, spacing=self.spacing, crop_margin=self.crop_margin,
                                schemes=self.schemes, label=case.label, orientation=self.orientation)
        label = prepared.label
        return {"id": str(data.get("id") or case.case_id), "modality": modality or "", "image": prepared.image,
                "label": label[None], LATERAL_KEY: lateral_axis(prepared.grid.GetDirection()),
                "anatomy": maps[choice].name}


class SyntheticDataset(Dataset):
    """``n_per_epoch`` synthetic cases, fresh each epoch (:meth:`set_epoch`), through ``transform`` (which starts
    with :class:`SynthesizeCased`).

    Args:
        config: the run's config (``data.synthetic``, the seed).
        task: the task.
        transform: the training pipeline (``training.core.transforms.train_transforms``).
    """

    def __init__(self, config: TrainingConfig, task: Any, transform: Any) -> None:
        synthetic = config.data.synthetic
        if synthetic.n_per_epoch < 1:
            raise UserError(f"data.synthetic.n_per_epoch must be at least 1, got {synthetic.n_per_epoch}")
        super().__init__(list(range(synthetic.n_per_epoch)), transform)
        self.task_id = task.id
        self.seed = config.seed if synthetic.seed is None else int(synthetic.seed)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        """Draw the cases of ``epoch`` from now on (called by ``training.core.data.seed_epoch``)."""
        self.epoch = int(epoch)

    def record(self, index: int) -> dict[str, Any]:
        seed = case_seed(self.seed, self.epoch, index)
        return {"id": f"{self.task_id}-synth-e{self.epoch:04d}-{index:04d}", "seed": seed}

    def _transform(self, index: int) -> Any:
        return apply_transform(self.transform, self.record(int(self.data[index])))
