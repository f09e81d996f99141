"""Conditional instance normalisation keyed by modality (MI-Seg, METHODS §D.2, §D.5 option 2).

One network serves CT and MR: each conditional norm instance-normalises its input per sample and channel, then
applies the affine γ[m], β[m] of that sample's modality m (CT = 0, MR = 1, the order of the task's
``modalities``). Instead of copying MONAI's network sources as MI-Seg did, :func:`make_conditional` swaps the norm
layers of a stock MONAI network (``InstanceNorm*d`` in conv blocks, ``LayerNorm`` in ViT/Swin blocks) for
:class:`ConditionalInstanceNorm` layers that read the modality from a :class:`ModalityContext` shared with a
:class:`ModalityConditioned` wrapper, whose ``forward(x, modality=...)`` sets it. Unused norms (none of the
batch's modality) get no gradient: DDP needs ``find_unused_parameters=True``.

Modality per sample and sliding windows: MONAI's ``sliding_window_inference`` forwards extra keyword arguments
unchanged to every window batch, so ``modality`` may be one id (an int or a 1-element tensor, broadcast to every
window), a tensor of ids all equal (broadcast too), or one id per row of the batch the network sees. For a batch
of images of different modalities, pass ``with_coord=True``: MONAI then gives the predictor each window's slices,
whose first entry is the image's batch index, and the wrapper picks that image's modality (exact for any
``sw_batch_size``)::

    sliding_window_inference(x, roi, 4, net, with_coord=True, modality=torch.tensor([0, 1]))

Without ``with_coord`` a tensor of mixed ids must have one id per row of what the network receives; a mixed
2-image batch with ``sw_batch_size=2`` would pair them with two windows of the first image, which cannot be
detected here (MI-Seg's pitfall, METHODS §D.4). One image per call, as the inference engine runs, is always safe.

Example:
    >>> net = cin_unet(3, 1, 8, channels=(8, 16, 32), strides=(2, 2))
    >>> net(torch.zeros(2, 1, 32, 32, 32), modality=torch.tensor([0, 1])).shape
    torch.Size([2, 8, 32, 32, 32])
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from monai.networks.blocks.transformerblock import TransformerBlock
from monai.networks.nets import UNETR, SwinUNETR, UNet
from torch import nn

Scope = Literal["encoder", "all"]
ModalityArg = int | torch.Tensor | Sequence[int] | None


class ModalityContext:
    """The modality ids (B,) of the batch a conditional network is running; set around each forward."""

    def __init__(self) -> None:
        self.modality: torch.Tensor | None = None


class ConditionalInstanceNorm(nn.Module):
    """y = γ[m] · IN(x) + β[m]: instance norm with one affine per modality (per sample m).

    Statistics are always per sample and channel over all spatial positions (no running statistics), in training
    and evaluation alike, as MI-Seg's ``_ConditionalInstanceNorm(track_running_stats=False)``. γ starts at 1 and
    β at 0 for every modality unless ``init_from`` gives the affine of the layer it replaces.

    Args:
        num_features: channels C.
        num_modalities: number of modalities S. Default 2 (CT, MR).
        eps: added to the variance. Default 1e-5.
        channels_last: the input is (B, *S, C) (ViT tokens (B, N, C), Swin maps (B, D, H, W, C)) instead of
            (B, C, *S); each channel is then normalised over the tokens/voxels, MI-Seg's C-ViT statistic.
        context: where the modality is read when ``forward`` gets none.
        init_from: a norm layer whose ``weight``/``bias`` initialise every modality's γ/β (pretrained weights).

    Shapes: (B, C, *S) or (B, *S, C) -> same.
    """

    def __init__(
        self,
        num_features: int,
        num_modalities: int = 2,
        *,
        eps: float = 1e-5,
        channels_last: bool = False,
        context: ModalityContext | None = None,
        init_from: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if num_features < 1 or num_modalities < 1:
            raise ValueError(f"num_features ({num_features}) and num_modalities ({num_modalities}) must be >= 1")
        self.num_features, self.num_modalities = num_features, num_modalities
        self.eps, self.channels_last, self.context = eps, channels_last, context
        self.weight = nn.Parameter(torch.ones(num_modalities, num_features))
        self.bias = nn.Parameter(torch.zeros(num_modalities, num_features))
        with torch.no_grad():
            if getattr(init_from, "weight", None) is not None:
                self.weight.copy_(init_from.weight.detach().reshape(1, -1).expand_as(self.weight))
            if getattr(init_from, "bias", None) is not None:
                self.bias.copy_(init_from.bias.detach().reshape(1, -1).expand_as(self.bias))

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_modalities={self.num_modalities}, channels_last={self.channels_last}"

    def forward(self, x: torch.Tensor, modality: torch.Tensor | None = None) -> torch.Tensor:
        if modality is None:
            modality = None if self.context is None else self.context.modality
            if modality is None:
                raise RuntimeError("conditional instance norm called without a modality (call the network with "
                                   "forward(x, modality=...))")
        if modality.shape != (x.shape[0],):
            raise ValueError(f"modality has shape {tuple(modality.shape)}, expected ({x.shape[0]},)")
        if self.channels_last:
            x = x.movedim(-1, 1)
        if x[0, 0].numel() < 2:  # a single position normalises to 0: the features would be lost
            raise ValueError(f"conditional instance norm needs more than one position per channel, got input "
                             f"{tuple(x.shape)} (for SwinUNETR use inputs of at least 64 voxels per axis)")
        y = F.instance_norm(x, eps=self.eps)
        shape = (x.shape[0], self.num_features) + (1,) * (x.ndim - 2)
        y = y * self.weight[modality].view(shape).to(y.dtype) + self.bias[modality].view(shape).to(y.dtype)
        return y.movedim(1, -1) if self.channels_last else y


def resolve_modality(
    modality: ModalityArg, batch: int, num_modalities: int, device: torch.device | None = None,
    window_slices: Sequence[Sequence[slice]] | None = None,
) -> torch.Tensor:
    """The modality id of each of ``batch`` rows as a LongTensor (B,), checked (see the module docstring)."""
    if modality is None:
        raise ValueError("this network is conditioned on the modality: call it with modality=<id> "
                         f"(0..{num_modalities - 1}, e.g. CT 0, MR 1)")
    ids = torch.as_tensor(modality, dtype=torch.long, device=device).flatten()
    if ids.numel() == 0:
        raise ValueError("modality is empty")
    if ids.numel() == 1:
        return _check_range(ids.expand(batch).contiguous(), num_modalities)
    if window_slices is not None:  # sliding_window_inference(with_coord=True): slice 0 holds the image index
        rows = [int(s[0].start or 0) for s in window_slices]
        if len(rows) != batch or max(rows) >= ids.numel():
            raise ValueError(f"{len(rows)} windows of images {sorted(set(rows))} for {batch} rows and "
                             f"{ids.numel()} modality ids")
        ids = ids[torch.as_tensor(rows, device=ids.device)]
    elif ids.numel() != batch and bool((ids == ids[0]).all()):
        ids = ids[:1].expand(batch)  # one modality for every row (e.g. every window of one image)
    elif ids.numel() != batch:
        raise ValueError(f"{ids.numel()} different modality ids for a batch of {batch}: give one id per row, one "
                         "id for all, or use sliding_window_inference(..., with_coord=True)")
    return _check_range(ids.contiguous(), num_modalities)


def _check_range(ids: torch.Tensor, num_modalities: int) -> torch.Tensor:
    if int(ids.min()) < 0 or int(ids.max()) >= num_modalities:
        raise ValueError(f"modality ids must be in 0..{num_modalities - 1}, got {sorted(set(ids.tolist()))}")
    return ids


def run_with_modality(
    context: ModalityContext, fn: Callable[[], Any], modality: ModalityArg, batch: int, num_modalities: int,
    device: torch.device, window_slices: Sequence[Sequence[slice]] | None = None,
) -> Any:
    """Call ``fn()`` with ``context`` set to the resolved modality ids, and clear it afterwards."""
    context.modality = resolve_modality(modality, batch, num_modalities, device, window_slices)
    try:
        return fn()
    finally:
        context.modality = None


def _is_instance_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d))


def swap_norms(
    net: nn.Module,
    context: ModalityContext,
    num_modalities: int = 2,
    *,
    include: Callable[[str], bool] = lambda name: True,
    instance_norms: bool = True,
    layer_norms: bool = False,
) -> list[str]:
    """Replace norm layers of ``net`` in place by :class:`ConditionalInstanceNorm`; returns the replaced names.

    Args:
        net: any network; its ``InstanceNorm*d`` (``instance_norms``) and 1D-shaped ``LayerNorm`` layers
            (``layer_norms``: channel-last ViT/Swin norms) whose qualified name passes ``include`` are swapped.
        context: the modality source shared by all swapped norms.
        num_modalities: S.
    """
    replaced = []
    for name, module in list(net.named_modules()):
        if not name or not include(name):
            continue
        if instance_norms and _is_instance_norm(module):
            new = ConditionalInstanceNorm(module.num_features, num_modalities, eps=module.eps, context=context,
                                          init_from=module if module.affine else None)
        elif layer_norms and isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
            parent_name, _, attr = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            if isinstance(parent, TransformerBlock) and attr == "norm_cross_attn" and not parent.with_cross_attention:
                continue  # MONAI builds it even without cross-attention; it is never called
            new = ConditionalInstanceNorm(module.normalized_shape[0], num_modalities, eps=module.eps,
                                          channels_last=True, context=context,
                                          init_from=module if module.elementwise_affine else None)
        else:
            continue
        net.set_submodule(name, new)
        replaced.append(name)
    return replaced


class ModalityConditioned(nn.Module):
    """A network whose conditional norms get their modality from ``forward(x, modality=...)``.

    Args:
        net: the network, its norms already swapped with :func:`swap_norms` on ``context``.
        context: the context those norms read.
        num_modalities: S, for checking the ids.

    Shapes: ``forward(x (B, C_in, *S), window_slices=None, *, modality)`` -> the network's output (logits).
    ``window_slices`` is what ``sliding_window_inference(with_coord=True)`` passes (see the module docstring).
    """

    def __init__(self, net: nn.Module, context: ModalityContext, num_modalities: int = 2) -> None:
        super().__init__()
        if not any(isinstance(m, ConditionalInstanceNorm) and m.context is context for m in net.modules()):
            raise ValueError("the network has no conditional norm reading this context")
        self.net, self.context, self.num_modalities = net, context, num_modalities

    def forward(self, x: torch.Tensor, window_slices: Sequence[Sequence[slice]] | None = None, *,
                modality: ModalityArg = None) -> torch.Tensor:
        return run_with_modality(self.context, lambda: self.net(x), modality, x.shape[0], self.num_modalities,
                                 x.device, window_slices)


def make_conditional(
    net: nn.Module, num_modalities: int = 2, *, include: Callable[[str], bool] = lambda name: True,
    layer_norms: bool = False,
) -> ModalityConditioned:
    """Swap ``net``'s norms (see :func:`swap_norms`) and wrap it; ValueError when nothing was swapped."""
    context = ModalityContext()
    replaced = swap_norms(net, context, num_modalities, include=include, layer_norms=layer_norms)
    if not replaced:
        raise ValueError(f"{type(net).__name__} has no instance/layer norm to condition (build it with "
                         "norm='instance')")
    return ModalityConditioned(net, context, num_modalities)


