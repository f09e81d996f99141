"""Run logs: a CSV table (one row per epoch) and TensorBoard events, written by rank 0 only.

(Named ``loggers`` rather than ``logging`` so that no import inside the package can pick it up instead of the
standard library's ``logging``.)
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from training.core.config import LoggingConfig

BASE_COLUMNS = ("epoch", "train_loss", "lr", "seconds", "val_dice_mean")


class RunLogger:
    """Writes ``metrics.csv`` and ``tensorboard/`` events under ``out_dir``.

    Args:
        out_dir: the run folder.
        config: which outputs to write.
        class_names: label or region names; each gets a ``val_dice_<name>`` column.
        enabled: False on DDP ranks other than 0 (nothing is written).
        resume_epoch: when resuming, rows after this epoch (written by the interrupted run) are dropped.
    """

    def __init__(self, out_dir: str | os.PathLike, config: LoggingConfig, class_names: Sequence[str],
                 *, enabled: bool = True, resume_epoch: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.columns = [*BASE_COLUMNS, *(f"val_dice_{_column(n)}" for n in class_names)]
        self.csv_path = self.out_dir / "metrics.csv" if config.csv else None
        self.writer = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.csv_path is not None:
            self._start_csv(resume_epoch)
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=os.fspath(self.out_dir / "tensorboard"), purge_step=resume_epoch)

    def _start_csv(self, resume_epoch: int | None) -> None:
        kept: list[dict[str, str]] = []
        if resume_epoch is not None and self.csv_path.is_file():
            with open(self.csv_path, newline="") as f:
                kept = [row for row in csv.DictReader(f) if int(row["epoch"]) <= resume_epoch]
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)

    def log_epoch(self, epoch: int, values: Mapping[str, float | None]) -> None:
        """One row: ``train_loss``, ``lr``, ``seconds`` and, after a validation, ``val_dice_*`` values."""
        if not self.enabled:
            return
        row = {"epoch": epoch, **{k: v for k, v in values.items() if v is not None}}
        if self.csv_path is not None:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(
                    {k: _cell(v) for k, v in row.items()})
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    group = "val" if key.startswith("val_") else "train"
                    self.writer.add_scalar(f"{group}/{key.removeprefix('val_')}", value, epoch)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def dice_columns(dice: Mapping[str, float]) -> dict[str, float]:
    """``{"ET": 0.8}`` -> ``{"val_dice_ET": 0.8}`` (names made column-safe)."""
    return {f"val_dice_{_column(name)}": value for name, value in dice.items()}


def _column(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _cell(value: object) -> object:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


class IterationLogger:
    """``metrics.csv`` (columns from the first row) and ``tensorboard/`` events for iteration loops (CycleGAN,
    MCF, fusion), whose rows carry their own losses rather than the epoch columns of :class:`RunLogger`."""

    def __init__(self, out_dir: str | os.PathLike, config: LoggingConfig) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / "metrics.csv" if config.csv else None
        self.columns: list[str] | None = None
        self.writer = None
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=os.fspath(self.out_dir / "tensorboard"))

    def log(self, iteration: int, row: Mapping[str, float]) -> None:
        if self.csv_path is not None:
            if self.columns is None:
                self.columns = ["iteration", *row]
                with open(self.csv_path, "w", newline="") as f:
                    csv.writer(f).writerow(self.columns)
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(
                    {"iteration": iteration, **{k: _cell(v) for k, v in row.items()}})
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"train/{key}", value, iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
