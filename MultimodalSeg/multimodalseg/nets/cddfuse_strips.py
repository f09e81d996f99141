"""Exact strip-wise inference of :class:`~multimodalseg.nets.cddfuse.CDDFuse` on large slices (same weights).

At 512 × 512 the network is memory-bound: every layer streams tensors of 16-64 channels × 512² (16-64 MB) through
the caches, and one slice took 4.1 s on this project's CPU (1 thread) against 1.0 s for the same pixels cut into
32-row strips. Strips cannot simply be fused one by one, because the channel attention is global over the slice:
its (C/h × C/h) map per head is a sum over all pixels. So :func:`fuse_in_strips` runs the layers between two
attention maps strip by strip (rows ± a halo as wide as the receptive field of the convs in between, then
cropped), and each attention layer in two passes: the first accumulates q kᵀ and the norms of q and k over the
strips, the second applies ``softmax(temperature · q̂ k̂ᵀ)`` and the rest of the block. The result equals
``CDDFuse.fuse_images`` up to float summation order (tested), including the image borders, where every strip
touches the true border and the layers' own zero or reflect padding applies.

Issue 18 made it about 1.5x cheaper again (CPU seconds per 512 × 512 slice of the demo bundle, 1 thread, shared
2-core machine at load ~5, best of 5: 1.64 before, 1.05 now, 2.57 for the whole slice), still exactly:

- Every tensor is channels-last (NHWC in memory) and each modality goes through the encoder on its own, so a
  strip is dense in memory (a strip of a batch is not). oneDNN then runs the convs without reordering, the
  per-pixel LayerNorm normalises contiguous rows instead of transposing, the attention's 1×1 mixing is one
  (HW × C) @ (C × C) product and the 1×1 convs are plain matrix products.
- The Lite-Transformer's bias-free 1×1 qkv conv followed by its dense 3×3 conv is one 3×3 conv with the product
  weight (C → 3C instead of 3C → 3C: 3x fewer multiply-adds; 22 ms -> 2.9 ms per 34-row strip pair, 1 thread).
  Zero padding commutes with a bias-free 1×1 conv, so this is exact at the borders too. With a biased 1×1 conv
  the two convs run as they are.
- In the second pass of an attention block the residual adds ride on the matrix products (``baddbmm``,
  ``addmm``) and the last 1×1 conv writes straight into the output rows (no halo rows, no copy).

All tensors are (B, C, H, W); strips run along H.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from multimodalseg.nets.blocks.fusion_blocks import ChannelAttention

STRIP_ROWS = 32  # rows per strip: measured fastest on this CPU (1 thread, 16 features at 512 columns)
CHANNELS_LAST = torch.channels_last


def receptive_radius(*modules: nn.Module) -> int:
    """Rows of context a composition of ``modules`` needs: the sum over its convs of ``dilation · (kernel // 2)``
    (an upper bound for any wiring of them)."""
    radius = 0
    for module in modules:
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d):
                radius += conv.dilation[0] * (conv.kernel_size[0] // 2)
    return radius


def _spans(height: int, rows: int) -> list[tuple[int, int]]:
    return [(s, min(height, s + rows)) for s in range(0, height, rows)]


def _rows_like(y: torch.Tensor, height: int) -> torch.Tensor:
    """An empty tensor like ``y`` (memory format included) with ``height`` rows: strips are copied in without
    transposing."""
    channels_last = y.dim() == 4 and y.shape[1] > 1 and y.stride(1) == 1  # y may be a cropped (strided) strip
    return torch.empty((*y.shape[:-2], height, y.shape[-1]), dtype=y.dtype, device=y.device,
                       memory_format=CHANNELS_LAST if channels_last else torch.contiguous_format)


def _strip(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Rows ``lo:hi`` of a (B, C, H, W) tensor. Of a channels-last batch (B > 1) the rows are not dense in memory
    and the convs would fall back to NCHW kernels (up to 80x slower for depthwise ones), so they are copied."""
    rows = x[..., lo:hi, :]
    if x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=CHANNELS_LAST):
        return rows.contiguous(memory_format=CHANNELS_LAST)
    return rows


def strip_map(fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], radius: int,
              rows: int = STRIP_ROWS) -> torch.Tensor:
    """``fn(*inputs)`` computed strip by strip along H: each strip with ``radius`` rows of context, then cropped.

    ``fn`` must be local (no statistics over the whole slice) with a receptive radius of at most ``radius``.
    The output has the memory format of ``fn``'s.
    """
    height = inputs[0].shape[-2]
    out: torch.Tensor | None = None
    for start, stop in _spans(height, rows):
        lo, hi = max(0, start - radius), min(height, stop + radius)
        y = fn(*(_strip(t, lo, hi) for t in inputs))[..., start - lo: start - lo + stop - start, :]
        if out is None:
            out = _rows_like(y, height)
        out[..., start:stop, :] = y
    assert out is not None
    return out


