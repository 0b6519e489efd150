"""The paper's global batch on any number of processes (SPEC §3.4): gradient accumulation derived, not configured.

The reference fixes the per-GPU batch and the accumulation and assumes 8 GPUs; its LR is absolute, so fewer GPUs
silently train with a smaller effective batch. Presets here state ``train.global_batch`` instead, and the engine
derives the accumulation for the world it runs in; an explicit ``train.accumulation_steps`` still wins.
"""

from __future__ import annotations

import logging

from .config_schema import ConfigError, RunConfig

log = logging.getLogger(__name__)


def derive_accumulation(global_batch: int, per_device_batch: int, world_size: int) -> int:
    """Micro-batches per optimiser step so that world_size × per_device_batch × steps = global_batch."""
    per_step = per_device_batch * world_size
    if global_batch % per_step:
        raise ConfigError(
            f"train.global_batch: {global_batch} is not a multiple of {world_size} process"
            f"{'es' if world_size > 1 else ''} × train.batch_size {per_device_batch} = {per_step}; choose a "
            f"batch_size (or number of processes) whose product divides {global_batch}, or set "
            "train.accumulation_steps explicitly"
        )
    return global_batch // per_step


def accumulation_steps(cfg: RunConfig, world_size: int) -> int:
    """The accumulation a run uses: explicit ``train.accumulation_steps``, else derived from ``global_batch``
    (1 when neither is set). An explicit value that misses the global batch logs what it changes: the LR is
    absolute (SPEC §3.4), so a smaller effective batch takes more, noisier optimiser steps per epoch."""
    t = cfg.train
    if t.accumulation_steps is None:
        return 1 if t.global_batch is None else derive_accumulation(t.global_batch, t.batch_size, world_size)
    ours = world_size * t.batch_size * t.accumulation_steps
    if t.global_batch is not None and ours != t.global_batch:
        log.warning("train.accumulation_steps=%d overrides train.global_batch=%d: effective batch %d processes × "
                    "%d × %d = %d, so each epoch takes %.3g× the optimiser steps of the reference, at the same LR "
                    "(drop the override to keep %d)", t.accumulation_steps, t.global_batch, world_size,
                    t.batch_size, t.accumulation_steps, ours, t.global_batch / ours, t.global_batch)  # fmt: skip
    return t.accumulation_steps
