"""Modality dropout: train a multi-input network to run when some inputs are missing.

At inference a missing optional input becomes an all-zero channel after normalisation
(``multimodalseg.preprocessing.to_reference_grid`` and ``normalize_channels``). Training shows the network the
same thing: with probability ``prob`` per patch, a random non-empty subset of the droppable channels is set to
zero (never all of them: ``keep`` roles are never dropped, and at least one droppable role survives when there
is no ``keep`` role). The exported bundle lists the droppable roles in ``preprocessing.missing_inputs``, so
``segment`` accepts any subset of them and refuses roles the model never learned to do without.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform
from multimodalseg.tasks.spec import TaskSpec

STAND_IN = "zeros"


def droppable_roles(task: TaskSpec, roles: Sequence[str] | None) -> tuple[str, ...]:
    """The roles a config may drop: its list (validated), else every optional non-reference input of the task.

    Raises:
        ValueError: a role that is unknown, required by the task, or the reference.
    """
    optional = [i.role for i in task.inputs if not i.required and not i.reference]
    if roles is None:
        return tuple(optional)
    bad = [r for r in roles if r not in optional]
    if bad:
        raise ValueError(f"augmentation.modality_dropout.roles: {', '.join(bad)} cannot be dropped for task "
                         f"{task.id} (optional inputs: {', '.join(optional) or 'none'})")
    return tuple(roles)


class RandModalityDropoutd(RandomizableTransform, MapTransform):
    """Zero a random subset of input channels of ``image`` (``(C, Z, Y, X)``, channels in ``roles`` order).

    Args:
        keys: the image key(s).
        roles: the channel order of the image (the task's roles).
        droppable: roles that may be zeroed.
        prob: probability that a patch loses any channel at all.
        drop_prob: given a drop, the probability of each droppable channel to be zeroed (at least one is).
        keep_sets: subsets of roles that users often have alone (BraTS: T1ce + FLAIR); given a drop, with
            probability ``keep_set_prob`` one of them (uniformly) is kept and every other droppable channel zeroed,
            so the network sees those subsets far more often than the independent draws give them.
        keep_set_prob: see ``keep_sets``.
    """

    def __init__(self, keys: str | Sequence[str], roles: Sequence[str], droppable: Sequence[str], prob: float = 0.5,
                 drop_prob: float = 0.5, keep_sets: Sequence[Sequence[str]] = (), keep_set_prob: float = 0.0) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        roles = list(roles)
        self.channels = [roles.index(r) for r in droppable]
        self.keep_one = len(self.channels) == len(roles)  # never zero every input
        self.drop_prob = float(drop_prob)
        for subset in keep_sets:
            unknown = [r for r in subset if r not in roles]
            if unknown or not [c for c in self.channels if roles[c] not in subset]:
                raise ValueError(f"modality_dropout.keep_sets: {list(subset)} must name roles of {roles} and leave a "
                                 f"droppable role out (droppable: {list(droppable)})")
        self.keep_sets = [sorted(c for c in self.channels if roles[c] not in subset) for subset in keep_sets]
        self.keep_set_prob = float(keep_set_prob)
        self._drop: list[int] = []

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._drop = []
        if not self._do_transform or not self.channels:
            return
        if self.keep_sets and self.R.random() < self.keep_set_prob:
            self._drop = list(self.keep_sets[self.R.randint(len(self.keep_sets))])
            return
        chosen = [c for c in self.channels if self.R.random() < self.drop_prob]
        if not chosen:  # a drop was decided: at least one channel goes
            chosen = [self.channels[self.R.randint(len(self.channels))]]
        if self.keep_one and len(chosen) == len(self.channels):
            chosen.pop(self.R.randint(len(chosen)))
        self._drop = sorted(chosen)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        self.randomize()
        if not self._drop:
            return out
        for key in self.key_iterator(out):
            image = out[key]
            image = image.clone() if isinstance(image, torch.Tensor) else np.array(image, copy=True)
            image[self._drop] = 0
            out[key] = image
        return out
