"""Losses of the whole-heart method (METHODS §C.2, §C.6): Dice + 0.1·softmax focal, and the CycleGAN objective.

Softmax focal: MONAI's ``DiceFocalLoss(softmax=True)`` builds its ``FocalLoss`` without ``use_softmax``, so its
focal term is a per-channel sigmoid/BCE focal on the raw logits, not the multi-class focal loss the paper means.
:class:`DiceSoftmaxFocalLoss` pairs ``DiceLoss(softmax=True)`` with ``FocalLoss(use_softmax=True)`` and averages
the focal term per voxel: FL = mean over voxels of -Σ_c y_c (1 - p_c)^γ log p_c (MONAI's ``reduction="mean"``
would also divide by the number of classes).

CycleGAN (LSGAN): L_G = L_GAN + λ_cycle·L_cycle + λ_identity·L_identity with λ_cycle = 10 and λ_identity = 1 as the
paper summary states (the junyanz code default is 0.5·λ_cycle = 5), L1 cycle and identity terms, and the
discriminator loss ½[(D(real) - 1)² + D(fake)²]. MONAI's ``PatchAdversarialLoss`` is used with
``no_activation_leastsq=True``: by default it passes the discriminator output through a leaky ReLU first, which
is not LSGAN.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss, PatchAdversarialLoss
from torch import nn


class DiceSoftmaxFocalLoss(nn.Module):
    """L = λ_dice · Dice + λ_focal · softmax focal, for exclusive labels.

    Args:
        lambda_dice: Dice weight. Default 1.
        lambda_focal: focal weight. Default 0.1 (CM-TranCaF).
        gamma: focusing parameter γ. Default 2.
        include_background: whether the Dice term counts the background (the focal term always uses all
            classes: a softmax needs them). Default True.
        **dice: further ``DiceLoss`` arguments (``smooth_nr``, ``smooth_dr``, ``batch``, ``squared_pred``...).

    Shapes: ``forward(logits (B, C, *S), target (B, 1, *S) class indices)`` -> scalar.
    """

    def __init__(self, lambda_dice: float = 1.0, lambda_focal: float = 0.1, *, gamma: float = 2.0,
                 include_background: bool = True, **dice: Any) -> None:
        super().__init__()
        if lambda_dice < 0 or lambda_focal < 0 or gamma < 0:
            raise ValueError("lambda_dice, lambda_focal and gamma must be >= 0")
        self.dice = DiceLoss(to_onehot_y=True, softmax=True, include_background=include_background, **dice)
        self.focal = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=gamma, reduction="none")
        self.lambda_dice, self.lambda_focal = lambda_dice, lambda_focal

    def focal_term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The softmax focal loss, averaged over the batch and voxels (summed over classes)."""
        return self.focal(logits, target).sum(1).mean()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.lambda_dice * self.dice(logits, target) + self.lambda_focal * self.focal_term(logits, target)


def dice_softmax_focal(output_kind: str, **config: Any) -> nn.Module:
    """Factory for ``training.core.losses.LOSSES`` (labels only: the softmax focal needs exclusive classes)."""
    if output_kind != "labels":
        raise ValueError(f"dice_softmax_focal needs exclusive labels (softmax), not {output_kind!r}")
    return DiceSoftmaxFocalLoss(**config)


def _last(output: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    # MONAI's PatchDiscriminator returns its intermediate features too; the patch map is the last element.
    return output[-1] if isinstance(output, (list, tuple)) else output


class CycleGANLoss(nn.Module):
    """The CycleGAN objective for generators G_ct (MR -> CT) and G_mr (CT -> MR) and discriminators D_ct, D_mr.

    Args:
        lambda_cycle: λ of the cycle-consistency L1 terms. Default 10.
        lambda_identity: weight of the identity L1 terms (0 switches them off). Default 1 (paper summary).
    """

    def __init__(self, lambda_cycle: float = 10.0, lambda_identity: float = 1.0) -> None:
        super().__init__()
        if lambda_cycle < 0 or lambda_identity < 0:
            raise ValueError("lambda_cycle and lambda_identity must be >= 0")
        self.lambda_cycle, self.lambda_identity = lambda_cycle, lambda_identity
        self.adversarial = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)

    def generator(
        self,
        d_ct_fake: torch.Tensor | list[torch.Tensor],
        d_mr_fake: torch.Tensor | list[torch.Tensor],
        real_mr: torch.Tensor,
        rec_mr: torch.Tensor,
        real_ct: torch.Tensor,
        rec_ct: torch.Tensor,
        idt_ct: torch.Tensor | None = None,
        idt_mr: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Generator loss terms and their weighted ``total``.

        Args:
            d_ct_fake, d_mr_fake: D_ct(G_ct(mr)) and D_mr(G_mr(ct)).
            real_mr, rec_mr: m and G_mr(G_ct(m)); real_ct, rec_ct: c and G_ct(G_mr(c)).
            idt_ct, idt_mr: G_ct(c) and G_mr(m) (needed when ``lambda_identity`` > 0).
        """
        gan = (self.adversarial(_last(d_ct_fake), target_is_real=True, for_discriminator=False)
               + self.adversarial(_last(d_mr_fake), target_is_real=True, for_discriminator=False))
        cycle = F.l1_loss(rec_mr, real_mr) + F.l1_loss(rec_ct, real_ct)
        terms = {"gan": gan, "cycle": cycle}
        total = gan + self.lambda_cycle * cycle
        if self.lambda_identity > 0:
            if idt_ct is None or idt_mr is None:
                raise ValueError("identity outputs G_ct(ct) and G_mr(mr) are needed when lambda_identity > 0")
            terms["identity"] = F.l1_loss(idt_ct, real_ct) + F.l1_loss(idt_mr, real_mr)
            total = total + self.lambda_identity * terms["identity"]
        terms["total"] = total
        return terms

    def discriminator(self, d_real: torch.Tensor | list[torch.Tensor],
                      d_fake: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """½[(D(real) - 1)² + D(fake)²] (means over the patch map); pass D(fake.detach())."""
        return 0.5 * (self.adversarial(_last(d_real), target_is_real=True, for_discriminator=True)
                      + self.adversarial(_last(d_fake), target_is_real=False, for_discriminator=True))