def _conv2d(module: nn.Module) -> nn.Conv2d:
    return module.conv if hasattr(module, "conv") else module  # MONAI's Convolution wraps its nn.Conv2d


def qkv_function(attn: ChannelAttention) -> Callable[[torch.Tensor], torch.Tensor]:
    """``attn.qkv_dwconv(attn.qkv(x))``: as one 3×3 conv with the product weight when the second conv is dense
    (the Lite-Transformer's) and the 1×1 conv has no bias (see the module docstring); else the two convs."""
    first, second = _conv2d(attn.qkv), _conv2d(attn.qkv_dwconv)
    if (second.groups == 1 and first.bias is None and first.kernel_size == (1, 1) and first.groups == 1
            and second.padding_mode == "zeros" and first.padding == (0, 0) and second.stride == (1, 1)):
        weight = torch.einsum("omyx,mi->oiyx", second.weight, first.weight[:, :, 0, 0])
        weight = weight.contiguous(memory_format=CHANNELS_LAST)
        return lambda x: F.conv2d(x, weight, second.bias, 1, second.padding, second.dilation)
    return lambda x: attn.qkv_dwconv(attn.qkv(x))


def _pointwise(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 conv on channels-last x as a (HW × C_in) @ (C_in × C_out) product (2x faster than the conv for
    16 -> 64 channels at 34 × 512, as fast otherwise)."""
    conv = _conv2d(conv)
    return F.linear(x.permute(0, 2, 3, 1), conv.weight[:, :, 0, 0], conv.bias).permute(0, 3, 1, 2)


def _gated(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``gelu(x1) · x2`` of the halves of ``conv(x)``. A channels-last half is runs of C/2 values in memory; with
    runs shorter than 32 floats ATen's GELU does not vectorise (16 channels: 1.0 ms for a 34 × 512 strip, against
    0.4 ms copied to dense memory first; 32 channels: 0.35 ms as it is)."""
    h = conv(x)
    half = h.shape[1] // 2
    x1 = h[:, :half]
    if half < 32:
        x1 = x1.contiguous(memory_format=CHANNELS_LAST)
    return F.gelu(x1) * h[:, half:]


def _nhwc_flat(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) channels-last -> (B, H·W, C), a view."""
    b, c = x.shape[:2]
    return x.permute(0, 2, 3, 1).reshape(b, -1, c)


def _attention_block(block: nn.Module, x: torch.Tensor, tail: nn.Module, rows: int) -> torch.Tensor:
    """``x + attn(norm1(x))``, then ``+ tail(norm2(·))`` (RestormerBlock: ffn; LiteTransformerBlock: mlp)."""
    attn: ChannelAttention = block.attn
    b, c, height, width = x.shape
    heads = attn.num_heads
    ch = c // heads
    gram = x.new_zeros((b, 2 * c, 2 * c))
    v = torch.empty((b, c, height, width), dtype=x.dtype, device=x.device, memory_format=CHANNELS_LAST)
    qkv_fn = qkv_function(attn)
    r_qkv = receptive_radius(attn.qkv, attn.qkv_dwconv)
    # pass 1: the global sums of the channel attention over all pixels, as one Gram matrix of the (q, k)
    # channels: its off-diagonal block is q kᵀ, its diagonal the squared norms of q and k
    for start, stop in _spans(height, rows):
        lo, hi = max(0, start - r_qkv), min(height, stop + r_qkv)
        qkv = qkv_fn(block.norm1(_strip(x, lo, hi)))[..., start - lo: start - lo + stop - start, :]
        qk = _nhwc_flat(qkv[:, :2 * c])
        gram += qk.transpose(1, 2) @ qk
        v[..., start:stop, :] = qkv[:, 2 * c:]
    diag = gram.diagonal(dim1=1, dim2=2)
    sq_q, sq_k = diag[:, :c].reshape(b, heads, ch), diag[:, c:].reshape(b, heads, ch)
    gram = torch.stack([gram[:, h * ch:(h + 1) * ch, c + h * ch:c + (h + 1) * ch] for h in range(heads)], dim=1)
    # F.normalize divides by max(norm, 1e-12); (q/|q|)(k/|k|)ᵀ = q kᵀ / (|q| |k|ᵀ)
    norm_q = sq_q.sqrt().clamp_min(1e-12)
    norm_k = sq_k.sqrt().clamp_min(1e-12)
    maps = (gram / (norm_q[..., :, None] * norm_k[..., None, :]) * attn.temperature).softmax(dim=-1)
    # project_out (1×1) after the per-head maps is one (C × C) matrix per image: P · blockdiag(maps); on NHWC
    # rows it applies transposed
    proj = _conv2d(attn.project_out)
    weight = proj.weight.reshape(c, c)
    mix_t = torch.stack([(weight @ torch.block_diag(*maps[i])).T for i in range(b)])
    bias = proj.bias
    # pass 2, per image and strip: y = x + v · mix (+ bias) as one GEMM, then y + project_out(gated(norm2(y))),
    # the last 1×1 conv and the residual again one GEMM written straight into the output rows (no halo rows,
    # no copy)
    out = torch.empty((b, c, height, width), dtype=x.dtype, device=x.device, memory_format=CHANNELS_LAST)
    r_tail = receptive_radius(tail)
    final = _conv2d(tail.project_out)
    final_t = final.weight[:, :, 0, 0].T
    for i in range(b):
        for start, stop in _spans(height, rows):
            lo, hi = max(0, start - r_tail), min(height, stop + r_tail)
            y = torch.baddbmm(_nhwc_flat(x[i:i + 1, :, lo:hi]), _nhwc_flat(v[i:i + 1, :, lo:hi]), mix_t[i:i + 1])
            if bias is not None:
                y += bias
            y_nchw = y.view(1, hi - lo, width, c).permute(0, 3, 1, 2)
            gated = _nhwc_flat(_gated(tail.dwconv, _pointwise(tail.project_in, block.norm2(y_nchw))))
            first, last = (start - lo) * width, (stop - lo) * width
            dest = _nhwc_flat(out[i:i + 1, :, start:stop])[0]
            torch.addmm(y[0, first:last], gated[0, first:last], final_t, out=dest)
            if final.bias is not None:
                dest += final.bias
    return out


def _blocks(blocks: nn.Module, x: torch.Tensor, rows: int) -> torch.Tensor:
    for block in blocks:
        x = _attention_block(block, x, block.ffn if hasattr(block, "ffn") else block.mlp, rows)
    return x


def fuse_in_strips(net: nn.Module, ct: torch.Tensor, mr: torch.Tensor, rows: int = STRIP_ROWS) -> torch.Tensor:
    """``net.fuse_images(ct, mr)[0]`` (no padding) computed strip by strip, channels-last; see the module docstring.

    Args:
        net: a :class:`~multimodalseg.nets.cddfuse.CDDFuse` in eval mode.
        ct, mr: (B, in_channels, H, W) slices scaled to [0, 1].
        rows: rows per strip.

    Returns:
        The fused slices, (B, out_channels, H, W) in [0, 1].
    """
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    enc, dec = net.encoder, net.decoder
    # the modalities one at a time through the shared encoder: a strip of one image is dense in memory (of a
    # batch it is not), so the convs get channels-last input without a copy
    base = detail = None
    for image in (ct, mr):
        embed = strip_map(lambda t: enc.patch_embed(t).contiguous(memory_format=CHANNELS_LAST), (image,),
                          receptive_radius(enc.patch_embed), rows)
        shared = _blocks(enc.shared, embed, rows)
        b_i = _blocks([enc.base], shared, rows)
        d_i = strip_map(enc.detail, (shared,), receptive_radius(enc.detail), rows)
        base, detail = (b_i, d_i) if base is None else (base.add_(b_i), detail.add_(d_i))
        del embed, shared, b_i, d_i
    fused_base = _blocks([net.base_fusion], base, rows)
    fused_detail = strip_map(net.detail_fusion, (detail,), receptive_radius(net.detail_fusion), rows)
    y = strip_map(lambda b, d: dec.reduce(torch.cat((b, d), dim=1)), (fused_base, fused_detail), 0, rows)
    y = _blocks(dec.blocks, y, rows)
    residual = net.residual_image(ct, mr)
    if residual is None:
        out = strip_map(lambda t: torch.sigmoid(dec.output(t)), (y,), receptive_radius(dec.output), rows)
    else:
        out = strip_map(lambda t, r: torch.sigmoid(dec.output(t) + r), (y, residual), receptive_radius(dec.output),
                        rows)
    return out.contiguous()
