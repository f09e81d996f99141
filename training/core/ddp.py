"""Distributed data parallel through ``torchrun``: process group, device, sampler, model wrapper, reductions.

``torchrun --nproc_per_node=N -m training fit ...`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them
everything here is the single-process identity. Backend: NCCL on CUDA, gloo on CPU. Only rank 0 writes logs,
checkpoints and bundles; the global batch of the config is split evenly over the processes, so one config gives
the same optimisation on 1 or N processes (``tests/training/test_ddp.py`` checks the weights agree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from multimodalseg.errors import UserError
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``; a UserError for an unusable choice."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device '{name}' asked for, but no CUDA device is available (use --device cpu)")
        device = torch.device(name)
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise UserError(f"device '{name}' does not exist ({torch.cuda.device_count()} CUDA devices)")
        return device
    if name != "cpu":
        raise UserError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)")
    return torch.device("cpu")


def init_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group when launched by ``torchrun``; a single-process context otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, device)


def local_batch_size(global_batch: int, ctx: DistContext) -> int:
    if global_batch % ctx.world_size:
        raise UserError(f"train.batch_size {global_batch} cannot be split evenly over {ctx.world_size} processes")
    return global_batch // ctx.world_size


def wrap_model(model: torch.nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> torch.nn.Module:
    """DDP wrapper in a distributed run (``find_unused_parameters`` for modality-conditioned norms), else as is."""
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(sync_batchnorm(model, ctx), device_ids=ids,
                                   find_unused_parameters=find_unused_parameters)


def sync_batchnorm(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """BatchNorm statistics over all GPUs of a distributed CUDA run (DMFNet's batch 8 spans 8 GPUs); else as is.

    The conversion keeps the parameter objects, so an optimiser built before it still holds the right ones.
    """
    if not (ctx.distributed and ctx.device.type == "cuda"):
        return model
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    """The mean of ``value`` over the processes."""
    if not ctx.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world_size


def broadcast_floats(values: list[float], ctx: DistContext) -> list[float]:
    """Rank 0's ``values`` on every process (decisions such as early stopping must agree)."""
    if not ctx.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.broadcast(tensor, src=0)
    return [float(v) for v in tensor.tolist()]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
