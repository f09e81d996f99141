"""From cases to data loaders: train/validation split, MONAI (Cache)Datasets, DDP sampling, per-epoch seeding.

Bank mode (default): the training cases are files (``--data``), prepared once and cached. On-the-fly mode
(``data.synthetic.on_the_fly``): the training cases are generated every epoch
(:class:`training.core.synthetic_source.SyntheticDataset`) and every labelled case of ``--data`` validates
(:func:`synthetic_split`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.data.utils import set_rnd
from multimodalseg.errors import UserError
from multimodalseg.tasks.spec import TaskSpec
from torch.utils.data import DistributedSampler

from training.core.config import TrainingConfig
from training.core.ddp import DistContext, local_batch_size
from training.core.transforms import train_transforms, val_transforms
from training.datasets.base import Case


@dataclass
class Split:
    """Labelled training and validation cases, and the unlabelled ones (for semi-supervised trainers)."""

    train: list[Case]
    val: list[Case]
    unlabelled: list[Case] = field(default_factory=list)


def split_cases(cases: Sequence[Case], config: TrainingConfig) -> Split:
    """Hold out ``data.val_cases`` (by id) or a seeded ``data.val_fraction`` of the labelled cases."""
    labelled = sorted((c for c in cases if c.labelled), key=lambda c: c.id)
    unlabelled = [c for c in cases if not c.labelled]
    if config.data.val_cases:
        ids = {c.id for c in labelled}
        unknown = [v for v in config.data.val_cases if v not in ids]
        if unknown:
            raise UserError(f"data.val_cases: no labelled case named {', '.join(unknown)}")
        val_ids = set(config.data.val_cases)
    else:
        n_val = int(round(len(labelled) * config.data.val_fraction)) if len(labelled) > 1 else 0
        n_val = min(max(n_val, 1 if config.data.val_fraction > 0 and len(labelled) > 1 else 0), len(labelled) - 1)
        order = np.random.default_rng(config.seed).permutation(len(labelled))
        val_ids = {labelled[i].id for i in order[:n_val]}
    train = [c for c in labelled if c.id not in val_ids]
    if not train:
        raise UserError("no labelled case left for training after the validation split")
    return Split(train, [c for c in labelled if c.id in val_ids], unlabelled)


def synthetic_split(cases: Sequence[Case], config: TrainingConfig) -> Split:
    """On-the-fly training: no training cases from the folder; its labelled cases (or ``data.val_cases`` of them)
    validate."""
    labelled = sorted((c for c in cases if c.labelled), key=lambda c: c.id)
    if config.data.val_cases:
        ids = {c.id for c in labelled}
        unknown = [v for v in config.data.val_cases if v not in ids]
        if unknown:
            raise UserError(f"data.val_cases: no labelled case named {', '.join(unknown)}")
        labelled = [c for c in labelled if c.id in set(config.data.val_cases)]
    return Split([], labelled, [c for c in cases if not c.labelled])


def make_dataset(records: list[dict], transform, cache: bool, num_workers: int) -> Dataset:
    if cache:
        return CacheDataset(records, transform, cache_rate=1.0, num_workers=max(1, num_workers), progress=False)
    return Dataset(records, transform)


def train_loader(cases: Sequence[Case], config: TrainingConfig, task: TaskSpec, ctx: DistContext,
                 *, labelled: bool = True, shuffle: bool = True) -> DataLoader:
    """Patches of ``cases`` for training (on-the-fly synthetic cases instead when ``data.synthetic.on_the_fly``);
    each process loads its share of the global batch."""
    transform = train_transforms(config, task, labelled=labelled)
    if config.data.synthetic.on_the_fly and labelled:
        from training.core.synthetic_source import SyntheticDataset

        dataset: Dataset = SyntheticDataset(config, task, transform)
        cases = list(range(len(dataset)))  # for the message below
    else:
        dataset = make_dataset([c.to_record() for c in cases], transform, config.data.cache, config.data.num_workers)
    batch = local_batch_size(config.train.batch_size, ctx)
    # A DistributedSampler also in a single process: its seeded permutation, split rank by rank, makes the global
    # batches of 1 and N processes the same cases, so one config trains the same way on any number of processes.
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle,
                                 seed=config.seed, drop_last=ctx.distributed)
    if len(sampler) < batch:
        raise UserError(f"{len(cases)} training case(s) are too few for a batch of {config.train.batch_size}"
                        + (f" over {ctx.world_size} processes" if ctx.distributed else ""))
    generator = torch.Generator()  # seeds the worker processes' random transforms (re-seeded every epoch)
    generator.manual_seed(config.seed)
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=config.data.num_workers,
                      generator=generator, drop_last=True, pin_memory=ctx.device.type == "cuda")


def val_loader(cases: Sequence[Case], config: TrainingConfig, task: TaskSpec) -> DataLoader | None:
    """Whole cases, one at a time, for sliding-window validation (None without validation cases)."""
    if not cases:
        return None
    dataset = make_dataset([c.to_record() for c in cases], val_transforms(config, task), config.data.cache,
                           config.data.num_workers)
    return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=config.data.num_workers)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for one epoch of one process, independent of everything that ran before."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def seed_epoch(loader: object, seed: int, epoch: int, rank: int = 0) -> None:
    """Re-seed the data order, the random transforms and torch for ``epoch``.

    Shuffling (the loader's generator or the ``DistributedSampler`` epoch), worker seeds (drawn from the generator)
    and the transforms of an in-process loader all restart from ``(seed, epoch, rank)``, so epoch ``k`` draws
    the same patches whether or not the run was interrupted before it. A dataset with ``set_epoch`` (on-the-fly
    synthetic cases) is told the epoch, so it generates that epoch's cases.
    """
    value = epoch_seed(seed, epoch, rank)
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):  # on-the-fly synthetic cases: the epoch's own cases
        dataset.set_epoch(epoch)
    torch.manual_seed(value)
    np.random.seed(value % (2**32))
    generator = getattr(loader, "generator", None)
    if generator is not None:
        generator.manual_seed(value)
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    if getattr(loader, "num_workers", 0) == 0 and hasattr(loader, "dataset"):
        set_rnd(loader.dataset, value)
