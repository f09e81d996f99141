"""Losses by name, so configs select them and the workflow issues add theirs (BSC, MCF...) with one line.

A loss factory takes ``output_kind`` (``"labels"``: softmax over classes, target ``(B, 1, ...)`` indices;
``"regions"``: one sigmoid per region, target ``(B, R, ...)`` masks) and the config's keyword arguments, and
returns a module ``loss(logits, target) -> scalar``.

Example:
    >>> loss = build_loss("dice_ce", "regions")
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, GeneralizedDiceFocalLoss
from torch import nn

# name -> "module:attribute"; the attribute is called as ``factory(output_kind, **config)``.
LOSSES: dict[str, str] = {
    "dice_ce": "training.core.losses:dice_ce",
    "dice": "training.core.losses:dice",
    "dice_focal": "training.core.losses:dice_focal",
    "generalized_dice_focal": "training.core.losses:generalized_dice_focal",
    "brats": "training.brain_tumor.losses:brats_loss",
    "dice_softmax_focal": "training.whole_heart.losses:dice_softmax_focal",
}


def register_loss(name: str, target: str) -> None:
    """Add a loss under ``name``; ``target`` is ``"module:attribute"``."""
    LOSSES[name] = target


def loss_factory(name: str) -> Any:
    """The factory registered under ``name``.

    A factory may carry ``target_transforms(config, task) -> (steps, keys)``: per-case data its loss needs besides
    the label (e.g. the BSC key points). ``training.core.transforms`` caches the steps, crops and flips the ``keys``
    with the label and appends their channels to the loss target.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss '{name}' (known: {', '.join(sorted(LOSSES))})")
    module_name, attr = LOSSES[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def build_loss(name: str, output_kind: str, **config: Any) -> nn.Module:
    return loss_factory(name)(output_kind, **config)


def _activation(output_kind: str) -> dict[str, bool]:
    if output_kind == "regions":
        return {"sigmoid": True}
    if output_kind == "labels":
        return {"softmax": True, "to_onehot_y": True}
    raise ValueError(f"unknown output kind '{output_kind}'")


class DiceBCELoss(nn.Module):
    """Dice on sigmoid outputs plus binary cross-entropy, for overlapping regions.

    MONAI's ``DiceCELoss`` applies a softmax cross-entropy to multi-channel inputs even with ``sigmoid=True``,
    which is wrong for overlapping regions (WT ⊇ TC ⊇ ET); this pairs ``DiceLoss(sigmoid=True)`` with
    ``BCEWithLogitsLoss``.

    Args:
        lambda_dice, lambda_bce: weights of the two terms (1.0 each).
        **dice: further ``DiceLoss`` arguments (``smooth_nr``, ``batch``...).
    """

    def __init__(self, lambda_dice: float = 1.0, lambda_bce: float = 1.0, **dice: Any) -> None:
        super().__init__()
        self.dice = DiceLoss(sigmoid=True, **dice)
        self.bce = nn.BCEWithLogitsLoss()
        self.lambda_dice, self.lambda_bce = lambda_dice, lambda_bce

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.lambda_dice * self.dice(logits, target) + self.lambda_bce * self.bce(logits, target.float())


def dice_ce(output_kind: str, **config: Any) -> nn.Module:
    """Softmax ``DiceCELoss`` for labels; :class:`DiceBCELoss` for regions (``lambda_ce`` maps to ``lambda_bce``)."""
    if output_kind == "regions":
        if "lambda_ce" in config:
            config["lambda_bce"] = config.pop("lambda_ce")
        return DiceBCELoss(**config)
    return DiceCELoss(**_activation(output_kind), **config)


def dice(output_kind: str, **config: Any) -> nn.Module:
    return DiceLoss(**_activation(output_kind), **config)


def dice_focal(output_kind: str, **config: Any) -> nn.Module:
    return DiceFocalLoss(**_activation(output_kind), **config)


def generalized_dice_focal(output_kind: str, **config: Any) -> nn.Module:
    return GeneralizedDiceFocalLoss(**_activation(output_kind), **config)
