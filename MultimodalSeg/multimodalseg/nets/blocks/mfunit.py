"""Multi-fibre units of DMFNet (Chen et al., MICCAI 2019), written from METHODS §B.2.

Every convolution is pre-activated (norm -> activation -> bias-free conv), as in the reference
``models/DMFNet_16x.py``; a unit is a residual block whose body is two 1×1×1 "multiplexer" convs and two
grouped convs (the fibres).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from monai.utils import ensure_tuple_rep
from torch import nn


class PreActConv(nn.Sequential):
    """Norm -> activation -> bias-free convolution, with "same" padding for odd kernels.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: kernel size, one int or one per axis. Default 1.
        stride: stride, one int or one per axis. Default 1.
        dilation: dilation, one int or one per axis. Default 1.
        groups: convolution groups. Default 1.
        norm: MONAI norm name or ``(name, kwargs)``. Default ``"batch"``.
        act: MONAI activation name or ``(name, kwargs)``. Default ``"relu"``.

    Shapes: (B, C_in, *S) -> (B, C_out, *S / stride).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[int] | int = 1,
        *,
        stride: Sequence[int] | int = 1,
        dilation: Sequence[int] | int = 1,
        groups: int = 1,
        norm: tuple | str = "batch",
        act: tuple | str = "relu",
    ) -> None:
        kernel = ensure_tuple_rep(kernel_size, spatial_dims)
        dil = ensure_tuple_rep(dilation, spatial_dims)
        # (k - 1) // 2 * d keeps the size for odd kernels and gives 0 for the 2×2×2 stride-2 shortcut.
        padding = tuple((k - 1) // 2 * d for k, d in zip(kernel, dil))
        conv = Conv[Conv.CONV, spatial_dims](
            in_channels, out_channels, kernel, stride=stride, padding=padding, dilation=dil, groups=groups, bias=False
        )
        super().__init__()
        self.add_module("norm", get_norm_layer(norm, spatial_dims, in_channels))
        self.add_module("act", get_act_layer(act))
        self.add_module("conv", conv)


class MFUnit(nn.Module):
    """(Dilated) multi-fibre unit.

    Body: 1×1×1 conv C_in -> C_in/4, 1×1×1 conv -> C_mid = min(C_in, C_out), grouped 3×3×3 conv (stride s) -> C_out,
    grouped in-plane conv (``plane_kernel_size``) -> C_out. With several ``dilations`` the first grouped conv is
    replaced by parallel branches with those dilations, summed with learnable scalar weights initialised to 1
    (DMFNet's DMFUnit); with one dilation it is MFNet's MFunit. Shortcut: identity; a pre-activated 1×1×1 conv when
    the channels change; a pre-activated s×s×s conv with stride s when downsampling.

    Args:
        spatial_dims: number of spatial dimensions (the network uses 3).
        in_channels: C_in, at least 4.
        out_channels: C_out, divisible by ``groups``.
        stride: stride of the first grouped conv (1 or 2 in DMFNet). Default 1.
        groups: groups of the two grouped convs; C_mid and C_out must be divisible by it. Default 16.
        dilations: dilation of each parallel branch. Default ``(1,)`` (MFunit); DMFNet uses ``(1, 2, 3)``.
        plane_kernel_size: kernel of the second grouped conv. The reference's 3×3×1 acts on (H, W, D) arrays, i.e.
            in-plane; for this project's (Z, Y, X) tensors that is ``(1, 3, 3)``. Default ``(1, 3, 3)``.
        norm: MONAI norm name or ``(name, kwargs)``. Default ``"batch"``.
        act: MONAI activation name or ``(name, kwargs)``. Default ``"relu"``.

    Shapes: (B, C_in, *S) -> (B, C_out, *S / stride).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        groups: int = 16,
        dilations: Sequence[int] = (1,),
        plane_kernel_size: Sequence[int] | int = (1, 3, 3),
        norm: tuple | str = "batch",
        act: tuple | str = "relu",
    ) -> None:
        super().__init__()
        mid = min(in_channels, out_channels)
        if in_channels < 4:
            raise ValueError(f"MFUnit needs at least 4 input channels (the first conv reduces by 4), got {in_channels}")
        if mid % groups or out_channels % groups:
            raise ValueError(
                f"MFUnit channels {mid} -> {out_channels} must be divisible by groups={groups}"
            )
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"dilations must be positive integers, got {tuple(dilations)}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        kw = {"norm": norm, "act": act}
        self.reduce = PreActConv(spatial_dims, in_channels, in_channels // 4, 1, **kw)
        self.expand = PreActConv(spatial_dims, in_channels // 4, mid, 1, **kw)
        self.fibres = nn.ModuleList(
            PreActConv(spatial_dims, mid, out_channels, 3, stride=stride, dilation=d, groups=groups, **kw)
            for d in dilations
        )
        # Only the dilated unit weights its branches (DMFNet's w1, w2, w3, initialised to 1).
        self.branch_weights = nn.Parameter(torch.ones(len(dilations))) if len(dilations) > 1 else None
        self.plane = PreActConv(spatial_dims, out_channels, out_channels, plane_kernel_size, groups=groups, **kw)
        if stride != 1:
            self.shortcut: nn.Module = PreActConv(spatial_dims, in_channels, out_channels, stride, stride=stride, **kw)
        elif in_channels != out_channels:
            self.shortcut = PreActConv(spatial_dims, in_channels, out_channels, 1, **kw)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(self.reduce(x))
        if self.branch_weights is None:
            h = self.fibres[0](h)
        else:
            h = sum(w * branch(h) for w, branch in zip(self.branch_weights, self.fibres))
        return self.plane(h) + self.shortcut(x)
