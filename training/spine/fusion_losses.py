"""CDDFuse's two-stage fusion losses (METHODS §E.3), for ``multimodalseg.nets.cddfuse.CDDFuse``.

Roles as in CDDFuse's MRI-CT use: V (visible) = MR, I (infrared) = CT. Images are (B, 1, H, W) in [0, 1].

Stage I (auto-encoder per modality, decoder residual = the input itself):
    L_I = [5 L_SSIM(V, V̂) + MSE(V, V̂)] + [5 L_SSIM(I, Î) + MSE(I, Î)] + 2 L_decomp + 5 ‖∇V − ∇V̂‖₁
Stage II (fusion layers added):
    L_II = ‖F − max(V, I)‖₁ + 10 ‖ |∇F| − max(|∇V|, |∇I|) ‖₁ + 2 L_decomp
with L_decomp = CC(Φ^D_V, Φ^D_I)² / (1.01 + CC(Φ^B_V, Φ^B_I)).

SSIM: CDDFuse pins kornia 0.2.0, whose ``SSIM(11)`` loss is mean(clamp(1 − SSIM_map, 0, 1)) / 2 with an 11 × 11
Gaussian window (σ 1.5) and *zero* padding (a full-size map). :func:`kornia_ssim_loss` re-implements exactly that
and is the default (``ssim="kornia"``). MONAI's ``SSIMLoss(spatial_dims=2, data_range=1)`` is 1 − mean SSIM over
*valid* windows, no clamp; ``ssim="monai"`` uses 0.5 × it (§F.3). On 40 × 40 phantom MR slices against a noisy
copy the two give 0.040 (kornia) and 0.045 (0.5 × MONAI); MR against CT, where SSIM goes negative and kornia
clamps, 0.45 and 0.70. Same ordering, different scale: keep ``"kornia"`` to follow CDDFuse's weights.

∇ in stage I is kornia's normalised Sobel (``SpatialGradient``: kernels / 8, replicate padding, both directions);
stage II uses CDDFuse's unnormalised |Sobel_x| + |Sobel_y| with zero padding.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss
from multimodalseg.nets.cddfuse import CDDFuse, FeatureSplit
from torch import nn

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_SOBEL_Y = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per (sample, channel) over the pixels, clamped to [−1, 1], averaged (CDDFuse ``cc``)."""
    eps = torch.finfo(torch.float32).eps
    a = a.flatten(2) - a.flatten(2).mean(-1, keepdim=True)
    b = b.flatten(2) - b.flatten(2).mean(-1, keepdim=True)
    r = (a * b).sum(-1) / (eps + a.square().sum(-1).sqrt() * b.square().sum(-1).sqrt())
    return r.clamp(-1.0, 1.0).mean()


def decomposition_loss(mr: FeatureSplit, ct: FeatureSplit) -> torch.Tensor:
    """CC(Φ^D_MR, Φ^D_CT)² / (1.01 + CC(Φ^B_MR, Φ^B_CT)): low when the detail features are uncorrelated and the base
    features correlated. Range (0, 100]: 0 ≤ CC_D² ≤ 1 and 0.01 ≤ 1.01 + CC_B ≤ 2.01."""
    return correlation(mr.detail, ct.detail).square() / (1.01 + correlation(mr.base, ct.base))


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - size // 2
    g = torch.exp(-x.square() / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)[None, None]


def kornia_ssim_loss(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
                     max_val: float = 1.0) -> torch.Tensor:
    """kornia 0.2.0's ``SSIM(window, reduction="mean")``: mean(clamp(1 − SSIM_map, 0, 1)) / 2, zero-padded map."""
    c = x.shape[1]
    kernel = _gaussian_window(window, sigma, x).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, padding=window // 2, groups=c)

    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x.square(), blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return (1.0 - ssim_map).clamp(0.0, 1.0).mean() / 2


def normalized_sobel(x: torch.Tensor) -> torch.Tensor:
    """kornia ``SpatialGradient()``: (B, C, 2, H, W), Sobel kernels / 8, replicate padding."""
    b, c, h, w = x.shape
    kernels = torch.stack((_SOBEL_X, _SOBEL_X.T)).to(x) / 8.0
    padded = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kernels[:, None]).reshape(b, c, 2, h, w)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """CDDFuse's ``Sobelxy``: |Sobel_x ∗ x| + |Sobel_y ∗ x|, zero padding, one channel in and out."""
    kernels = torch.stack((_SOBEL_X, _SOBEL_Y)).to(x)[:, None]
    g = F.conv2d(x, kernels, padding=1)
    return g[:, :1].abs() + g[:, 1:].abs()


class StageLoss(NamedTuple):
    total: torch.Tensor
    parts: dict[str, float]


