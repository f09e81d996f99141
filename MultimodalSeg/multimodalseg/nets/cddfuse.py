"""CDDFuse-style 2D CT-MR fusion network (Zhao et al., CVPR 2023) as the spine paper uses it (METHODS §E.2).

A shared Restormer encoder turns each modality into features Φ^S; a Lite-Transformer block extracts the base
(low-frequency, shared) features Φ^B and a detail branch the detail (high-frequency, modality-specific) features
Φ^D. Stage II fuses Φ^B_CT + Φ^B_MR with another Lite-Transformer block and Φ^D_CT + Φ^D_MR with a one-step
detail branch; the decoder (1×1 reduce, Restormer blocks, two 3×3 convs, optional image residual, sigmoid)
maps the fused features to a fused image in [0, 1].

The detail branch is the spine paper's plain CNN by default (``detail="cnn"``); ``detail="inn"`` is CDDFuse's
invertible network. :data:`PAPER_CONFIG` is CDDFuse exactly: 1,188,272 parameters (METHODS: 1.19 M).

Inputs are single slices normalised to [0, 1] (CT windowed, MR scaled): (B, in_channels, H, W) each. ``forward``
pads a slice to ``pad_to`` (the paper pads to 512 × 512) and a multiple of ``pad_multiple``, and crops the output
back: the channel attention is global over the slice, so the padded size changes the result and must match
training. The parts (``encode``, ``fuse``, ``decode``, ``reconstruct``) work on tensors as given, for the two-stage
training of ``training.fusion_losses``.

Example:
    >>> net = CDDFuse(2, 1, 1, **DEMO_CONFIG)
    >>> net(torch.rand(1, 1, 60, 50), torch.rand(1, 1, 60, 50)).shape
    torch.Size([1, 1, 60, 50])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from multimodalseg.nets.blocks.fusion_blocks import (
    CNNDetailExtractor,
    INNDetailExtractor,
    LiteTransformerBlock,
    RestormerBlock,
)

RESIDUALS = ("none", "mr", "ct", "sum")
DETAILS = ("cnn", "inn")
PAD_MODES = ("constant", "reflect", "replicate")

# CDDFuse's net.py as trained in train.py: 64 channels, 8 heads, 4 + 4 Restormer blocks, INN detail encoder.
PAPER_CONFIG: dict[str, Any] = {"features": 64, "num_heads": 8, "encoder_blocks": 4, "decoder_blocks": 4,
                                "detail": "inn", "detail_layers": 3, "fusion_detail_layers": 1}
# The spine paper: the same, with the plain CNN detail encoder, slices padded to 512 × 512.
SPINE_CONFIG: dict[str, Any] = {**PAPER_CONFIG, "detail": "cnn", "pad_to": (512, 512)}
# Demo bundle / CPU tests: 16 channels, 2 + 2 blocks; phantom slices are padded to 128 × 128.
DEMO_CONFIG: dict[str, Any] = {"features": 16, "num_heads": 2, "encoder_blocks": 2, "decoder_blocks": 2,
                               "detail": "cnn", "detail_layers": 2, "fusion_detail_layers": 1, "pad_to": (128, 128)}


class FeatureSplit(NamedTuple):
    """One image's (or the fused) features, each (B, features, H, W): base Φ^B, detail Φ^D, shared Φ^S."""

    base: torch.Tensor
    detail: torch.Tensor
    shared: torch.Tensor | None = None


class FusionEncoder(nn.Module):
    """3×3 patch embedding, shared Restormer blocks, then the base and detail branches."""

    def __init__(self, in_channels: int, features: int, num_heads: int, blocks: int, ffn_expansion: float,
                 base_mlp_expansion: float, detail: str, detail_layers: int, bias: bool) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, features, kernel_size=3, padding=1, bias=bias)
        self.shared = nn.Sequential(*(RestormerBlock(features, num_heads, ffn_expansion, bias) for _ in range(blocks)))
        self.base = LiteTransformerBlock(features, num_heads, base_mlp_expansion, bias)
        self.detail = _detail_branch(detail, features, detail_layers)

    def forward(self, x: torch.Tensor) -> FeatureSplit:
        shared = self.shared(self.patch_embed(x))
        return FeatureSplit(self.base(shared), self.detail(shared), shared)


