"""Device, precision and thread choices for inference (PERFORMANCE.md §2.7)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from multimodalseg.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        UserError: CUDA asked for but absent, a device index out of range, or an unknown name.
    """
    name = (requested or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"device '{requested}' asked for, but CUDA is not available here; use --device cpu or auto")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UserError(f"device '{requested}' does not exist ({torch.cuda.device_count()} CUDA device(s))")
        return torch.device(name)
    raise UserError(f"unknown device '{requested}' (use auto, cpu, cuda or cuda:N)")


def cpu_has_bf16() -> bool:
    """True when the CPU has bf16 hardware (AVX512_BF16 or AMX); CPU autocast is slow without it."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(requested: str, device: torch.device, meta: Mapping[str, Any]) -> torch.dtype | None:
    """The autocast dtype, or None for fp32.

    ``auto``: on CUDA bf16 where supported, else fp16 (AMP); on CPU fp32, unless the bundle says bf16 was validated
    (``meta["bf16_validated"]``: Dice checked under bf16, PERFORMANCE.md §2.6) and the CPU has bf16 hardware.
    """
    if requested not in PRECISIONS:
        raise UserError(f"unknown precision '{requested}' (use {', '.join(PRECISIONS)})")
    if requested == "fp32":
        return None
    if device.type == "cuda":
        if requested == "fp16":
            return torch.float16
        if requested == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if requested == "fp16":
        raise UserError("fp16 is for CUDA devices; on the CPU use bf16 or fp32")
    if requested == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if meta.get("bf16_validated") and cpu_has_bf16() else None


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else ``$OMP_NUM_THREADS``, else all cores but one (the GUI's)."""
    threads = _requested_threads(threads, max(1, (os.cpu_count() or 2) - 1))
    torch.set_num_threads(threads)
    return threads


def _requested_threads(threads: int | None, default: int) -> int:
    """``threads``, else a positive ``$OMP_NUM_THREADS``, else ``default``; a UserError below 1."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else default
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    return threads


def slice_workers(threads: int | None = None) -> int:
    """How many strip-wise fusion slices run side by side: ``threads`` (``--threads``), else ``$OMP_NUM_THREADS``,
    else every core. Each worker runs one intra-op thread, so the slices scale with the cores (49-51 s against 77 s
    wall for a 512x512x61 spine case on 2 cores) where one slice over several OpenMP threads does not."""
    return _requested_threads(threads, os.cpu_count() or 1)


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error (the dedicated class, or the older RuntimeError text)."""
    return isinstance(exc, torch.OutOfMemoryError) or "CUDA out of memory" in str(exc)
