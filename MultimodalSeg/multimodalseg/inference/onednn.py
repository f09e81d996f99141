"""Route small 3D convolutions to oneDNN at inference on the CPU (same weights, same results up to float noise).

PyTorch's CPU convolution picks oneDNN (mkldnn) only when ``N * C * D * H > 20480`` (or groups > 1, batch > 1,
several threads, ...). A 3×3×3 conv with few channels on one window, e.g. DMFNet's 4-channel MIE convs on a
48³ window or a 1-channel heart CT window, falls back to ``aten::slow_conv3d_forward`` (im2col + GEMM), which
measured 8-11× slower on this project's CPU (1 thread: 4->4 channels at 48³ 82 ms against 9.4 ms; 6->6 at 48³
153 ms against 16.5 ms). :func:`route_convolutions` makes such convs call ``torch.mkldnn_convolution`` directly.

Only the forward of eligible convs changes: ``nn.Conv3d`` with a kernel larger than 1×1×1 (for 1×1×1 kernels the
native GEMM path was faster), zero padding given as numbers, on float32 CPU tensors, outside autocast and without
autograd (``torch.inference_mode``/``no_grad``). Anything else takes the module's own path, so training, CUDA and
bf16 autocast behave as before. The parameters and the state dict are untouched.
"""

from __future__ import annotations

import torch
from torch import nn


class OneDNNConv3d(nn.Conv3d):
    """``nn.Conv3d`` whose CPU float32 inference forward always uses oneDNN (see the module docstring).

    Instances are made by :func:`route_convolutions` (class swap of an existing ``nn.Conv3d``), never built
    directly. Shapes as ``nn.Conv3d``: (N, C_in, D, H, W) -> (N, C_out, D', H', W').
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (input.device.type == "cpu" and input.dtype == torch.float32 and weight.dtype == torch.float32
                and input.dim() == 5 and not torch.is_autocast_enabled("cpu")
                and not (torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad))
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return torch.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)


def _eligible(module: nn.Module) -> bool:
    return (type(module) is nn.Conv3d and module.padding_mode == "zeros" and not isinstance(module.padding, str)
            and any(k > 1 for k in module.kernel_size))


def route_convolutions(model: nn.Module) -> int:
    """Switch the eligible ``nn.Conv3d`` modules of ``model`` to :class:`OneDNNConv3d` in place.

    Returns:
        The number of convolutions switched (0 when oneDNN is not available in this PyTorch build).
    """
    if not torch.backends.mkldnn.is_available():
        return 0
    count = 0
    for module in model.modules():
        if _eligible(module):
            module.__class__ = OneDNNConv3d
            count += 1
    return count
