"""DistributedDataParallel set-up from torchrun's environment: NCCL on CUDA, gloo on CPU."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, device for this rank); a plain single process when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def is_main(rank: int) -> bool:
    return rank == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def weights_checksum(model: torch.nn.Module) -> float:
    """A float fingerprint of all parameters, equal on every rank when DDP kept them in sync."""
    with torch.no_grad():
        return float(sum((p.double() * (i % 7 + 1)).sum() for i, p in enumerate(model.parameters())))


def gather_floats(value: float) -> list[float]:
    """The value from every rank, in rank order (just [value] without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return [float(v) for v in out]
