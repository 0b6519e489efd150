"""Process topology: one plain process by default, torchrun (env://) when its variables are set (quirk 7).

``torchrun --nproc_per_node=N`` (and multi-node ``--nnodes/--rdzv-endpoint``) sets RANK, LOCAL_RANK and
WORLD_SIZE; we read them, pick NCCL on CUDA and gloo on CPU, and otherwise run as a single process with no
launcher. Training shards with a DistributedSampler; evaluation shards by ``rank::world`` without padding and
gathers every result, so each video counts exactly once (quirk 9).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from ..errors import VificlipError


@dataclasses.dataclass(frozen=True)
class Topology:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(spec: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """The one device resolver: ``auto`` → CUDA when available, else CPU; anything else must exist here, or a
    :class:`VificlipError` says what this machine has."""
    if str(spec) == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise VificlipError(f"unknown device {str(spec)!r}; expected auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and device.index >= count:
        have = f"only {count} CUDA device(s)" if count else "no CUDA device (or a CPU-only torch)"
        raise VificlipError(
            f"device {str(spec)!r} is not available: this machine has {have}; use --device cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise VificlipError(f"device {str(spec)!r} is not available: no Apple MPS here; use --device cpu")
    return device


def init_distributed(device: str = "auto") -> Topology:
    """Join the torchrun process group if launched by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(minutes=30))
    return Topology(rank, local_rank, world, dev)


def current_topology() -> tuple[int, int]:
    """(rank, world size) of the running process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (one item without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sums over ranks in one collective (the values themselves without a process group).

    The trainer sends (loss, non-finite flag, stop flag) every micro-step: every rank sees the same totals, so
    all stop together at a NaN or a signal, and the logged loss is the mean over ranks.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def shard_indices(num_items: int, rank: int, world_size: int) -> list[int]:
    """Evaluation shard: ``rank, rank+W, …`` with no padding, so shards may differ in size by one."""
    return list(range(rank, num_items, world_size))


class ResumableSampler(DistributedSampler):
    """A DistributedSampler that can start mid-epoch: same permutation (seed + epoch), first ``skip`` dropped.

    Built with explicit ``num_replicas``/``rank`` so that one process uses the very same permutation as N
    ranks together (rank r takes positions r, r+N, …), which is what makes 1×2B and 2×B runs comparable.
    """

    def __init__(
        self, dataset: Sequence, num_replicas: int, rank: int, seed: int, shuffle: bool = True
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)  # fmt: skip
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip
