"""CDDFuse's two-stage losses (METHODS §E.3): correlation and decomposition terms, SSIM variants, gradients,
stage I/II on phantom CT/MR slices."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.losses import SSIMLoss
from multimodalseg import io
from multimodalseg.nets.cddfuse import DEMO_CONFIG, CDDFuse, FeatureSplit
from multimodalseg.phantoms import make_case

from training.spine.fusion_losses import (
    CDDFuseLoss,
    correlation,
    decomposition_loss,
    fusion_step,
    kornia_ssim_loss,
    make_optimizers,
    normalized_sobel,
    sobel_magnitude,
    stage_modules,
)


@pytest.fixture(scope="module")
def slices() -> tuple[torch.Tensor, torch.Tensor]:
    """Two sagittal phantom slice pairs (CT windowed, registered T2 MR scaled), cropped to the central 40 x 40 pixels
    (the column and its surroundings), (2, 1, 40, 40) each in [0, 1]."""
    case = make_case("spine", 1, shape=(64, 64, 64), misregister=False)
    ct = case.images["ct"]
    mr = io.resample_to_reference(case.images["mr"], ct)
    ct01 = np.clip((sitk.GetArrayFromImage(ct).astype(np.float32) + 200.0) / 1500.0, 0, 1)
    mr_a = sitk.GetArrayFromImage(mr).astype(np.float32)
    mr01 = np.clip(mr_a / np.percentile(mr_a, 99.5), 0, 1)
    pick = [30, 34]  # sagittal slices (array axis 2) through the column
    to_t = lambda a: torch.from_numpy(np.stack([a[12:52, 12:52, i] for i in pick]))[:, None].contiguous()  # noqa: E731
    return to_t(ct01), to_t(mr01)


def test_correlation_known_values():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    assert correlation(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert correlation(x, 2.5 * x + 3).item() == pytest.approx(1.0, abs=1e-6)
    assert correlation(x, -x).item() == pytest.approx(-1.0, abs=1e-6)
    assert abs(correlation(torch.randn(4, 8, 64, 64), torch.randn(4, 8, 64, 64)).item()) < 0.01
    # averaged per (sample, channel): one channel +1, the other -1
    y = torch.cat((x[:, :1], -x[:, 1:2]), 1)
    assert correlation(x[:, :2], y).item() == pytest.approx(0.0, abs=1e-6)


def test_decomposition_loss_extremes():
    torch.manual_seed(0)
    base, d1, d2 = torch.randn(1, 4, 32, 32), torch.randn(1, 4, 32, 32), torch.randn(1, 4, 32, 32)
    # shared base, independent details: the decomposition CDDFuse wants, loss near 0
    good = decomposition_loss(FeatureSplit(base, d1), FeatureSplit(base, d2)).item()
    assert good < 1e-3
    # identical details and bases: 1 / 2.01; identical details, opposite bases: 1 / 0.01
    assert decomposition_loss(FeatureSplit(base, d1), FeatureSplit(base, d1)).item() == pytest.approx(1 / 2.01, 1e-4)
    assert decomposition_loss(FeatureSplit(base, d1), FeatureSplit(-base, d1)).item() == pytest.approx(100.0, 1e-3)


def test_decomposition_loss_trains_the_encoder_apart_and_together_on_phantom_slices(slices):
    ct, mr = slices
    torch.manual_seed(0)
    net = CDDFuse(2, 1, 1, **DEMO_CONFIG)
    opt = torch.optim.Adam(net.encoder.parameters(), lr=2e-3)

    def terms():
        f_ct, f_mr = net.encode(ct, mr)
        return decomposition_loss(f_mr, f_ct), correlation(f_mr.detail, f_ct.detail), correlation(f_mr.base, f_ct.base)

    with torch.no_grad():
        start, cc_d0, cc_b0 = terms()
    for _ in range(8):
        loss, _, _ = terms()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end, cc_d, cc_b = terms()
    assert end < 0.5 * start
    assert cc_d.abs() < cc_d0.abs() and cc_b > cc_b0  # details pushed apart, bases pulled together


def test_ssim_variants(slices):
    ct, mr = slices
    assert kornia_ssim_loss(mr, mr).item() == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)
    noisy = (mr + 0.05 * torch.randn_like(mr)).clamp(0, 1)
    monai = SSIMLoss(spatial_dims=2, data_range=1.0)
    k_noisy, m_noisy = kornia_ssim_loss(mr, noisy).item(), 0.5 * monai(mr, noisy).item()
    k_cross, m_cross = kornia_ssim_loss(mr, ct).item(), 0.5 * monai(mr, ct).item()
    # close for similar images (border handling differs), apart where SSIM goes negative (kornia clamps)
    assert abs(k_noisy - m_noisy) < 0.2 * m_noisy
    assert k_noisy < k_cross <= 0.5 and m_noisy < m_cross
    assert CDDFuseLoss(ssim="monai").ssim(mr, noisy).item() == pytest.approx(m_noisy)
    with pytest.raises(ValueError):
        CDDFuseLoss(ssim="skimage")


def test_sobel_operators_on_a_ramp():
    ramp = (torch.arange(12.0) * 0.5).repeat(10, 1)[None, None]  # slope 0.5 along x
    g = normalized_sobel(ramp)
    assert g.shape == (1, 1, 2, 10, 12)
    torch.testing.assert_close(g[0, 0, 0, :, 1:-1], torch.full((10, 10), 0.5))
    torch.testing.assert_close(g[0, 0, 1], torch.zeros(10, 12))  # replicate padding: no edge in y
    torch.testing.assert_close(sobel_magnitude(ramp)[0, 0, 1:-1, 1:-1], torch.full((8, 10), 4.0))  # 8 x slope


def test_stage_losses_known_cases(slices):
    ct, mr = slices
    loss = CDDFuseLoss()
    torch.manual_seed(0)
    feats = [FeatureSplit(torch.randn(2, 4, 40, 40), torch.randn(2, 4, 40, 40)) for _ in range(2)]
    decomp = decomposition_loss(feats[0], feats[1]).item()
    perfect = loss.stage_one(mr, mr.clone(), ct, ct.clone(), feats[0], feats[1])
    assert perfect.total.item() == pytest.approx(2 * decomp, rel=1e-5)
    assert perfect.parts["gradient"] == 0 and perfect.parts["reconstruction_mr"] == pytest.approx(0, abs=1e-6)
    # stage II with an empty CT: the fused target is the MR itself, intensity and gradient terms vanish
    zero = torch.zeros_like(ct)
    fused_is_mr = loss.stage_two(mr, zero, mr.clone(), feats[0], feats[1])
    assert fused_is_mr.parts["intensity"] == 0 and fused_is_mr.parts["gradient"] == 0
    assert fused_is_mr.total.item() == pytest.approx(2 * decomp, rel=1e-5)
    # a fused image that drops the CT's bone is penalised
    assert loss.stage_two(mr, ct, mr.clone(), feats[0], feats[1]).parts["intensity"] > 0.01


def test_two_stage_training_steps_on_phantom_slices(slices):
    ct, mr = slices
    torch.manual_seed(0)
    net = CDDFuse(2, 1, 1, **DEMO_CONFIG)
    loss = CDDFuseLoss()
    optimizers = make_optimizers(net, lr=2e-3)
    fusion_layers = [p.detach().clone() for n in ("base_fusion", "detail_fusion") for p in net.parameter_groups()[n]]
    for stage in (1, 2):
        values = [fusion_step(net, optimizers, loss, ct, mr, stage)["loss"] for _ in range(6)]
        assert np.isfinite(values).all() and values[-1] < values[0], (stage, values)
        now = [p for n in ("base_fusion", "detail_fusion") for p in net.parameter_groups()[n]]
        changed = any(not torch.equal(a, b) for a, b in zip(now, fusion_layers))
        assert changed == (stage == 2)  # stage I leaves the fusion layers alone
    with pytest.raises(ValueError):
        loss(net, ct, mr, 3)
    with pytest.raises(ValueError):
        stage_modules(0)
