"""Checkpoints: everything needed to resume a run exactly, saved atomically, loaded with ``weights_only=True``.

A checkpoint holds the model, optimiser, scheduler and AMP scaler states, the epoch just finished, the best
validation Dice (and its epoch and metrics), the early-stopping counter, the random states of Python, numpy and
torch (CPU and CUDA), and the run's configuration. Random states are stored as tensors and plain lists so the file
loads without unpickling any code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write

CHECKPOINT_FORMAT = "multimodalseg-checkpoint/1"


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "python": [version, list(internal), gauss_next],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format tag and random states) atomically (``fileutil.atomic_write``)."""
    payload = {"format": CHECKPOINT_FORMAT, "rng": rng_state(), **state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint (``weights_only=True``); a UserError for a missing, damaged or foreign file."""
    p = Path(path)
    if not p.is_file():
        raise UserError("checkpoint not found", p)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged archives
        raise UserError(f"checkpoint cannot be read ({type(exc).__name__}); the file is damaged or not a "
                        "checkpoint", p) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"not a MultimodalSeg training checkpoint (format {CHECKPOINT_FORMAT} expected)", p)
    return payload
