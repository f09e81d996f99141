"""Losses of the BraTS method (METHODS §B.5-B.6): DMFNet's generalized Dice and the boundary shape correction.

Both take network logits (B, C, Z, Y, X). For the region-based outputs (WT, TC, ET as overlapping sigmoid
channels) the targets are region masks of the same shape; :class:`GeneralizedDiceLoss` also supports DMFNet's
original softmax form (label index target, background excluded).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from training.brain_tumor.keypoints import bsc_target_transforms

WeightType = Literal["square", "simple", "uniform"]


def generalized_dice_loss(
    probs: torch.Tensor, target: torch.Tensor, *, w_type: WeightType = "square", eps: float = 1e-5
) -> torch.Tensor:
    """Generalized Dice (Sudre 2017) exactly as DMFNet's ``utils/criterions.py`` computes it.

    Sums over the batch and all voxels per channel c: w_c = 1 / (Σ r_c² + eps) for ``"square"``
    (1 / (Σ r_c + eps) for ``"simple"``, 1 for ``"uniform"``), and
    L = 1 - 2 Σ_c w_c Σ p_c r_c / (Σ_c w_c Σ (p_c + r_c) + eps). No smoothing in the numerator: MONAI's
    ``GeneralizedDiceLoss(smooth_nr=0, smooth_dr=1e-5, batch=True)`` gives the same value when every channel
    is present; an absent channel gets weight 1/eps here, MONAI's largest finite weight instead.

    Args:
        probs: probabilities (B, C, *S).
        target: one-hot labels or region masks (B, C, *S).
    """
    if probs.shape != target.shape:
        raise ValueError(f"probabilities {tuple(probs.shape)} and target {tuple(target.shape)} differ in shape")
    dims = [0, *range(2, probs.ndim)]
    target = target.to(probs.dtype)
    target_sum = target.sum(dims)
    if w_type == "square":
        weights = 1.0 / (target_sum * target_sum + eps)
    elif w_type == "simple":
        weights = 1.0 / (target_sum + eps)
    elif w_type == "uniform":
        weights = torch.ones_like(target_sum)
    else:
        raise ValueError(f"w_type must be 'square', 'simple' or 'uniform', got {w_type!r}")
    intersection = (probs * target).sum(dims)
    denominator = (probs + target).sum(dims)
    return 1.0 - 2.0 * (weights * intersection).sum() / ((weights * denominator).sum() + eps)


class GeneralizedDiceLoss(nn.Module):
    """DMFNet's generalized Dice on logits.

    Args:
        sigmoid: apply a sigmoid to the input (overlapping region channels). Default True.
        softmax: apply a softmax over channels instead (exclusive labels). Default False.
        to_onehot_y: the target is a label index map (B, 1, *S) with values 0..C-1; one-hot encode it.
            Default False (target already (B, C, *S)).
        include_background: keep channel 0. Set False for DMFNet's softmax form (classes 1..3 only). Default True.
        w_type: class weights, ``"square"`` (DMFNet), ``"simple"`` or ``"uniform"``. Default ``"square"``.
        eps: the ε of the weights and of the denominator. Default 1e-5.

    Shapes: input (B, C, *S) logits; target (B, C, *S) or (B, 1, *S) with ``to_onehot_y``. Output: a scalar.
    """

    def __init__(
        self,
        *,
        sigmoid: bool = True,
        softmax: bool = False,
        to_onehot_y: bool = False,
        include_background: bool = True,
        w_type: WeightType = "square",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if sigmoid and softmax:
            raise ValueError("sigmoid and softmax are mutually exclusive")
        self.sigmoid, self.softmax, self.to_onehot_y = sigmoid, softmax, to_onehot_y
        self.include_background, self.w_type, self.eps = include_background, w_type, eps

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(input) if self.sigmoid else torch.softmax(input, 1) if self.softmax else input
        if self.to_onehot_y:
            if target.shape[1] != 1:
                raise ValueError(f"to_onehot_y needs a (B, 1, *S) target, got {tuple(target.shape)}")
            target = F.one_hot(target[:, 0].long(), probs.shape[1]).movedim(-1, 1)
        if not self.include_background:
            probs, target = probs[:, 1:], target[:, 1:]
        return generalized_dice_loss(probs, target, w_type=self.w_type, eps=self.eps)


class BoundaryShapeCorrectionLoss(nn.Module):
    """Dice restricted to the key boundary point neighbourhoods (METHODS §B.5 step 4, [recon]).

    Per batch item b and region r with key-point image K, probability P and region mask G:
    L_br = 1 - (2 Σ K·P·G + eps) / (Σ K·P + Σ K·G + eps). It rewards correct inside/outside decisions at the key
    boundary locations (half of each ball lies inside the region, half outside). The loss is the mean over the
    (b, r) pairs that have key points; it is 0 for a perfect prediction and when no pair has key points (the
    eps in the numerator makes both exact). Key-point images come from
    :func:`training.core.losses.keypoints.key_point_image`.

    Args:
        sigmoid: apply a sigmoid to the input (region channels). Default True.
        eps: smoothing in numerator and denominator. Default 1e-5.

    Shapes: input (B, R, *S) logits; target and keypoints (B, R, *S) in {0, 1}. Output: a scalar.
    """

    def __init__(self, *, sigmoid: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.sigmoid, self.eps = sigmoid, eps

    def forward(self, input: torch.Tensor, target: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        if not input.shape == target.shape == keypoints.shape:
            raise ValueError(f"input {tuple(input.shape)}, target {tuple(target.shape)} and keypoints "
                             f"{tuple(keypoints.shape)} must have the same shape")
        probs = torch.sigmoid(input) if self.sigmoid else input
        k = keypoints.to(probs.dtype)
        g = target.to(probs.dtype)
        dims = tuple(range(2, probs.ndim))
        kp = (k * probs).sum(dims)
        kg = (k * g).sum(dims)
        loss = 1.0 - (2.0 * (k * probs * g).sum(dims) + self.eps) / (kp + kg + self.eps)
        present = k.sum(dims) > 0
        if not present.any():
            return probs.sum() * 0.0  # keeps the graph, so callers can always backpropagate
        return loss[present].mean()


class BratsLoss(nn.Module):
    """The method's total loss: L = L_GDL + λ·L_BSC on region logits (WT, TC, ET), BSC switchable.

    Args:
        use_bsc: add the boundary shape correction term (the ablation switch). Default True.
        lambda_bsc: λ, the BSC weight; the paper does not give it, 1.0 per METHODS §B.5 [recon]. Default 1.0.
        w_type, eps: passed to :class:`GeneralizedDiceLoss`.

    Shapes: input (B, R, *S) logits; target (B, R, *S) region masks; keypoints (B, R, *S), needed with BSC. For
    trainers that call ``loss(logits, target)``, the key points may instead ride in the target as extra channels:
    target (B, 2R, *S) = region masks then key-point images (METHODS §B.5 step 5).
    """

    def __init__(
        self, *, use_bsc: bool = True, lambda_bsc: float = 1.0, w_type: WeightType = "square", eps: float = 1e-5
    ) -> None:
        super().__init__()
        if lambda_bsc < 0:
            raise ValueError(f"lambda_bsc must be >= 0, got {lambda_bsc}")
        self.use_bsc, self.lambda_bsc = use_bsc, lambda_bsc
        self.gdl = GeneralizedDiceLoss(sigmoid=True, w_type=w_type, eps=eps)
        self.bsc = BoundaryShapeCorrectionLoss(sigmoid=True, eps=eps)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, keypoints: torch.Tensor | None = None
    ) -> torch.Tensor:
        if keypoints is None and target.shape[1] == 2 * input.shape[1]:
            target, keypoints = target[:, : input.shape[1]], target[:, input.shape[1]:]
        loss = self.gdl(input, target)
        if self.use_bsc:
            if keypoints is None:
                raise ValueError("BratsLoss with use_bsc=True needs the key-point image (see BoundaryKeyPointsd)")
            loss = loss + self.lambda_bsc * self.bsc(input, target, keypoints)
        return loss


def brats_loss(output_kind: str, **config: Any) -> nn.Module:
    """Factory for ``training.core.losses.LOSSES`` (``factory(output_kind, **config)``): :class:`BratsLoss`,
    regions only.

    ``config``: the :class:`BratsLoss` arguments and ``key_points`` (the options of
    :func:`training.brain_tumor.keypoints.bsc_target_transforms`, which builds the key-point images of each case).
    """
    if output_kind != "regions":
        raise ValueError(f"the BraTS loss (GDL + BSC) is for region outputs, got output_kind '{output_kind}'")
    config = dict(config)
    config.pop("key_points", None)  # options of the key-point images, used by the data pipeline
    return BratsLoss(**config)


# The key-point images the BSC term needs ride in the target (training.core.transforms reads this hook).
brats_loss.target_transforms = bsc_target_transforms