# MAUNet conditioned every norm before encoder-only became its default; bundles that name no scope were trained so.
LEGACY_MAUNET_SCOPE = "all"
DEFAULT_MAUNET_SCOPE = "encoder"


def _fill_scope(config: Any, scope: str) -> Any:
    if isinstance(config, dict):
        filled = {k: _fill_scope(v, scope) for k, v in config.items()}
        if filled.get("conditional_modality") and "conditional_scope" not in filled:
            filled["conditional_scope"] = scope
        return filled
    return config


def pin_legacy_scope(config: dict[str, Any]) -> dict[str, Any]:
    """A bundle's network config with ``conditional_scope: "all"`` wherever a conditional MAUNet names none.

    Reading side: bundles written before encoder-only became the default do not record the scope.
    """
    return _fill_scope(config, LEGACY_MAUNET_SCOPE)


def pin_current_scope(config: dict[str, Any]) -> dict[str, Any]:
    """Writing side: record today's default scope, so a new bundle never reads as a legacy one."""
    return _fill_scope(config, DEFAULT_MAUNET_SCOPE)


def _scope(scope: Scope, is_encoder: Callable[[str], bool]) -> Callable[[str], bool]:
    if scope not in ("encoder", "all"):
        raise ValueError(f"scope must be 'encoder' or 'all', got {scope!r}")
    return is_encoder if scope == "encoder" else (lambda name: True)


