"""DataLoader builder: workers, pinned memory, persistent workers, reproducible per-worker seeding, DDP sharding.

Fixes the reference's hard-coded 16 workers (SPEC quirk 10): the caller chooses, and the defaults follow the
hardware. Batches are dicts of stacked tensors: train ``video`` [B,T,3,S,S], test ``video`` [B,V,T,3,S,S]
(SPEC §2.9), ``label``/``index`` int64 [B], and in test mode ``ok`` bool [B].
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def seed_worker(worker_id: int) -> None:
    """Seed ``random`` and NumPy in a worker from torch's per-worker seed (DataLoader seeds torch itself)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    distributed: bool | None = None,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
) -> DataLoader:
    """A DataLoader whose order and augmentations are a function of ``seed`` (and rank and worker count).

    ``distributed=None`` shards with a ``DistributedSampler`` when torch.distributed is initialised; call
    ``loader.sampler.set_epoch(epoch)`` every epoch so the shuffle changes. In evaluation the sampler pads the
    last shard with repeated items: deduplicate by the batch's ``index`` so every video counts exactly once
    (SPEC quirk 9). ``pin_memory`` defaults to CUDA availability, ``persistent_workers`` to ``num_workers > 0``.
    """
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    # Worker base seeds (and the shuffle when not distributed) come from this generator; ranks differ so their
    # augmentations do too.
    generator = torch.Generator().manual_seed(seed + 1_000_003 * rank)
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=persistent_workers and num_workers > 0,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        generator=generator,
        prefetch_factor=2 if num_workers > 0 else None,
    )
