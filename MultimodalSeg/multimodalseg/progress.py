"""Progress events of long-running commands: one JSON object per line on stdout. No torch, no numpy.

Slicer (which must not import torch) and the tests read the lines with :func:`parse_progress_line`.

Events (every object has ``"event"``; batch runs add ``"case"``):

- ``{"event": "started", "task": "brain-tumor", "model": "ID", "version": "V", "device": "cpu", "inputs": {...}}``
- ``{"event": "progress", "fraction": 0.42, "stage": "sliding window"}``: ``fraction`` in [0, 1], never decreasing
  within a run; ``stage`` is one of ``load``, ``preprocess``, ``sliding window``, ``postprocess``, ``write``.
- ``{"event": "warning", "message": "..."}``: e.g. the fallback from CUDA to CPU after an out-of-memory error.
- ``{"event": "finished", "outputs": {"labels": PATH, ...}, "timings": {"load": s, ...}, "volumes_ml": {...}}``
- ``{"event": "error", "message": "...", "code": 2}``
- batch mode only: ``{"event": "skipped", "case": ID, "reason": "..."}`` and, last,
  ``{"event": "summary", "done": [...], "skipped": [...], "failed": {ID: message}}``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any

STAGES = ("load", "preprocess", "sliding window", "postprocess", "write")
ProgressCallback = Callable[[dict[str, Any]], None]


def parse_progress_line(line: str) -> dict[str, Any] | None:
    """The event of one stdout line, or None for any other line (log text, blank, malformed JSON).

    Example:
        >>> parse_progress_line('{"event": "progress", "fraction": 0.5, "stage": "sliding window"}')["fraction"]
        0.5
    """
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        return None
    if obj["event"] == "progress":
        fraction = obj.get("fraction")
        if not isinstance(fraction, (int, float)) or not 0.0 <= float(fraction) <= 1.0:
            return None
    return obj


class JsonLines:
    """Writes each event as one JSON line and flushes, so a reading process sees it at once."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def __call__(self, event: dict[str, Any]) -> None:
        stream = self.stream or sys.stdout
        stream.write(json.dumps(event, default=str) + "\n")
        stream.flush()


class Bar:
    """A tqdm bar on stderr for people at a terminal; warnings and errors are printed as text."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self._bar = None
        self._last = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        from tqdm import tqdm

        stream = self.stream or sys.stderr
        kind = event.get("event")
        if kind == "started":
            self.close()
            label = event.get("case") or event.get("task", "")
            self._bar = tqdm(total=1000, file=stream, desc=str(label), unit="‰", leave=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}]")
            self._last = 0.0
        elif kind == "progress" and self._bar is not None:
            fraction = float(event["fraction"])
            self._bar.set_postfix_str(event.get("stage", ""), refresh=False)
            self._bar.update(max(0, round(1000 * fraction) - round(1000 * self._last)))
            self._last = max(self._last, fraction)
        elif kind == "finished":
            self.close()
        elif kind in ("warning", "error", "skipped"):
            text = event.get("message") or event.get("reason", "")
            (tqdm.write if self._bar is not None else print)(f"{kind}: {text}", file=stream)
            if kind == "error":
                self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def make_reporter(mode: str = "auto") -> ProgressCallback | None:
    """``json``: JSON lines on stdout; ``bar``: tqdm on stderr; ``none``: nothing; ``auto``: bar when stdout is
    a terminal, JSON lines otherwise (a process reading our stdout, such as Slicer)."""
    if mode == "auto":
        mode = "bar" if sys.stdout.isatty() else "json"
    if mode == "json":
        return JsonLines()
    if mode == "bar":
        return Bar()
    if mode == "none":
        return None
    raise ValueError(f"unknown progress mode '{mode}'")


class Stages:
    """Turns stage starts and within-stage fractions into overall ``progress`` events, and times each stage.

    Args:
        callback: receives the events (None: only timing).
        weights: share of the run per stage; fractions are cumulative over ``STAGES`` order.
        span: the part of an outer run this run covers (batch mode: one case of N), as (start, end).
        extra: keys added to every event (batch mode: ``{"case": ID}``).
    """

    DEFAULT_WEIGHTS = {"load": 0.05, "preprocess": 0.1, "sliding window": 0.75, "postprocess": 0.07, "write": 0.03}

    def __init__(self, callback: ProgressCallback | None, weights: dict[str, float] | None = None,
                 span: tuple[float, float] = (0.0, 1.0), extra: dict[str, Any] | None = None) -> None:
        self.callback = callback
        self.weights = weights or self.DEFAULT_WEIGHTS
        self.span = span
        self.extra = extra or {}
        self.timings: dict[str, float] = {}
        self._stage: str | None = None
        self._t0 = 0.0
        self._last = -1.0

    def emit(self, event: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback({**event, **self.extra})

    def start(self, stage: str) -> None:
        self.stop()
        self._stage, self._t0 = stage, time.perf_counter()
        self.update(0.0)

    def stop(self) -> None:
        if self._stage is not None:
            self.update(1.0)
            self.timings[self._stage] = round(self.timings.get(self._stage, 0.0) + time.perf_counter() - self._t0, 4)
            self._stage = None

    def update(self, within: float) -> None:
        """Report that the current stage is ``within`` (0..1) done."""
        if self._stage is None:
            return
        order = list(self.weights)
        before = sum(self.weights[s] for s in order[: order.index(self._stage)])
        total = sum(self.weights.values())
        local = (before + self.weights[self._stage] * min(max(within, 0.0), 1.0)) / total
        fraction = round(self.span[0] + (self.span[1] - self.span[0]) * local, 4)
        if fraction > self._last:  # never decreasing, and no duplicate lines
            self._last = fraction
            self.emit({"event": "progress", "fraction": fraction, "stage": self._stage})