_UNET_LEVEL = re.compile(r"(?:model|submodule)\.(\w+)")


def unet_is_encoder(name: str) -> bool:
    """MONAI ``UNet``: down layers are ``<model|submodule>.0``, the bottom ``submodule.<layer>``, up layers ``.2``."""
    levels = _UNET_LEVEL.findall(name)
    return bool(levels) and levels[-1] != "2"


def _prefix(*prefixes: str) -> Callable[[str], bool]:
    return lambda name: name.split(".")[0] in prefixes


def cin_unet(spatial_dims: int, in_channels: int, out_channels: int, *,
             channels: Sequence[int] = (16, 32, 64, 128, 256), strides: Sequence[int] = (2, 2, 2, 2),
             num_res_units: int = 2, num_modalities: int = 2, scope: Scope = "encoder",
             **kwargs: Any) -> ModalityConditioned:
    """MONAI ``UNet`` with CIN in the down path and bottom (``scope="encoder"``, MI-Seg's best) or everywhere."""
    kwargs.setdefault("norm", "instance")
    net = UNet(spatial_dims, in_channels, out_channels, channels, strides, num_res_units=num_res_units, **kwargs)
    return make_conditional(net, num_modalities, include=_scope(scope, unet_is_encoder))


def cin_unetr(spatial_dims: int, in_channels: int, out_channels: int, *, img_size: Sequence[int] | int,
              num_modalities: int = 2, scope: Scope = "encoder", conditional_vit: bool = True,
              **kwargs: Any) -> ModalityConditioned:
    """MONAI ``UNETR``; ``conditional_vit``: C-ViT, CIN on the tokens before attention and MLP and at the end.

    ``scope`` picks the conv blocks with CIN: ``encoder1..4`` or all (decoders too). The ViT's norms follow
    ``conditional_vit`` alone (MI-Seg's ``vit_norm_name``).
    """
    net = UNETR(in_channels, out_channels, img_size, spatial_dims=spatial_dims, **kwargs)
    convs = _scope(scope, _prefix("encoder1", "encoder2", "encoder3", "encoder4"))
    context = ModalityContext()
    swapped = swap_norms(net, context, num_modalities, include=lambda n: not n.startswith("vit.") and convs(n))
    if conditional_vit:
        swapped += swap_norms(net, context, num_modalities, include=lambda n: n.startswith("vit."),
                              instance_norms=False, layer_norms=True)
    if not swapped:
        raise ValueError("UNETR has no norm to condition with these options (norm_name='instance'?)")
    return ModalityConditioned(net, context, num_modalities)


