"""The network pass: MONAI sliding window with Gaussian blending, optional flip TTA, AMP, CUDA OOM fallback."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference

from multimodalseg.inference.devices import is_out_of_memory


@dataclass
class WindowSettings:
    """Sliding-window settings.

    Args:
        roi: window size in array order ``(Z, Y, X)`` voxels (the bundle's patch size, reversed).
        overlap: fraction of a window shared with its neighbour (0.25: PERFORMANCE.md's CPU choice).
        sw_batch_size: windows per forward call (helps on GPU only).
        tta: average over all flips of the spatial axes whose window is longer than 1 voxel (8 in 3D).
    """

    roi: tuple[int, int, int]
    overlap: float = 0.25
    sw_batch_size: int = 1
    tta: bool = False

    def flips(self) -> list[tuple[int, ...]]:
        """Axes (of a ``(B, C, Z, Y, X)`` tensor) to flip per TTA pass; ``()`` is the plain pass."""
        if not self.tta:
            return [()]
        axes = [2 + a for a, r in enumerate(self.roi) if r > 1]
        return [combo for n in range(len(axes) + 1) for combo in itertools.combinations(axes, n)]


@dataclass
class NetworkPass:
    """What a network path (the predictor's sliding window, or a task's cascade) hands back to the predictor.

    Attributes:
        indices: training-index map ``(Z, Y, X)`` on the reference input's grid (task post-processing applied).
        device: where the network finally ran (after any out-of-memory fallback).
        settings: the path's entries of the report's ``settings`` (``roi_zyx``, ``network_spacing``, ...).
        probabilities: ``(K, Z, Y, X)`` float32 on ``probability_grid``, when the predictor keeps them.
        images: further volumes on the reference grid by name (``Result.images``).
        report: further report keys (e.g. ``members`` of an ensemble).
    """

    indices: np.ndarray
    device: torch.device
    settings: dict[str, Any]
    probabilities: np.ndarray | None = None
    probability_grid: sitk.Image | None = None
    images: dict[str, sitk.Image] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def count_windows(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Windows MONAI's ``sliding_window_inference`` runs over a ``shape`` volume (after its padding to ``roi``)."""
    size = [max(s, r) for s, r in zip(shape, roi)]
    interval = [r if r == s else max(1, int(r * (1 - overlap))) for s, r in zip(size, roi)]
    return len(dense_patch_slices(size, roi, interval))


class NetworkInput:
    """Adapts a network to ``(B, C, Z, Y, X)`` windows and returns probabilities.

    Args:
        model: the network (logits out; a tuple/list output is taken as its first element, deep supervision).
        activation: ``"softmax"`` over channels (exclusive labels) or ``"sigmoid"`` (overlapping regions).
        modality: an integer passed as ``forward(x, modality=LongTensor(B))`` to conditional networks; None: not.
        two_d: the network is 2D; windows are ``(B, C, 1, Y, X)`` slices, squeezed before and restored after.
        on_windows: called with the number of windows of each call (progress).
        channels_last: feed windows as ``channels_last_3d`` (only for architectures measured to gain, e.g. SegResNet;
            PERFORMANCE.md §2.6); the model must have been converted too.
        members: the network is an ensemble of this many members whose logits come concatenated along the
            channels (``(B, members * K, ...)``, e.g. MCF's UNet + VNet with ``output="concat"``); the softmax is
            taken per member, so the stitched output holds each member's probabilities (the caller averages them).
    """

    def __init__(self, model: torch.nn.Module, activation: str, modality: int | None = None, two_d: bool = False,
                 on_windows: Callable[[int], None] | None = None, channels_last: bool = False,
                 members: int = 1) -> None:
        self.model, self.activation, self.modality, self.two_d = model, activation, modality, two_d
        self.on_windows = on_windows
        self.channels_last = channels_last and not two_d
        self.members = members

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.two_d:
            x = x[:, :, 0].contiguous()
        elif self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        if self.modality is None:
            out = self.model(x)
        else:
            out = self.model(x, modality=torch.full((x.shape[0],), self.modality, dtype=torch.long, device=x.device))
        if isinstance(out, (list, tuple)):
            out = out[0]
        out = out.float()
        if self.activation == "softmax" and self.members > 1:
            out = torch.softmax(out.unflatten(1, (self.members, -1)), 2).flatten(1, 2)
        else:
            out = torch.softmax(out, 1) if self.activation == "softmax" else torch.sigmoid(out)
        if self.two_d:
            out = out[:, :, None]
        if self.on_windows is not None:
            self.on_windows(x.shape[0])
        return out


def predict_probabilities(
    net: NetworkInput,
    image: np.ndarray,
    settings: WindowSettings,
    device: torch.device,
    stitch_device: torch.device,
    autocast: torch.dtype | None,
) -> torch.Tensor:
    """Probabilities ``(K, Z, Y, X)`` float32 on ``stitch_device`` for a normalised ``(C, Z, Y, X)`` image."""
    x = torch.from_numpy(np.ascontiguousarray(image))[None].to(device)
    flips = settings.flips()
    total = None
    amp = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
    with torch.inference_mode(), amp:
        for axes in flips:
            xi = torch.flip(x, axes) if axes else x
            prob = sliding_window_inference(
                xi, roi_size=settings.roi, sw_batch_size=settings.sw_batch_size, predictor=net,
                overlap=settings.overlap, mode="gaussian" if settings.overlap > 0 else "constant",
                sw_device=device, device=stitch_device,
            )
            prob = torch.flip(prob, axes) if axes else prob
            total = prob if total is None else total.add_(prob)
    return (total / len(flips))[0].float()


def run_with_fallback(
    run: Callable[[torch.device, torch.device], torch.Tensor],
    device: torch.device,
    warn: Callable[[str], None],
) -> tuple[torch.Tensor, torch.device]:
    """Run on ``device``; on CUDA out-of-memory retry with stitching on the CPU, then entirely on the CPU.

    Args:
        run: ``run(compute_device, stitch_device)``.
        warn: told (one line) about each fallback.

    Returns:
        The result and the device the windows finally ran on.
    """
    attempts = [(device, device)]
    if device.type == "cuda":
        attempts += [(device, torch.device("cpu")), (torch.device("cpu"), torch.device("cpu"))]
    for i, (compute, stitch) in enumerate(attempts):
        try:
            return run(compute, stitch), compute
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc) or i == len(attempts) - 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            nxt = attempts[i + 1]
            where = "stitching on the CPU" if nxt[0].type == "cuda" else "running on the CPU"
            warn(f"CUDA out of memory on {compute}; retrying with {where} (slower)")
    raise AssertionError("unreachable")


def crop_margin_voxels(spacing: Sequence[float], margin_mm: float) -> tuple[int, int, int]:
    """A margin of ``margin_mm`` in voxels per array axis ``(z, y, x)`` for ITK-ordered ``spacing``."""
    return tuple(int(math.ceil(margin_mm / s)) for s in tuple(spacing)[::-1])
