"""The network pass: MONAI sliding window with Gaussian blending, optional flip TTA, AMP, CUDA OOM fallback.

Memory. MONAI's ``sliding_window_inference`` stitches into a buffer of the whole output, ``K × Z × Y × X`` float32
(PET/MR at 256³: 46 channels, 2.9 GiB). When the caller only needs a reduction of the probabilities per voxel (the
argmax; an ensemble's members' argmax), :func:`predict_probabilities` with ``reduce`` streams instead: it runs the
same windows (MONAI's ``dense_patch_slices`` with MONAI's scan interval, in MONAI's order, each window once), blends
them with MONAI's importance map into a ring buffer of one window's depth along Z, and reduces each Z plane as soon
as no later window touches it. The per-voxel sums are the same additions in the same order as MONAI's, so the
probabilities, and the labels, are identical (tested against ``sliding_window_inference``). Flip TTA averages
whole-volume passes and keeps MONAI's full buffer.

Left-right flips. A flip along the patient's left-right axis turns every Left-* structure into a Right-* one. In
flip TTA the probabilities of the flipped pass are flipped back and, when the axis was the left-right one
(:class:`MirrorSwap`, from the grid's direction matrix through ``tasks.lateral_axis``), the channels of each
Left/Right pair (``TaskSpec.lateral_pairs``) are exchanged, so a left-only structure stays left.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices, get_valid_patch_size
from monai.inferers import sliding_window_inference
from monai.inferers.utils import _get_scan_interval

from multimodalseg.inference.devices import is_out_of_memory
from multimodalseg.tasks.spec import TaskSpec, lateral_axis

Reduce = Callable[[torch.Tensor], torch.Tensor]
# Z planes reduced per step of the streamed stitching: small, so the temporary beside the ring buffer stays small.
_FLUSH_PLANES = 8


@dataclass(frozen=True)
class MirrorSwap:
    """How to undo a left-right mirror on probabilities.

    Args:
        axis: the spatial axis of a ``(Z, Y, X)`` volume that runs along the patient's left-right axis (0..2).
        permutation: channel order exchanging each Left/Right pair (``LateralPairs.permutation``).
    """

    axis: int
    permutation: tuple[int, ...]

    def undo(self, prob: torch.Tensor, flipped_axes: Sequence[int]) -> torch.Tensor:
        """``prob`` ``(B, K, Z, Y, X)`` already flipped back along ``flipped_axes`` (tensor axes, 2..4): the pairs
        swapped when the left-right axis was among them (a flip along another axis keeps left and right)."""
        if 2 + self.axis not in flipped_axes:
            return prob
        return prob[:, list(self.permutation)]


def mirror_swap(task: TaskSpec, direction: Sequence[float], channels: int, members: int = 1) -> MirrorSwap | None:
    """The task's :class:`MirrorSwap` on a grid with ITK ``direction``; None when the task has no Left/Right pairs
    or does not output exclusive labels (regions are not lateral)."""
    pairs = task.lateral_pairs()
    if not pairs or task.output_kind != "labels":
        return None
    return MirrorSwap(lateral_axis(direction), tuple(pairs.permutation(channels, members)))


def tta_mirror_axes(meta: Mapping[str, Any], direction: Sequence[float]) -> tuple[int, ...] | None:
    """The array axes a bundle's TTA may flip on a grid with ITK ``direction``: only the left-right axis when its
    training mirrored left-right only (``augmentation.flip_axes: lateral``: an upside-down brain is an input it never
    saw), else every axis (None)."""
    return (lateral_axis(direction),) if training_flip_axes(meta) == "lateral" else None


def training_flip_axes(meta: Mapping[str, Any]) -> str:
    """The bundle's ``training.augmentation.flip_axes`` (``all`` when it does not say)."""
    return str(((meta.get("training") or {}).get("augmentation") or {}).get("flip_axes") or "all")


@dataclass
class WindowSettings:
    """Sliding-window settings.

    Args:
        roi: window size in array order ``(Z, Y, X)`` voxels (the bundle's patch size, reversed).
        overlap: fraction of a window shared with its neighbour (0.25: PERFORMANCE.md's CPU choice).
        sw_batch_size: windows per forward call (helps on GPU only).
        tta: average over all flips of the spatial axes whose window is longer than 1 voxel (8 in 3D).
        mirror_axes: the array axes (0-2 of ``Z, Y, X``) TTA may flip: those training mirrored
            (:func:`tta_mirror_axes`; nnU-Net's mirror axes); None: every axis.
    """

    roi: tuple[int, int, int]
    overlap: float = 0.25
    sw_batch_size: int = 1
    tta: bool = False
    mirror_axes: tuple[int, ...] | None = None

    def flips(self) -> list[tuple[int, ...]]:
        """Axes (of a ``(B, C, Z, Y, X)`` tensor) to flip per TTA pass; ``()`` is the plain pass."""
        if not self.tta:
            return [()]
        axes = [2 + a for a, r in enumerate(self.roi) if r > 1 and (self.mirror_axes is None or a in self.mirror_axes)]
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
    *,
    mirror: MirrorSwap | None = None,
    reduce: Reduce | None = None,
) -> torch.Tensor:
    """Probabilities ``(K, Z, Y, X)`` float32 on ``stitch_device`` for a normalised ``(C, Z, Y, X)`` image.

    Args:
        mirror: exchange Left/Right channels after a TTA flip along the patient's left-right axis.
        reduce: a per-voxel reduction of the ``(K, z, Y, X)`` probabilities of a few Z planes into ``(M, z, Y, X)``
            (e.g. the argmax as uint8); the result is then ``(M, Z, Y, X)`` and, without TTA, the probabilities of
            the whole volume are never held (the streamed stitching of the module docstring).
    """
    x = torch.from_numpy(np.ascontiguousarray(image))[None].to(device)
    flips = settings.flips()
    amp = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
    with torch.inference_mode(), amp:
        if reduce is not None and flips == [()]:
            return _streamed(net, x, settings, device, stitch_device, reduce)
        total = None
        for axes in flips:
            xi = torch.flip(x, axes) if axes else x
            prob = sliding_window_inference(
                xi, roi_size=settings.roi, sw_batch_size=settings.sw_batch_size, predictor=net,
                overlap=settings.overlap, mode=_mode(settings), sw_device=device, device=stitch_device,
            )
            if axes:
                prob = torch.flip(prob, axes)
                prob = mirror.undo(prob, axes) if mirror is not None else prob
            total = prob if total is None else total.add_(prob)
            del prob
        if len(flips) > 1:
            total.div_(len(flips))  # in place: a second copy of the buffer is what pushed PET/MR past 4 GiB
        probs = total[0].float()
        return reduce(probs) if reduce is not None else probs