def _instance_norm_proj_out(self: nn.Module, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    # MI-Seg's C-Swin: the stage outputs are normalised per channel over the voxels, without parameters.
    return F.instance_norm(x) if normalize else x


def cin_swinunetr(spatial_dims: int, in_channels: int, out_channels: int, *, num_modalities: int = 2,
                  scope: Scope = "encoder", conditional_swin: bool = True, **kwargs: Any) -> ModalityConditioned:
    """MONAI ``SwinUNETR``; ``conditional_swin``: C-Swin (CIN for each block's norm1/norm2 on the whole map and
    for patch merging, parameter-free instance norm for the stage outputs). ``scope`` picks the conv blocks:
    ``encoder1..4, encoder10`` or all."""
    net = SwinUNETR(in_channels, out_channels, spatial_dims=spatial_dims, **kwargs)
    convs = _scope(scope, _prefix("encoder1", "encoder2", "encoder3", "encoder4", "encoder10"))
    context = ModalityContext()
    swapped = swap_norms(net, context, num_modalities, include=lambda n: not n.startswith("swinViT.") and convs(n))
    if conditional_swin:
        swapped += swap_norms(net, context, num_modalities, include=lambda n: n.startswith("swinViT."),
                              instance_norms=False, layer_norms=True)
        net.swinViT.proj_out = types.MethodType(_instance_norm_proj_out, net.swinViT)
    if not swapped:
        raise ValueError("SwinUNETR has no norm to condition with these options (norm_name='instance'?)")
    return ModalityConditioned(net, context, num_modalities)
