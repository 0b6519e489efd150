"""AdamW and the reference's learning-rate curve (SPEC §3.2), kept exact because reported numbers depend on it.

The reference steps timm's ``CosineLRScheduler`` per micro-batch index ``t = epoch·L + idx`` (L = micro-batches
per epoch per process), *after* each optimiser step, with a linear warmup from 0 and a cosine that is **not**
shifted by the warmup (quirk 30). So the first optimiser step runs at LR 0, and the LR drops at the end of the
warmup to the cosine's value there (≈0.51·LR for 10 epochs). ``schedule: shifted`` gives the usual curve instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ..errors import VificlipError
from .config_schema import OptimConfig


def param_groups(model: nn.Module, weight_decay: float, no_decay_group: bool) -> list[dict]:
    """Trainable parameters; the reference decays every one of them (quirk 31), optionally not 1-D ones."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not no_decay_group:
        return [{"params": [p for _, p in named], "weight_decay": weight_decay}]
    # Biases, norm scales and the logit scale are 1-D or scalars: decaying them only shrinks them toward 0.
    decay = [p for n, p in named if p.ndim >= 2 and not n.endswith(".bias")]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and not n.endswith(".bias"))]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_group)
    params = [p for g in groups for p in g["params"]]
    if not params:
        raise VificlipError("the model has no trainable parameters for this variant")
    fused = cfg.fused if cfg.fused is not None else all(p.is_cuda for p in params)
    # Fused kernels on the GPU; elsewhere the multi-tensor (foreach) path, not torch's per-tensor default on CPU.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused or None,
                             foreach=None if fused else True)  # fmt: skip


class LRSchedule:
    """Per-micro-batch warmup + cosine; ``lr_at(t)`` is the pure formula, ``step(t)`` applies it.

    Args:
        steps_per_epoch: micro-batches per epoch per process (the reference's ``len(train_loader)``).
        kind: ``reference`` (un-shifted cosine) or ``shifted`` (cosine over the steps after the warmup).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, epochs: int, steps_per_epoch: int,
                 warmup_epochs: float, lr_min_ratio: float = 0.01, kind: str = "reference") -> None:  # fmt: skip
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.lr_min = base_lr * lr_min_ratio
        self.total = epochs * steps_per_epoch
        self.warmup = int(round(warmup_epochs * steps_per_epoch))
        self.kind = kind
        self.last_t: int | None = None
        self._set(self.initial_lr())

    def initial_lr(self) -> float:
        """The LR of the first optimiser step: timm's ``warmup_lr_init`` (0) when there is a warmup."""
        return 0.0 if self.warmup > 0 else self.lr_at(0)

    def lr_at(self, t: int) -> float:
        if t < self.warmup:
            return self.base_lr * t / self.warmup
        if self.kind == "shifted":
            t, total = t - self.warmup, max(self.total - self.warmup, 1)
        else:
            total = max(self.total, 1)
        if t >= total:
            return self.lr_min
        return self.lr_min + 0.5 * (self.base_lr - self.lr_min) * (1 + math.cos(math.pi * t / total))

    def step(self, t: int) -> float:
        """Called right after the optimiser step taken at micro-batch ``t``; sets the LR of the next step."""
        self.last_t = t
        return self._set(self.lr_at(t))

    def current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _set(self, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return {"last_t": self.last_t, "total": self.total, "warmup": self.warmup, "kind": self.kind}

    def load_state_dict(self, state: dict) -> None:
        self.last_t = state["last_t"]
        self._set(self.initial_lr() if self.last_t is None else self.lr_at(self.last_t))


def steps_after(micro: int, accumulation_steps: int) -> bool:
    """Whether the optimiser steps after micro-batch ``micro`` of an epoch (the reference's rule, SPEC §3.4)."""
    return (micro + 1) % accumulation_steps == 0


def optimizer_step_indices(steps_per_epoch: int, accumulation_steps: int) -> Iterable[int]:
    """Micro-batch indices within an epoch after which the optimiser steps (leftovers are dropped, SPEC §3.4)."""
    return (i for i in range(steps_per_epoch) if steps_after(i, accumulation_steps))


def clip_gradients(model: nn.Module, max_norm: float | None) -> float | None:
    if max_norm is None:
        return None
    params = [p for p in model.parameters() if p.grad is not None]
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