class CDDFuseLoss(nn.Module):
    """Both stages' losses with CDDFuse's weights (all configurable).

    Args:
        ssim: ``"kornia"`` (CDDFuse's, default) or ``"monai"`` (0.5 × MONAI ``SSIMLoss``).
        ssim_weight, decomp_weight, gradient_weight: stage I (5, 2, 5).
        intensity_weight, fusion_gradient_weight: stage II (1, 10); stage II reuses ``decomp_weight``.
    """

    def __init__(self, ssim: str = "kornia", ssim_weight: float = 5.0, decomp_weight: float = 2.0,
                 gradient_weight: float = 5.0, intensity_weight: float = 1.0,
                 fusion_gradient_weight: float = 10.0) -> None:
        super().__init__()
        if ssim not in ("kornia", "monai"):
            raise ValueError(f"ssim must be 'kornia' or 'monai', got '{ssim}'")
        self.monai_ssim = SSIMLoss(spatial_dims=2, data_range=1.0) if ssim == "monai" else None
        self.ssim_weight, self.decomp_weight, self.gradient_weight = ssim_weight, decomp_weight, gradient_weight
        self.intensity_weight, self.fusion_gradient_weight = intensity_weight, fusion_gradient_weight

    def ssim(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.monai_ssim is None:
            return kornia_ssim_loss(x, y)
        return 0.5 * self.monai_ssim(x, y)

    def stage_one(self, mr: torch.Tensor, mr_hat: torch.Tensor, ct: torch.Tensor, ct_hat: torch.Tensor,
                  f_mr: FeatureSplit, f_ct: FeatureSplit) -> StageLoss:
        rec_mr = self.ssim_weight * self.ssim(mr, mr_hat) + F.mse_loss(mr_hat, mr)
        rec_ct = self.ssim_weight * self.ssim(ct, ct_hat) + F.mse_loss(ct_hat, ct)
        decomp = decomposition_loss(f_mr, f_ct)
        grad = F.l1_loss(normalized_sobel(mr_hat), normalized_sobel(mr))
        total = rec_mr + rec_ct + self.decomp_weight * decomp + self.gradient_weight * grad
        return StageLoss(total, {"reconstruction_mr": rec_mr.item(), "reconstruction_ct": rec_ct.item(),
                                 "decomposition": decomp.item(), "gradient": grad.item()})

    def stage_two(self, mr: torch.Tensor, ct: torch.Tensor, fused: torch.Tensor, f_mr: FeatureSplit,
                  f_ct: FeatureSplit) -> StageLoss:
        intensity = F.l1_loss(fused, torch.maximum(mr, ct))
        gradient = F.l1_loss(sobel_magnitude(fused), torch.maximum(sobel_magnitude(mr), sobel_magnitude(ct)))
        decomp = decomposition_loss(f_mr, f_ct)
        total = self.intensity_weight * intensity + self.fusion_gradient_weight * gradient + \
            self.decomp_weight * decomp
        return StageLoss(total, {"intensity": intensity.item(), "gradient": gradient.item(),
                                 "decomposition": decomp.item()})

    def forward(self, model: CDDFuse, ct: torch.Tensor, mr: torch.Tensor, stage: int) -> StageLoss:
        """Run ``model``'s parts on a batch of CT and MR patches and return the stage's loss."""
        if stage == 1:
            mr_hat, f_mr = model.reconstruct(mr)
            ct_hat, f_ct = model.reconstruct(ct)
            return self.stage_one(mr, mr_hat, ct, ct_hat, f_mr, f_ct)
        if stage == 2:
            fused, f_ct, f_mr = model.fuse_images(ct, mr)
            return self.stage_two(mr, ct, fused, f_mr, f_ct)
        raise ValueError(f"stage must be 1 or 2, got {stage}")


def stage_modules(stage: int) -> list[str]:
    """The parameter groups (``CDDFuse.parameter_groups()`` keys) a stage trains: CDDFuse steps the fusion layers'
    optimisers only in stage II."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    return ["encoder", "decoder"] if stage == 1 else ["encoder", "decoder", "base_fusion", "detail_fusion"]


def make_optimizers(model: CDDFuse, lr: float = 1e-4, weight_decay: float = 0.0, *,
                    decoupled: bool = False) -> dict[str, torch.optim.Optimizer]:
    """CDDFuse's four Adam optimisers, one per parameter group; ``decoupled``: AdamW (the spine paper: weight decay
    0.025, decoupled)."""
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return {name: cls(params, lr=lr, weight_decay=weight_decay) for name, params in model.parameter_groups().items()}


def fusion_step(model: CDDFuse, optimizers: dict[str, torch.optim.Optimizer], loss: CDDFuseLoss, ct: torch.Tensor,
                mr: torch.Tensor, stage: int, clip_norm: float = 0.01) -> dict[str, float]:
    """One CDDFuse iteration: the stage's loss, gradient-norm clipping per module (0.01), the stage's optimisers."""
    model.train()
    out = loss(model, ct, mr, stage)
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    out.total.backward()
    groups = model.parameter_groups()
    for name in stage_modules(stage):
        nn.utils.clip_grad_norm_(groups[name], max_norm=clip_norm)
        optimizers[name].step()
    return {"loss": out.total.item(), **out.parts}
