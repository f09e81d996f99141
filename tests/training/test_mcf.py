"""MCF losses and training (METHODS §E.5): difference review, competitive pseudo-labels, sharpening, ramp-up,
slice sampling, and a short semi-supervised run on phantom slices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from multimodalseg import io
from multimodalseg.nets.mcf import DEMO_CONFIG, MCFNet
from multimodalseg.phantoms import make_case

from training.spine.mcf import MCFConfig, SliceCase, SliceSampler, config_dict, make_optimizers, mcf_step, train_mcf
from training.spine.mcf_losses import (
    MCFLoss,
    consistency_weight,
    difference_masks,
    difference_review_loss,
    sharpen,
)


def logits_from_labels(labels: torch.Tensor, k: int, confidence: float = 4.0) -> torch.Tensor:
    return confidence * F.one_hot(labels, k).movedim(-1, 1).float()


# ------------------------------------------------------------------------------------------------ losses
def test_difference_review_is_zero_when_nets_agree_and_positive_otherwise():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 16, 16))
    logits = torch.randn(4, 3, 16, 16)
    loss = MCFLoss(3)
    same = loss(logits, logits.clone(), labels, 2, iteration=0)
    assert same.parts["cdr_a"] == 0 and same.parts["cdr_b"] == 0 and same.parts["disagreement"] == 0
    other = logits.clone()
    other[:2, :, :4, :4] = logits_from_labels((logits[:2, :, :4, :4].argmax(1) + 1) % 3, 3, 10.0)
    out = loss(logits, other, labels, 2, iteration=0)
    assert out.parts["cdr_a"] > 0 and out.parts["cdr_b"] > 0
    assert out.parts["disagreement"] == pytest.approx(2 * 16 / (2 * 256))


def test_difference_review_matches_the_reference_formula_for_two_classes():
    torch.manual_seed(1)
    za, zb = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8)
    y = torch.randint(0, 2, (2, 8, 8))
    pa, pb = za.softmax(1), zb.softmax(1)
    diff = ((pa.argmax(1) == 1) ^ (pb.argmax(1) == 1)).float()
    expected = (diff * (pa[:, 1] - y.float()) ** 2).sum() / (diff.sum() + 1e-16)
    masks = difference_masks(pa.argmax(1), pb.argmax(1), 2)
    onehot = F.one_hot(y, 2).movedim(-1, 1).float()
    torch.testing.assert_close(difference_review_loss(pa, onehot, masks), expected)
    assert masks.shape == (2, 1, 8, 8) and torch.equal(masks[:, 0], diff)


def test_dice_term_matches_the_squared_denominator_formula():
    torch.manual_seed(2)
    z = torch.randn(3, 2, 10, 10)
    y = torch.randint(0, 2, (3, 10, 10))
    p = z.softmax(1)[:, 1]
    expected = 1 - (2 * (p * y).sum() + 1e-5) / (p.square().sum() + y.square().sum() + 1e-5)
    out = MCFLoss(2)(z, z, y, 3, 0)
    assert out.parts["dice_a"] == pytest.approx(expected.item(), rel=1e-5)
    assert out.parts["ce_a"] == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)


@pytest.mark.parametrize("good", [0, 1])
def test_the_subnet_with_the_better_labelled_dice_teaches_the_other(good):
    torch.manual_seed(3)
    labels = torch.randint(0, 3, (2, 12, 12))
    accurate = torch.cat((logits_from_labels(labels, 3), torch.randn(2, 3, 12, 12)))
    poor = torch.randn(4, 3, 12, 12)
    za, zb = (accurate, poor) if good == 0 else (poor, accurate)
    za, zb = za.clone().requires_grad_(), zb.clone().requires_grad_()
    loss = MCFLoss(3)
    out = loss(za, zb, labels, 2, iteration=6000)  # full consistency weight
    assert out.teacher == good
    teacher, student = (za, zb) if good == 0 else (zb, za)
    pseudo = sharpen(teacher.detach()[2:].softmax(1), 0.1)
    assert out.parts["consistency"] == pytest.approx((student.detach()[2:].softmax(1) - pseudo).square().mean().item())
    # only the student learns from the unlabelled half; the teacher's loss ignores it
    (out.loss_a if good == 0 else out.loss_b).backward(retain_graph=True)
    assert teacher.grad[2:].abs().sum() == 0 and teacher.grad[:2].abs().sum() > 0
    (out.loss_b if good == 0 else out.loss_a).backward()
    assert student.grad[2:].abs().sum() > 0
    expected_total = out.loss_a + out.loss_b
    torch.testing.assert_close(out.total, expected_total)


def test_sharpening():
    torch.manual_seed(4)
    p = torch.randn(2, 4, 5, 5).softmax(1)
    s = sharpen(p, 0.1)
    torch.testing.assert_close(s.sum(1), torch.ones(2, 5, 5))
    assert torch.equal(s.argmax(1), p.argmax(1))
    assert (s.max(1).values >= p.max(1).values - 1e-6).all()  # more confident everywhere
    torch.testing.assert_close(sharpen(p, 1.0), p)
    torch.testing.assert_close(s, p ** 10 / (p ** 10).sum(1, keepdim=True))
    assert (sharpen(p, 0.01).max(1).values > 0.99).mean(dtype=torch.float32) > 0.9
    tiny = torch.tensor([[1.0 - 2e-30, 1e-30, 1e-30]]).view(1, 3, 1)
    assert torch.isfinite(sharpen(tiny, 0.1)).all()
    with pytest.raises(ValueError):
        sharpen(p, 0.0)


def test_consistency_ramp():
    assert consistency_weight(0) == pytest.approx(0.1 * math.exp(-5))
    assert consistency_weight(150 * 20) == pytest.approx(0.1 * math.exp(-5 * 0.25))
    assert consistency_weight(6000) == pytest.approx(0.1) and consistency_weight(60000) == pytest.approx(0.1)
    values = [consistency_weight(t) for t in range(0, 6001, 150)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert consistency_weight(149) == consistency_weight(0)  # steps per 150 iterations, like the reference


# ------------------------------------------------------------------------------------------------ sampling
def small_cases():
    rng = np.random.default_rng(0)
    image = rng.random((2, 20, 24, 10)).astype(np.float32) - 1.0  # channel minima below zero: the pad value
    label = np.zeros((20, 24, 10), np.int64)
    label[5:9, 6:12, 3] = 1
    label[12:14, 6:12, 3] = 2
    return [SliceCase(image, label, name="l"), SliceCase(image + 5, None, name="u")]


def test_slice_sampler_shapes_padding_and_positive_slices():
    config = MCFConfig(patch_size=(32, 16), axis=2, pos_fraction=1.0)
    sampler = SliceSampler(small_cases(), config, np.random.default_rng(1))
    images, labels = sampler.labelled_batch(3)
    assert images.shape == (3, 2, 32, 16) and labels.shape == (3, 32, 16) and labels.dtype == torch.int64
    assert all((lab > 0).any() for lab in labels)  # pos_fraction 1: every labelled slice crosses the label
    assert images.min() >= -1.0 and (images == images.amin()).any()  # padding with the channel minimum
    unlabelled = sampler.unlabelled_batch(2)
    assert unlabelled.shape == (2, 2, 32, 16) and unlabelled.min() >= 4.0  # only the unlabelled case
    # another axis and explicit candidate slices
    cases = small_cases()
    cases[1].slices = [7]
    cases[1].axis = 0
    sampler = SliceSampler(cases, MCFConfig(patch_size=(16, 16), axis=2), np.random.default_rng(2))
    batch = sampler.unlabelled_batch(4)
    source = cases[1].image[:, 7]  # axis 0, slice 7 only: every value comes from it or is the padding
    fill = cases[1].image.reshape(2, -1).min(axis=1)
    for c in range(2):
        assert np.isin(batch[:, c].numpy(), np.append(source[c], fill[c])).all()
    assert batch.shape == (4, 2, 16, 16)


def test_sampler_and_config_errors():
    cases = small_cases()
    with pytest.raises(ValueError, match="labelled case"):
        SliceSampler([cases[1]], MCFConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unlabelled"):
        SliceSampler([cases[0]], MCFConfig(unlabelled_batch=2), np.random.default_rng(0))
    with pytest.raises(ValueError):
        SliceCase(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError):
        SliceCase(np.zeros((1, 4, 4, 4), np.float32), np.zeros((4, 4, 5), np.int64))
    with pytest.raises(ValueError):
        MCFConfig(axis=3)
    assert MCFConfig(lr=0.01, lr_step=2500).learning_rate(2499) == 0.01
    assert MCFConfig(lr=0.01, lr_step=2500).learning_rate(5000) == pytest.approx(1e-4)
    assert config_dict(MCFConfig())["patch_size"] == [512, 512]


def test_one_step_updates_both_subnets():
    torch.manual_seed(5)
    net = MCFNet(2, 1, 3, **DEMO_CONFIG)
    before = [[p.detach().clone() for p in s.parameters()] for s in net.subnets]
    opts = make_optimizers(net, MCFConfig())
    row = mcf_step(net, opts, MCFLoss(3), torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32)),
                   torch.randn(2, 1, 32, 32), iteration=0)
    assert all(np.isfinite(v) for v in row.values())
    for subnet, old in zip(net.subnets, before):
        assert any(not torch.equal(p, q) for p, q in zip(subnet.parameters(), old))


# ------------------------------------------------------------------------------------------------ training
def phantom_cases() -> list[SliceCase]:
    """Two co-registered phantom cases on small grids: CT + MR channels, one labelled, one unlabelled."""
    cases = []
    for seed, labelled in ((0, True), (1, False)):
        case = make_case("spine", seed, shape=(48, 48, 48), misregister=False)
        ct = case.images["ct"]
        mr = sitk.GetArrayFromImage(io.resample_to_reference(case.images["mr"], ct)).astype(np.float32)
        ct_n = np.clip((sitk.GetArrayFromImage(ct).astype(np.float32) + 200) / 1500, 0, 1)
        image = np.stack([ct_n, mr / np.percentile(mr, 99.5)])
        label = sitk.GetArrayFromImage(case.label).astype(np.int64) if labelled else None
        cases.append(SliceCase(image, label, name=case.case_id))
    return cases


def test_short_semi_supervised_run_on_phantom_slices():
    cases = phantom_cases()
    net = MCFNet(2, 2, 3, **DEMO_CONFIG)
    config = MCFConfig(iterations=24, patch_size=(48, 48), axis=2, lr=0.05, lr_step=20, rampup_unit=1, rampup=4)
    seen = []
    history = train_mcf(net, cases, config, callback=lambda i, row: seen.append(i))
    assert seen == list(range(24)) and len(history) == 24
    assert history[0]["lr"] == 0.05 and history[-1]["lr"] == pytest.approx(0.005)
    assert {row["teacher"] for row in history} <= {0.0, 1.0}
    assert history[-1]["lambda"] == pytest.approx(0.1)
    for key in ("dice_a", "dice_b", "ce_a", "ce_b"):
        first, last = np.mean([r[key] for r in history[:4]]), np.mean([r[key] for r in history[-4:]])
        assert last < first, key
    assert all(np.isfinite(r["loss_a"]) and np.isfinite(r["loss_b"]) for r in history)
