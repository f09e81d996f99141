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


class LoopCheckpoint:
    """The resumable state of an iteration loop without epochs (the spine recipes' fusion and MCF stages).

    Every ``every`` iterations (and after the last) the loop saves its modules, optimisers, its sampler's numpy
    generator, the global random states and the log rows so far; :meth:`restore` puts them back and returns the
    iteration to continue from, so a resumed stage goes on where it stopped and ends as an uninterrupted one.

    Args:
        path: ``RUN/<stage>/checkpoints/last.pt``; None: never saved.
        every: iterations between saves.
        resume: restore from ``path`` when it exists.
    """

    def __init__(self, path: str | os.PathLike | None, every: int = 200, resume: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.every = max(1, int(every))
        self.resume = resume

    def restore(self, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                rng: np.random.Generator) -> tuple[int, list[dict[str, float]]]:
        """(first iteration to run, log rows of the iterations already run); (0, []) for a fresh loop."""
        if not (self.resume and self.path is not None and self.path.exists()):
            return 0, []
        state = load_checkpoint(self.path)
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        rng.bit_generator.state = _generator_state(state["generator"])
        set_rng_state(state["rng"])
        return int(state["iteration"]) + 1, list(state["history"])

    def maybe_save(self, iteration: int, last: int, modules: dict[str, torch.nn.Module],
                   optimizers: dict[str, torch.optim.Optimizer], rng: np.random.Generator,
                   history: list[dict[str, float]]) -> None:
        if self.path is None or ((iteration + 1) % self.every and iteration != last):
            return
        generator = rng.bit_generator.state
        save_checkpoint(self.path, {
            "iteration": iteration, "history": history,
            "modules": {n: m.state_dict() for n, m in modules.items()},
            "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
            # 128-bit generator words as decimal strings: weights_only loading takes plain types only
            "generator": {"bit_generator": generator["bit_generator"],
                          "state": {k: str(v) for k, v in generator["state"].items()},
                          "has_uint32": int(generator["has_uint32"]), "uinteger": int(generator["uinteger"])}})


def _generator_state(saved: dict[str, Any]) -> dict[str, Any]:
    return {"bit_generator": saved["bit_generator"], "state": {k: int(v) for k, v in saved["state"].items()},
            "has_uint32": saved["has_uint32"], "uinteger": saved["uinteger"]}