class FusionDecoder(nn.Module):
    """cat(Φ^B, Φ^D) → 1×1 conv → Restormer blocks → 3×3 conv, LeakyReLU, 3×3 conv (+ residual image) → sigmoid."""

    def __init__(self, out_channels: int, features: int, num_heads: int, blocks: int, ffn_expansion: float,
                 bias: bool) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(features * 2, features, kernel_size=1, bias=bias)
        self.blocks = nn.Sequential(*(RestormerBlock(features, num_heads, ffn_expansion, bias) for _ in range(blocks)))
        self.output = nn.Sequential(
            nn.Conv2d(features, features // 2, kernel_size=3, padding=1, bias=bias),
            nn.LeakyReLU(),
            nn.Conv2d(features // 2, out_channels, kernel_size=3, padding=1, bias=bias),
        )

    def forward(self, base: torch.Tensor, detail: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        y = self.output(self.blocks(self.reduce(torch.cat((base, detail), dim=1))))
        if residual is not None:
            y = y + residual
        return torch.sigmoid(y)


def _detail_branch(kind: str, features: int, layers: int) -> nn.Module:
    return INNDetailExtractor(features, layers) if kind == "inn" else CNNDetailExtractor(features, layers)


class CDDFuse(nn.Module):
    """Correlation-driven dual-branch CT-MR fusion network (2D).

    Args:
        spatial_dims: must be 2 (the paper's pipeline is slice by slice).
        in_channels: channels of one modality's slice (1 for grey images).
        out_channels: channels of the fused image (1).
        features: feature width C (64 in CDDFuse).
        num_heads: attention heads; ``features`` must be divisible by it (8).
        encoder_blocks, decoder_blocks: Restormer blocks in the shared encoder and the decoder (4, 4).
        ffn_expansion: GDFN width factor in the Restormer blocks (2).
        base_mlp_expansion: MLP width factor in the Lite-Transformer blocks (1).
        detail: detail encoder, ``"cnn"`` (spine paper, default) or ``"inn"`` (CDDFuse).
        detail_layers: units of the detail encoder (3).
        fusion_detail_layers: units of the stage-II detail fusion layer (1).
        bias: conv biases in the transformer parts and the decoder (False, as CDDFuse).
        residual: image added before the output sigmoid when fusing: ``"mr"`` (default; stage-II training in
            CDDFuse passes the visible/MR image), ``"ct"``, ``"sum"`` (CDDFuse's IVF inference) or ``"none"``
            (CDDFuse's MIF inference). Training and inference use the same setting here.
        pad_to: minimum (H, W) the slices are padded to in ``forward``; None: no minimum. Default (512, 512).
        pad_multiple: padded sizes are also rounded up to a multiple of this (1).
        pad_mode: ``"constant"`` (zeros, i.e. air/background after normalisation; default), ``"reflect"``,
            ``"replicate"``.

    Shapes: ``forward(ct, mr)``: (B, in_channels, H, W) twice → (B, out_channels, H, W) in [0, 1], any H, W.

    Raises:
        ValueError: on ``spatial_dims`` other than 2, non-positive sizes, ``features`` not divisible by
            ``num_heads`` (or odd with the INN), unknown ``detail``/``residual``/``pad_mode``, a residual with
            ``in_channels != out_channels``; in ``forward``, on inputs of different or non-4D shapes.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        features: int = 64,
        num_heads: int = 8,
        encoder_blocks: int = 4,
        decoder_blocks: int = 4,
        ffn_expansion: float = 2.0,
        base_mlp_expansion: float = 1.0,
        detail: str = "cnn",
        detail_layers: int = 3,
        fusion_detail_layers: int = 1,
        bias: bool = False,
        residual: str = "mr",
        pad_to: Sequence[int] | None = (512, 512),
        pad_multiple: int = 1,
        pad_mode: str = "constant",
    ) -> None:
        super().__init__()
        _check_args(spatial_dims, in_channels, out_channels, features, num_heads, encoder_blocks, decoder_blocks,
                    detail, detail_layers, fusion_detail_layers, residual, pad_to, pad_multiple, pad_mode)
        self.residual = residual
        self.pad_to = None if pad_to is None else (int(pad_to[0]), int(pad_to[1]))
        self.pad_multiple = int(pad_multiple)
        self.pad_mode = pad_mode
        self.encoder = FusionEncoder(in_channels, features, num_heads, encoder_blocks, ffn_expansion,
                                     base_mlp_expansion, detail, detail_layers, bias)
        self.decoder = FusionDecoder(out_channels, features, num_heads, decoder_blocks, ffn_expansion, bias)
        self.base_fusion = LiteTransformerBlock(features, num_heads, base_mlp_expansion, bias)
        self.detail_fusion = _detail_branch(detail, features, fusion_detail_layers)

    # -- parts for the two-stage training ------------------------------------------------------------------------
    def encode_one(self, image: torch.Tensor) -> FeatureSplit:
        """Base, detail and shared features of one modality's slices (B, in_channels, H, W)."""
        return self.encoder(image)

    def encode(self, ct: torch.Tensor, mr: torch.Tensor) -> tuple[FeatureSplit, FeatureSplit]:
        """Features of both modalities with the shared encoder: ``(features_ct, features_mr)``."""
        return self.encoder(ct), self.encoder(mr)

    def fuse(self, ct: FeatureSplit, mr: FeatureSplit) -> FeatureSplit:
        """Stage-II fusion layers on the summed base and summed detail features."""
        return FeatureSplit(self.base_fusion(ct.base + mr.base), self.detail_fusion(ct.detail + mr.detail))

    def decode(self, features: FeatureSplit, residual: torch.Tensor | None = None) -> torch.Tensor:
        """Image in [0, 1] from base and detail features, ``residual`` added before the sigmoid."""
        return self.decoder(features.base, features.detail, residual)

    def reconstruct(self, image: torch.Tensor) -> tuple[torch.Tensor, FeatureSplit]:
        """Stage I: one modality through encoder and decoder, itself as the residual. Returns (image_hat, features)."""
        features = self.encoder(image)
        return self.decoder(features.base, features.detail, image), features

    def residual_image(self, ct: torch.Tensor, mr: torch.Tensor) -> torch.Tensor | None:
        """The image the decoder adds when fusing (``residual`` setting)."""
        if self.residual == "sum":
            return ct + mr
        return {"none": None, "mr": mr, "ct": ct}[self.residual]

    def fuse_images(self, ct: torch.Tensor, mr: torch.Tensor) -> tuple[torch.Tensor, FeatureSplit, FeatureSplit]:
        """Stage II on tensors as given (no padding): ``(fused, features_ct, features_mr)``."""
        f_ct, f_mr = self.encode(ct, mr)
        return self.decode(self.fuse(f_ct, f_mr), self.residual_image(ct, mr)), f_ct, f_mr

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The four modules CDDFuse optimises separately: encoder, decoder, base fusion, detail fusion."""
        return {"encoder": list(self.encoder.parameters()), "decoder": list(self.decoder.parameters()),
                "base_fusion": list(self.base_fusion.parameters()),
                "detail_fusion": list(self.detail_fusion.parameters())}

    # -- inference ---------------------------------------------------------------------------------------------------
    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) after padding: at least ``pad_to``, rounded up to ``pad_multiple``."""
        h, w = (height, width) if self.pad_to is None else (max(height, self.pad_to[0]), max(width, self.pad_to[1]))
        m = self.pad_multiple
        return -(-h // m) * m, -(-w // m) * m

    def forward(self, ct: torch.Tensor, mr: torch.Tensor) -> torch.Tensor:
        if ct.ndim != 4 or ct.shape != mr.shape:
            raise ValueError(f"CT and MR slices must be (B, C, H, W) of the same shape, got {tuple(ct.shape)} "
                             f"and {tuple(mr.shape)}")
        size = self.padded_size(*ct.shape[-2:])
        ct_p, crop = pad_slices(ct, size, self.pad_mode)
        mr_p, _ = pad_slices(mr, size, self.pad_mode)
        fused, _, _ = self.fuse_images(ct_p, mr_p)
        return fused[crop]

    def forward_strips(self, ct: torch.Tensor, mr: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """``forward`` computed strip by strip (``nets.cddfuse_strips``): the same result up to float rounding,
        2.4-4x fewer CPU seconds on 512 x 512 slices, where the full-slice layers are memory-bound. Inference
        only (no autograd through the two-pass attention)."""
        from multimodalseg.nets.cddfuse_strips import STRIP_ROWS, fuse_in_strips

        if ct.ndim != 4 or ct.shape != mr.shape:
            raise ValueError(f"CT and MR slices must be (B, C, H, W) of the same shape, got {tuple(ct.shape)} "
                             f"and {tuple(mr.shape)}")
        size = self.padded_size(*ct.shape[-2:])
        ct_p, crop = pad_slices(ct, size, self.pad_mode)
        mr_p, _ = pad_slices(mr, size, self.pad_mode)
        return fuse_in_strips(self, ct_p, mr_p, rows or STRIP_ROWS)[crop]


def pad_slices(x: torch.Tensor, size: Sequence[int], mode: str = "constant",
               value: float = 0.0) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad (B, C, H, W) slices symmetrically to ``size`` (H', W') ≥ (H, W).

    Returns the padded tensor and the index that crops it back: ``padded[crop]`` equals ``x`` exactly.
    Reflect padding needs the padding smaller than the slice; larger pads fall back to replicate.
    """
    h, w = x.shape[-2:]
    if size[0] < h or size[1] < w:
        raise ValueError(f"cannot pad a {h}x{w} slice to {size[0]}x{size[1]}")
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    bottom, right = size[0] - h - top, size[1] - w - left
    crop = (Ellipsis, slice(top, top + h), slice(left, left + w))
    if not (top or bottom or left or right):
        return x, crop
    if mode == "reflect" and (max(top, bottom) >= h or max(left, right) >= w):
        mode = "replicate"
    if mode == "constant":
        return F.pad(x, (left, right, top, bottom), mode="constant", value=value), crop
    return F.pad(x, (left, right, top, bottom), mode=mode), crop


def _check_args(spatial_dims, in_channels, out_channels, features, num_heads, encoder_blocks, decoder_blocks,
                detail, detail_layers, fusion_detail_layers, residual, pad_to, pad_multiple, pad_mode) -> None:
    if spatial_dims != 2:
        raise ValueError(f"CDDFuse is a 2D (slice) network: spatial_dims must be 2, got {spatial_dims}")
    sizes = {"in_channels": in_channels, "out_channels": out_channels, "features": features, "num_heads": num_heads,
             "encoder_blocks": encoder_blocks, "decoder_blocks": decoder_blocks, "detail_layers": detail_layers,
             "fusion_detail_layers": fusion_detail_layers, "pad_multiple": pad_multiple}
    for name, value in sizes.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if features % num_heads:
        raise ValueError(f"features ({features}) must be divisible by num_heads ({num_heads})")
    if features < 2:
        raise ValueError(f"features must be at least 2 (the decoder halves it), got {features}")
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {DETAILS}, got '{detail}'")
    if detail == "inn" and features % 2:
        raise ValueError(f"the INN detail branch needs an even number of features, got {features}")
    if residual not in RESIDUALS:
        raise ValueError(f"residual must be one of {RESIDUALS}, got '{residual}'")
    if residual != "none" and in_channels != out_channels:
        raise ValueError(f"an image residual needs in_channels == out_channels, got {in_channels} and {out_channels}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got '{pad_mode}'")
    if pad_to is not None and (len(pad_to) != 2 or any(int(s) != s or s < 1 for s in pad_to)):
        raise ValueError(f"pad_to must be two positive integers (H, W) or None, got {pad_to}")
