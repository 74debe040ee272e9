"""DistributedDataParallel when launched by `torchrun`; a no-op otherwise.

    torchrun --nproc_per_node 2 -m facedet.train --config yolo_face.yaml

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; rank 0 logs, validates and saves.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the process group if torchrun started us; return this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return device


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every other rank.

    DDP keeps the parameters equal (gradients are averaged) and sends rank 0's buffers at
    the start of each forward, but each rank's last forward then updates its own copy from
    its own images. After this call every rank holds exactly the model rank 0 validates and saves.
    """
    if not dist.is_initialized():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def mean_across_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats over all processes (for logging epoch losses)."""
    if not dist.is_initialized():
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: v / world_size() for k, v in zip(keys, t.tolist())}
