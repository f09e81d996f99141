"""Whole-heart losses (METHODS §C.2, §C.6): Dice + 0.1·softmax focal, and the CycleGAN objective by hand."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceFocalLoss, DiceLoss

from training.whole_heart.losses import CycleGANLoss, DiceSoftmaxFocalLoss, dice_softmax_focal


def hand_focal(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Multi-class focal loss per voxel, -(1 - p_t)^γ log p_t, averaged over the batch and voxels."""
    logits = logits.double()
    log_p = logits - logits.logsumexp(1, keepdim=True)
    log_pt = log_p.gather(1, target.long()).squeeze(1)
    return (-(1 - log_pt.exp()) ** gamma * log_pt).mean()


def test_softmax_focal_term_equals_a_hand_computation():
    torch.manual_seed(0)
    logits = 3 * torch.randn(2, 4, 5, 6, 3)
    target = torch.randint(0, 4, (2, 1, 5, 6, 3))
    loss = DiceSoftmaxFocalLoss()
    assert loss.focal_term(logits, target).double() == pytest.approx(float(hand_focal(logits, target)), rel=1e-5)
    for gamma in (0.0, 1.0, 3.0):
        assert DiceSoftmaxFocalLoss(gamma=gamma).focal_term(logits, target).double() == pytest.approx(
            float(hand_focal(logits, target, gamma)), rel=1e-5)
    # γ = 0 is plain cross-entropy.
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0])
    assert DiceSoftmaxFocalLoss(gamma=0.0).focal_term(logits, target) == pytest.approx(float(ce), rel=1e-5)
    dice = DiceLoss(to_onehot_y=True, softmax=True)(logits, target)
    assert loss(logits, target) == pytest.approx(float(dice + 0.1 * hand_focal(logits, target)), rel=1e-5)


def test_softmax_focal_differs_from_monai_dice_focal_default():
    """MONAI's DiceFocalLoss(softmax=True) applies a sigmoid focal to the logits: it is not shift-invariant."""
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 4, 4, 4)
    target = torch.randint(0, 3, (1, 1, 4, 4, 4))
    shifted = logits + 5.0  # the same softmax probabilities, so the same segmentation
    ours = DiceSoftmaxFocalLoss(lambda_dice=0.0, lambda_focal=1.0)
    assert ours(shifted, target) == pytest.approx(float(ours(logits, target)), rel=1e-5)
    monai_focal = DiceFocalLoss(to_onehot_y=True, softmax=True, lambda_dice=0.0, lambda_focal=1.0)
    assert abs(float(monai_focal(shifted, target)) - float(monai_focal(logits, target))) > 0.05
    # Even unshifted, the sigmoid/BCE term is a different number from the softmax one.
    assert abs(float(monai_focal(logits, target)) - float(hand_focal(logits, target))) > 0.05
    # MONAI's Dice term is the same in both (the caveat is the focal term only).
    dice_only = DiceFocalLoss(to_onehot_y=True, softmax=True, lambda_focal=0.0)
    assert dice_only(logits, target) == pytest.approx(float(DiceSoftmaxFocalLoss(lambda_focal=0.0)(logits, target)))


def test_dice_softmax_focal_factory_and_bad_arguments():
    assert isinstance(dice_softmax_focal("labels", lambda_focal=0.2), DiceSoftmaxFocalLoss)
    with pytest.raises(ValueError, match="exclusive labels"):
        dice_softmax_focal("regions")
    with pytest.raises(ValueError, match=">= 0"):
        DiceSoftmaxFocalLoss(lambda_focal=-1.0)


def test_cyclegan_generator_and_discriminator_losses_by_hand():
    torch.manual_seed(0)
    shape = (2, 1, 4, 4, 4)
    real_mr, rec_mr, real_ct, rec_ct, idt_ct, idt_mr = (torch.rand(shape) * 2 - 1 for _ in range(6))
    d_ct_fake, d_mr_fake = torch.randn(2, 1, 2, 2, 2), torch.randn(2, 1, 2, 2, 2)  # negative scores included
    loss = CycleGANLoss()  # λ_cycle 10, λ_identity 1 (paper)
    terms = loss.generator([torch.zeros(1), d_ct_fake], d_mr_fake, real_mr, rec_mr, real_ct, rec_ct, idt_ct, idt_mr)
    gan = ((d_ct_fake - 1) ** 2).mean() + ((d_mr_fake - 1) ** 2).mean()  # LSGAN, no activation on D's output
    cycle = (rec_mr - real_mr).abs().mean() + (rec_ct - real_ct).abs().mean()
    identity = (idt_ct - real_ct).abs().mean() + (idt_mr - real_mr).abs().mean()
    assert terms["gan"] == pytest.approx(float(gan), rel=1e-6)
    assert terms["cycle"] == pytest.approx(float(cycle), rel=1e-6)
    assert terms["identity"] == pytest.approx(float(identity), rel=1e-6)
    assert terms["total"] == pytest.approx(float(gan + 10 * cycle + identity), rel=1e-6)
    junyanz = CycleGANLoss(lambda_identity=5.0).generator(d_ct_fake, d_mr_fake, real_mr, rec_mr, real_ct, rec_ct,
                                                           idt_ct, idt_mr)
    assert junyanz["total"] == pytest.approx(float(gan + 10 * cycle + 5 * identity), rel=1e-6)
    no_identity = CycleGANLoss(lambda_identity=0.0).generator(d_ct_fake, d_mr_fake, real_mr, rec_mr, real_ct, rec_ct)
    assert "identity" not in no_identity and no_identity["total"] == pytest.approx(float(gan + 10 * cycle), rel=1e-6)
    d_real = torch.randn(2, 1, 2, 2, 2)
    expected = 0.5 * (((d_real - 1) ** 2).mean() + (d_ct_fake**2).mean())
    assert loss.discriminator(d_real, d_ct_fake) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="identity outputs"):
        loss.generator(d_ct_fake, d_mr_fake, real_mr, rec_mr, real_ct, rec_ct)
    with pytest.raises(ValueError, match=">= 0"):
        CycleGANLoss(lambda_cycle=-1.0)
