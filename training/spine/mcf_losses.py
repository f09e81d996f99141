"""MCF's losses (METHODS §E.5, reference ``WYC-321/MCF/code/train_MCF.py``), generalised from 2 to K classes.

For each subnet k with logits z_k and p_k = softmax(z_k), on a batch whose first ``n_labelled`` samples are
labelled (L, labels y) and the rest unlabelled (U):

1. Supervised: L_sup^k = CE(z_k[L], y) + Dice_k + w_cdr · L_cdr^k, with the foreground Dice loss of squared
   denominators 1 − (2Σpy + 1e-5)/(Σp² + Σy² + 1e-5) over the whole labelled batch (MONAI ``DiceLoss(
   squared_pred=True, batch=True, include_background=False)``; mean over foreground classes).
2. Contrastive difference review: per foreground class c, M_c = (argmax p_a == c) XOR (argmax p_b == c) on L;
   L_cdr^k = Σ_c Σ M_c (p_k,c − y_c)² / (Σ_c Σ M_c + 1e-16): MSE restricted to where the binarised outputs differ.
   For K = 2 this is the reference's formula exactly; it is 0 when the two nets agree everywhere.
3. Dynamic competitive pseudo-labels: the teacher g = argmin_k Dice_k on L (ties: subnet b, as the reference);
   PL = sharpen(p_g[U], T) = p^{1/T} / Σ_c p_c^{1/T} (T = 0.1), detached; the other subnet o adds
   λ(t) · mean((p_o[U] − PL)²) over classes and pixels, λ(t) = 0.1 · exp(−5 (1 − min(t // 150, 40) / 40)²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn


def sharpen(probabilities: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """p^{1/T} / Σ_c p_c^{1/T} along dim 1, computed as softmax(log p / T) so that small p do not underflow.

    T = 1 returns p; T → 0 approaches the one-hot argmax; the argmax never changes.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return torch.softmax(probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log() / temperature, dim=1)


def consistency_weight(iteration: int, weight: float = 0.1, rampup: float = 40.0, unit: int = 150) -> float:
    """λ(t) = weight · exp(−5 (1 − min(t // unit, rampup) / rampup)²) (the reference's sigmoid ramp-up)."""
    if rampup <= 0:
        return weight
    phase = 1.0 - min(iteration // unit, rampup) / rampup
    return weight * math.exp(-5.0 * phase * phase)


def difference_masks(labels_a: torch.Tensor, labels_b: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K − 1, *S) float masks: per foreground class, XOR of the two nets' binarised (argmax == c) outputs."""
    classes = torch.arange(1, num_classes, device=labels_a.device).view(1, -1, *([1] * (labels_a.ndim - 1)))
    return ((labels_a.unsqueeze(1) == classes) ^ (labels_b.unsqueeze(1) == classes)).float()


def difference_review_loss(probabilities: torch.Tensor, onehot: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Σ M (p_fg − y_fg)² / (Σ M + 1e-16): the CDR term of one subnet (0 where the nets agree)."""
    err = (probabilities[:, 1:] - onehot[:, 1:]).square()
    return (masks * err).sum() / (masks.sum() + 1e-16)


@dataclass
class MCFLossOutput:
    """Per-subnet losses (each depends only on its own subnet), the teacher (0 = a, 1 = b) and logged parts."""

    loss_a: torch.Tensor
    loss_b: torch.Tensor
    teacher: int
    parts: dict[str, float]

    @property
    def total(self) -> torch.Tensor:
        """loss_a + loss_b: one backward gives each subnet the gradient of its own loss."""
        return self.loss_a + self.loss_b


class MCFLoss(nn.Module):
    """The MCF objective for a pair of subnets on one mixed batch (labelled samples first).

    Args:
        num_classes: K (with background).
        temperature: sharpening T (0.1).
        cdr_weight: weight of the difference-review term in the supervised loss (0.5).
        consistency: λ's final value (0.1).
        rampup: λ's ramp length in units (40).
        rampup_unit: iterations per unit (150); the reference reaches full weight at iteration 6,000.
    """

    def __init__(self, num_classes: int, temperature: float = 0.1, cdr_weight: float = 0.5,
                 consistency: float = 0.1, rampup: float = 40.0, rampup_unit: int = 150) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if temperature <= 0 or rampup_unit < 1:
            raise ValueError("temperature must be positive and rampup_unit at least 1")
        self.num_classes = num_classes
        self.temperature, self.cdr_weight = temperature, cdr_weight
        self.consistency, self.rampup, self.rampup_unit = consistency, rampup, rampup_unit
        self.dice = DiceLoss(include_background=False, squared_pred=True, smooth_nr=1e-5, smooth_dr=1e-5, batch=True)

    def forward(self, logits_a: torch.Tensor, logits_b: torch.Tensor, labels: torch.Tensor, n_labelled: int,
                iteration: int) -> MCFLossOutput:
        """``labels``: (n_labelled, *S) or (n_labelled, 1, *S) class indices for the first samples of the batch."""
        if labels.ndim == logits_a.ndim:
            labels = labels[:, 0]
        labels = labels.long()
        if not 0 < n_labelled <= logits_a.shape[0] or labels.shape[0] != n_labelled:
            raise ValueError(f"need 1..{logits_a.shape[0]} labelled samples and as many labels, got n_labelled "
                             f"{n_labelled} and {labels.shape[0]} labels")
        k = self.num_classes
        pa, pb = logits_a.softmax(1), logits_b.softmax(1)
        onehot = F.one_hot(labels, k).movedim(-1, 1).to(pa.dtype)
        lab = slice(0, n_labelled)
        dice_a, dice_b = self.dice(pa[lab], onehot), self.dice(pb[lab], onehot)
        ce_a, ce_b = F.cross_entropy(logits_a[lab], labels), F.cross_entropy(logits_b[lab], labels)
        with torch.no_grad():
            la, lb = pa[lab].argmax(1), pb[lab].argmax(1)
            masks = difference_masks(la, lb, k)
        cdr_a = difference_review_loss(pa[lab], onehot, masks)
        cdr_b = difference_review_loss(pb[lab], onehot, masks)
        sup_a = ce_a + dice_a + self.cdr_weight * cdr_a
        sup_b = ce_b + dice_b + self.cdr_weight * cdr_b
        teacher = 0 if dice_a.item() < dice_b.item() else 1
        lam = consistency_weight(iteration, self.consistency, self.rampup, self.rampup_unit)
        unl = slice(n_labelled, None)
        if n_labelled < logits_a.shape[0]:
            pseudo = sharpen((pa if teacher == 0 else pb)[unl].detach(), self.temperature)
            student = pb if teacher == 0 else pa
            cons = (student[unl] - pseudo).square().mean()
        else:
            cons = pa.new_zeros(())
        loss_a = sup_a + (lam * cons if teacher == 1 else 0.0)
        loss_b = sup_b + (lam * cons if teacher == 0 else 0.0)
        parts = {"dice_a": dice_a.item(), "dice_b": dice_b.item(), "ce_a": ce_a.item(), "ce_b": ce_b.item(),
                 "cdr_a": cdr_a.item(), "cdr_b": cdr_b.item(), "disagreement": (la != lb).float().mean().item(),
                 "consistency": cons.item(), "lambda": lam, "teacher": float(teacher)}
        return MCFLossOutput(loss_a, loss_b, teacher, parts)
