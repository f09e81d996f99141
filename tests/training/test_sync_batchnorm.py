"""SyncBatchNorm under DDP on CUDA for networks with BatchNorm (the tumour paper config), nothing else changes."""

import torch
from multimodalseg.nets import build_network

from training.core.ddp import DistContext, sync_batchnorm


def test_batchnorm_becomes_sync_batchnorm_only_in_a_distributed_cuda_run():
    net = build_network("dmfnet", spatial_dims=3, in_channels=4, out_channels=3, stem_channels=8, channels=16,
                        groups=4, norm="batch")
    params = list(net.parameters())
    assert sync_batchnorm(net, DistContext()) is net  # one process: untouched
    assert sync_batchnorm(net, DistContext(world_size=2)) is net  # CPU (gloo) has no SyncBatchNorm
    synced = sync_batchnorm(net, DistContext(world_size=2, device=torch.device("cuda", 0)))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert not any(type(m) is torch.nn.BatchNorm3d for m in synced.modules())
    assert all(any(p is q for q in synced.parameters()) for p in params)  # the optimiser's parameters stay
    plain = build_network("dmfnet", spatial_dims=3, in_channels=4, out_channels=3, stem_channels=8, channels=16,
                          groups=4, norm="instance")
    assert sync_batchnorm(plain, DistContext(world_size=2, device=torch.device("cuda", 0))) is plain