def _mode(settings: WindowSettings) -> str:
    return "gaussian" if settings.overlap > 0 else "constant"


def _streamed(net: NetworkInput, x: torch.Tensor, settings: WindowSettings, device: torch.device,
              stitch: torch.device, reduce: Reduce) -> torch.Tensor:
    """MONAI's sliding window, stitched through a ring buffer of ``roi[0]`` Z planes and reduced plane by plane.

    Mirrors ``monai.inferers.sliding_window_inference`` step by step (padding, scan interval, window order,
    importance map, ``prob * weight`` accumulated window after window, division by the summed weights), so the
    result equals its output reduced; only the buffer is ``K × roi_z × Y × X`` instead of ``K × Z × Y × X``.
    """
    roi = tuple(int(r) for r in settings.roi)
    size_ = tuple(x.shape[2:])
    pad: list[int] = []  # as MONAI: symmetric zero padding of axes shorter than the window, last axis first
    for k in range(len(x.shape) - 1, 1, -1):
        diff = max(roi[k - 2] - x.shape[k], 0)
        pad.extend([diff // 2, diff - diff // 2])
    if any(pad):
        x = torch.nn.functional.pad(x, pad=pad, mode="constant", value=0.0)
    size = tuple(max(s, r) for s, r in zip(size_, roi))
    crop = [pad[2 * (2 - d)] for d in range(3)]  # leading pad per axis (z, y, x)
    interval = _get_scan_interval(size, roi, 3, (settings.overlap,) * 3)
    slices = dense_patch_slices(size, roi, interval)
    weight = compute_importance_map(get_valid_patch_size(size, roi), mode=_mode(settings), sigma_scale=0.125,
                                    device=device, dtype=x.dtype)[None, None].to(dtype=x.dtype, device=device)
    weight_stitch = weight.to(stitch)
    depth = roi[0]
    ring: torch.Tensor | None = None
    count = torch.zeros((1, 1, depth, *size[1:]), dtype=x.dtype, device=stitch)
    out: torch.Tensor | None = None
    done = 0  # planes below this are reduced and written

    def flush(upto: int) -> None:
        nonlocal done, out
        while done < upto:
            r = done % depth
            n = min(_FLUSH_PLANES, upto - done, depth - r)
            part = ring[:, :, r:r + n] / count[:, :, r:r + n]
            lo, hi = max(done, crop[0]), min(done + n, crop[0] + size_[0])  # drop padded planes
            if hi > lo:
                part = part[0, :, lo - done:hi - done, crop[1]:crop[1] + size_[1], crop[2]:crop[2] + size_[2]]
                reduced = reduce(part)
                if out is None:
                    out = torch.empty((reduced.shape[0], *size_), dtype=reduced.dtype, device=stitch)
                out[:, lo - crop[0]:hi - crop[0]] = reduced
            ring[:, :, r:r + n].zero_()
            count[:, :, r:r + n].zero_()
            done += n

    def add(buffer: torch.Tensor, values: torch.Tensor, window: tuple[slice, ...]) -> None:
        z0, rest = window[0].start, window[1:]
        r = z0 % depth
        buffer[(slice(None), slice(None), slice(r, depth), *rest)] += values[:, :, :depth - r]
        if r:
            buffer[(slice(None), slice(None), slice(0, r), *rest)] += values[:, :, depth - r:]

    for first in range(0, len(slices), settings.sw_batch_size):
        batch = slices[first:first + settings.sw_batch_size]
        window_data = torch.cat([x[(slice(None), slice(None), *s)] for s in batch]).to(device)
        probs = net(window_data)
        for i, window in enumerate(batch):
            prob = probs[i:i + 1] * weight
            prob = prob.to(stitch)
            flush(window[0].start)  # every window still to come starts at or after this plane
            if ring is None:
                ring = torch.zeros((1, prob.shape[1], depth, *size[1:]), dtype=x.dtype, device=stitch)
            add(ring, prob, window)
            add(count, weight_stitch, window)
        del probs, window_data
    flush(size[0])
    return out


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
