"""Shared by the crash-safety tests: the toy run's overrides, a stand-in for SIGKILL, weights compared, signals."""

from __future__ import annotations

import os

import torch

from vificlip.engine import logging as engine_logging
from vificlip.engine import runs
from vificlip.engine.config import to_yaml
from vificlip.model.loading import load_model

OVERRIDES = {"train.epochs": 2, "data.val_list": None}  # 12 videos, batch 4: 3 optimiser steps per epoch


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the fault point runs (no ``except Exception`` clean-up catches it)."""


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_model(runs.model_file(run_dir)).state_dict()


def assert_same_weights(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key


def signal_after_step(monkeypatch, step: int, *signals: int) -> None:
    """Send ``signals`` to this very process right after optimiser step ``step`` is logged."""
    real = engine_logging.MetricsWriter.write

    def write(self, kind, at, values):
        real(self, kind, at, values)
        if kind == "train" and at == step:
            for signum in signals:
                os.kill(os.getpid(), signum)

    monkeypatch.setattr(engine_logging.MetricsWriter, "write", write)


def write_config(cfg) -> os.PathLike:
    path = cfg.run_dir.parent / f"{cfg.run_dir.name}.yaml"
    path.write_text(to_yaml(cfg))
    return path
