"""AdamW settings and the LR at every optimiser step, against SPEC §3.2's formula written out independently."""

from __future__ import annotations

import math

import pytest
import torch

from vificlip.engine.config_schema import OptimConfig
from vificlip.engine.optim import LRSchedule, build_optimizer, optimizer_step_indices
from vificlip.engine.runs import read_metrics
from vificlip.engine.train import train
from vificlip.model import ViFiCLIP


def spec_lr(t: int, lr: float, total: int, warmup: int) -> float:
    """SPEC §3.2: linear warmup from 0, then the cosine over [0, total] (not shifted), lr_min = LR/100."""
    lr_min = lr / 100
    if t < warmup:
        return lr * t / warmup
    if t >= total:
        return lr_min
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * t / total))


def expected_step_lrs(epochs: int, per_epoch: int, acc: int, lr: float, warmup_epochs: int) -> list[float]:
    """The LR each optimiser step runs at: 0 first, then the schedule set after the previous step (t = e·L+idx)."""
    ts = [e * per_epoch + i for e in range(epochs) for i in range(per_epoch) if (i + 1) % acc == 0]
    total, warmup = epochs * per_epoch, warmup_epochs * per_epoch
    return [0.0] + [spec_lr(t, lr, total, warmup) for t in ts[:-1]]


def test_schedule_matches_formula_at_every_step_with_accumulation_and_leftovers():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    epochs, per_epoch, acc = 4, 5, 2  # micro-batch 4 of each epoch is a dropped leftover
    schedule = LRSchedule(opt, 3e-4, epochs, per_epoch, warmup_epochs=1)
    used = []
    for epoch in range(epochs):
        for idx in optimizer_step_indices(per_epoch, acc):
            used.append(opt.param_groups[0]["lr"])
            schedule.step(epoch * per_epoch + idx)
    assert used == pytest.approx(expected_step_lrs(epochs, per_epoch, acc, 3e-4, 1), rel=1e-12, abs=0)
    assert used[0] == 0.0


def test_unshifted_cosine_drops_after_warmup_and_shifted_does_not():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = LRSchedule(opt, 1.0, epochs=10, steps_per_epoch=100, warmup_epochs=5)
    assert reference.lr_at(499) == pytest.approx(499 / 500)
    assert reference.lr_at(500) == pytest.approx(0.505)  # ≈ 0.51·LR for 10 epochs (SPEC §3.2)
    assert reference.lr_at(1000) == pytest.approx(0.01) and reference.lr_at(5000) == pytest.approx(0.01)
    shifted = LRSchedule(opt, 1.0, epochs=10, steps_per_epoch=100, warmup_epochs=5, kind="shifted")
    assert shifted.lr_at(500) == pytest.approx(1.0) and shifted.lr_at(750) == pytest.approx(0.505)
    no_warmup = LRSchedule(opt, 1.0, epochs=1, steps_per_epoch=10, warmup_epochs=0)
    assert no_warmup.initial_lr() == 1.0


def test_real_run_logs_the_formula_lr_at_every_step(toy_task, tmp_path):
    # 12 videos, batch 2 → 6 micro-batches per epoch; accumulation 4 → a step at idx 3, leftovers 4-5 dropped.
    cfg = toy_task.config(tmp_path / "run", {"train.epochs": 3, "train.batch_size": 2, "train.accumulation_steps": 4,
                                             "optim.warmup_epochs": 1, "optim.lr": 5e-4, "data.val_list": None})  # fmt: skip
    train(cfg)
    logged = [row["lr"] for row in read_metrics(cfg.run_dir, "train")]
    assert logged == pytest.approx(expected_step_lrs(3, 6, 4, 5e-4, 1), rel=1e-12, abs=0)


def test_adamw_settings_and_decay_groups(tiny_model: ViFiCLIP):
    opt = build_optimizer(tiny_model, OptimConfig(lr=1e-3))
    (group,) = opt.param_groups
    assert group["betas"] == (0.9, 0.98) and group["eps"] == 1e-8 and group["weight_decay"] == 1e-3
    trainable = [p for p in tiny_model.parameters() if p.requires_grad]
    assert len(group["params"]) == len(trainable)  # every trainable parameter is decayed (quirk 31)
    assert not group.get("fused")  # CPU parameters
    split = build_optimizer(tiny_model, OptimConfig(no_decay_group=True))
    decay, no_decay = split.param_groups
    assert no_decay["weight_decay"] == 0 and all(p.ndim < 2 for p in no_decay["params"])
    assert any(p is tiny_model.clip.logit_scale for p in no_decay["params"])
    tiny_model.set_variant("text")
    text_only = build_optimizer(tiny_model, OptimConfig())
    assert (
        sum(p.numel() for p in text_only.param_groups[0]["params"]) == tiny_model.num_trainable_parameters()
    )


def test_gradient_clipping_caps_the_global_norm():
    from vificlip.engine.optim import clip_gradients

    layer = torch.nn.Linear(3, 2)
    layer.weight.grad = torch.full_like(layer.weight, 3.0)
    layer.bias.grad = torch.full_like(layer.bias, 4.0)
    norm = clip_gradients(layer, 1.0)
    assert norm == pytest.approx((6 * 9 + 2 * 16) ** 0.5)
    total = torch.cat([layer.weight.grad.flatten(), layer.bias.grad]).norm()
    assert float(total) == pytest.approx(1.0, rel=1e-5)
    assert clip_gradients(layer, None) is None
