"""The paper's global batch on any number of processes (SPEC §3.4): accumulation derived, overrides explained."""

from __future__ import annotations

import logging

import pytest
import torch

from vificlip.engine.batch import accumulation_steps, derive_accumulation
from vificlip.engine.config import ConfigError, load_config
from vificlip.engine.optim import optimizer_step_indices
from vificlip.engine.runs import read_metrics
from vificlip.engine.train import train
from vificlip.model.loading import load_model


@pytest.mark.parametrize(
    ("global_batch", "per_device", "world", "expected"),
    [(512, 4, 1, 128), (512, 4, 2, 64), (512, 4, 8, 16), (256, 4, 1, 64), (256, 4, 2, 32), (256, 4, 8, 8),
     (64, 4, 1, 16), (64, 4, 2, 8), (64, 4, 8, 2), (64, 8, 8, 1)],
)  # fmt: skip
def test_accumulation_keeps_the_global_batch_on_1_2_and_8_processes(
    global_batch, per_device, world, expected
):
    assert derive_accumulation(global_batch, per_device, world) == expected
    assert world * per_device * expected == global_batch


@pytest.mark.parametrize(("per_device", "world"), [(4, 3), (16, 8), (3, 1)])
def test_a_global_batch_that_does_not_divide_is_refused(per_device, world):
    with pytest.raises(ConfigError, match=r"train\.global_batch: 64 is not a multiple of"):
        derive_accumulation(64, per_device, world)


def test_a_batch_size_that_can_never_divide_fails_at_config_time():
    with pytest.raises(
        ConfigError, match=r"train\.global_batch: 64 is not a multiple of train\.batch_size 3, so no number"
    ):
        load_config("b2n_hmdb", ["train.batch_size=3"])
    with pytest.raises(ConfigError, match=r"train\.global_batch: must be ≥ 1 or null"):
        load_config("b2n_hmdb", ["train.global_batch=0"])


@pytest.mark.parametrize(
    ("preset", "total"), [("b2n_hmdb", 64), ("zeroshot_k400_vifi", 256), ("supervised_k400_vifi", 512)]
)
def test_a_preset_on_one_cpu_gets_the_papers_batch_and_optimiser_steps(preset, total):
    cfg = load_config(preset)
    one, eight = accumulation_steps(cfg, 1), accumulation_steps(cfg, 8)
    assert 1 * cfg.train.batch_size * one == 8 * cfg.train.batch_size * eight == total
    videos = 10_000  # optimiser steps per epoch: what the authors' 8 GPUs took
    per_step_one = len(list(optimizer_step_indices(videos // cfg.train.batch_size, one)))
    per_step_eight = len(list(optimizer_step_indices(videos // 8 // cfg.train.batch_size, eight)))
    assert per_step_one == per_step_eight == videos // total


def test_an_explicit_accumulation_overrides_and_says_what_it_changes(caplog):
    cfg = load_config("b2n_hmdb", ["train.accumulation_steps=2"])
    with caplog.at_level(logging.WARNING):
        assert accumulation_steps(cfg, 8) == 2 and not caplog.text  # the authors' own setting: nothing to say
        assert accumulation_steps(cfg, 1) == 2
    assert "overrides train.global_batch=64: effective batch 1 processes × 4 × 2 = 8" in caplog.text
    assert "8× the optimiser steps" in caplog.text
    assert accumulation_steps(load_config("b2n_hmdb", ["train.global_batch=null"]), 4) == 1


def test_global_batch_trains_exactly_like_the_same_accumulation_set_by_hand(toy_task, tmp_path):
    """12 videos, batch 2 per process, global batch 4 → accumulation 2: 3 optimiser steps per epoch."""
    common = {"train.epochs": 1, "train.batch_size": 2, "data.val_list": None, "optim.warmup_epochs": 0}
    derived = toy_task.config(
        tmp_path / "global", {**common, "train.accumulation_steps": None, "train.global_batch": 4}
    )
    by_hand = toy_task.config(tmp_path / "hand", {**common, "train.accumulation_steps": 2})
    a, b = train(derived), train(by_hand)
    steps_a, steps_b = read_metrics(derived.run_dir, "train"), read_metrics(by_hand.run_dir, "train")
    assert len(steps_a) == len(steps_b) == 3
    assert [r["lr"] for r in steps_a] == [r["lr"] for r in steps_b]
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_b)
    start = load_model(toy_task.checkpoint).state_dict()
    assert any(not torch.equal(state_a[k], start[k]) for k in start)  # it trained
