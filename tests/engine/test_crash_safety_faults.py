"""Training never loses work when stopped or misused: signals, a second writer, non-finite numbers, failed writes,
stale protocol sub-runs. Every fault is injected deterministically (fault hook, monkeypatch, signal to self).

``stopped`` and ``reference`` (tests/engine/conftest.py) are a run interrupted by SIGTERM after optimiser step 4
and an uninterrupted one; a resumed run must end with the uninterrupted run's weights.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
from crashkit import OVERRIDES, Killed, assert_same_weights, signal_after_step, weights, write_config

from vificlip.cli import main
from vificlip.engine import checkpoint as ckpt
from vificlip.engine import protocols, runs
from vificlip.engine import train as train_module
from vificlip.engine.config import ConfigError
from vificlip.engine.train import train
from vificlip.model.loading import load_model


# ---- graceful stop ------------------------------------------------------------------------------------------
def test_sigterm_mid_epoch_saves_a_snapshot_and_resume_gives_identical_weights(stopped, reference):
    root = runs.checkpoint_root(stopped.run_dir)
    assert runs.read_pointer(stopped.run_dir)["dir"] == "step_0000005"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["epoch_000", "step_0000005"]
    state = ckpt.load_training_state(root / "step_0000005")
    assert state["progress"] == {**state["progress"], "epoch": 1, "micro_step": 2, "global_step": 5}
    train(stopped, resume="auto")
    assert_same_weights(weights(stopped.run_dir), reference)
    steps = [row["step"] for row in runs.read_metrics(stopped.run_dir, "train")]
    assert steps == [1, 2, 3, 4, 5, 6]  # honest logs: every step once


def test_second_signal_aborts_at_once_without_saving(toy_task, tmp_path, monkeypatch):
    cfg = toy_task.config(tmp_path / "run", OVERRIDES)
    before = signal.getsignal(signal.SIGINT)
    signal_after_step(monkeypatch, 4, signal.SIGINT, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert runs.latest_checkpoint(cfg.run_dir).name == "epoch_000"  # nothing saved after the second Ctrl-C
    assert signal.getsignal(signal.SIGINT) is before


# ---- one writer ---------------------------------------------------------------------------------------------
def hold_lock(run_dir) -> subprocess.Popen:
    code = ("import sys, time; from vificlip.engine.runs import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(600)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_does_not_block(
    stopped, reference, capsys
):
    holder = hold_lock(stopped.run_dir)
    try:
        with pytest.raises(runs.RunLockedError, match=f"pid {holder.pid} on {socket.gethostname()}"):
            train(stopped, resume="auto")
        assert main(["train", str(write_config(stopped)), "--resume", "auto"]) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err
        # Readers never need the lock and see only complete snapshots.
        assert runs.model_file(stopped.run_dir).parent.name == "step_0000005"
        load_model(runs.model_file(stopped.run_dir))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    leftover = runs.checkpoint_root(stopped.run_dir) / f".tmp-step_0000006-{holder.pid}"
    leftover.mkdir()  # what a writer killed mid-save leaves behind
    train(stopped, resume="auto")  # the kernel dropped the dead holder's lock: a stale lock does not block
    assert_same_weights(weights(stopped.run_dir), reference)
    assert not leftover.exists()  # holding the lock, the new writer knows no other writer is alive


# ---- never save a poisoned model ----------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [("optim.lr", "inf"), ("optim.weight_decay", "nan"),
                                        ("optim.warmup_epochs", float("inf")), ("optim.betas", [0.9, float("nan")]),
                                        ("train.label_smoothing", "nan")])  # fmt: skip
def test_non_finite_numbers_are_rejected_naming_the_key(toy_task, tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"^{key}: must be a finite number"):
        toy_task.config(tmp_path / "run", {key: value})


def test_cli_rejects_lr_inf_before_any_work(toy_task, tmp_path, capsys):
    config = write_config(toy_task.config(tmp_path / "run", OVERRIDES))
    assert main(["train", str(config), "--set", "optim.lr=inf"]) == 2
    assert "optim.lr: must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_nan_update_is_never_saved_and_the_last_good_snapshot_survives(toy_task, tmp_path, monkeypatch):
    cfg = toy_task.config(tmp_path / "run", {**OVERRIDES, "train.save_every_steps": 1})
    real = train_module.clip_gradients
    calls = {"n": 0}

    def poison_step_5(model, max_norm):
        calls["n"] += 1
        if calls["n"] == 5:  # the loss is finite; the update is not (what lr=inf did)
            next(p for p in model.parameters() if p.grad is not None).grad.fill_(float("nan"))
        return real(model, max_norm)

    monkeypatch.setattr(train_module, "clip_gradients", poison_step_5)
    with pytest.raises(ckpt.NonFiniteWeightsError, match="step 5; not saved.*step_0000004 is kept"):
        train(cfg)
    latest = runs.latest_checkpoint(cfg.run_dir, resumable=True)
    assert latest.name == "step_0000004" and runs.read_pointer(cfg.run_dir)["dir"] == "step_0000004"
    assert ckpt.load_training_state(latest)["progress"]["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in weights(cfg.run_dir).values() if v.is_floating_point())


# ---- every failure is one line ------------------------------------------------------------------------------
@pytest.mark.parametrize("where, code, words", [("state", errno.ENOSPC, "no space left on device"),
                                                ("weights", errno.ENOSPC, "no space left on device"),
                                                ("weights", errno.EROFS, "read-only file system")])  # fmt: skip
def test_write_errors_become_one_line_naming_the_path(stopped, monkeypatch, capsys, where, code, words):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(
        ckpt.torch if where == "state" else ckpt, "save" if where == "state" else "save_model", fail
    )
    config = write_config(stopped)
    assert main(["train", str(config), "--resume", "auto"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vificlip train: error: ") and "Traceback" not in "".join(err)
    assert f"checkpoints/epoch_001: cannot write the checkpoint: {words}" in err[-1]
    root = runs.checkpoint_root(stopped.run_dir)
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]  # the half snapshot is gone
    assert runs.latest_checkpoint(stopped.run_dir).name == "step_0000005"  # and the last good one stays


def test_a_read_only_run_folder_is_one_line(toy_task, tmp_path, monkeypatch, capsys):
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(runs.LOCK_FILE):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(runs.os, "open", read_only)
    assert main(["train", str(write_config(toy_task.config(tmp_path / "run", OVERRIDES)))]) == 2
    assert "cannot write the run folder (read-only file system)" in capsys.readouterr().err


# ---- protocol results are never stale -----------------------------------------------------------------------
def test_a_finished_sub_run_with_another_config_is_refused_or_retrained(toy_task, tmp_path, monkeypatch):
    cfg = toy_task.config(tmp_path / "fs", {"train.epochs": 1})
    protocols.run_fewshot({2: protocols._sub(cfg, tmp_path / "fs", "k2")}, tmp_path / "fs")
    other = toy_task.config(tmp_path / "fs", {"train.epochs": 1, "optim.lr": 1e-3})
    with pytest.raises(ConfigError, match=r"fs/k2 was trained with another config.*optim.lr: 0.0001 → 0.001.*"
                                          "--overwrite"):  # fmt: skip
        protocols.run_fewshot({2: protocols._sub(other, tmp_path / "fs", "k2")}, tmp_path / "fs")
    calls = []

    def retrain(run_cfg, **kwargs):
        calls.append((run_cfg.optim.lr, kwargs))
        raise Killed("stop after the call")

    monkeypatch.setattr(protocols, "train", retrain)
    with pytest.raises(Killed):
        protocols.run_fewshot(
            {2: protocols._sub(other, tmp_path / "fs", "k2")}, tmp_path / "fs", overwrite=True
        )
    assert calls == [(1e-3, {"device": "auto", "overwrite": True})]


def test_fewshot_k_list_without_a_dataset_preset_is_refused(toy_task, tmp_path, capsys):
    cfg = toy_task.config(tmp_path / "fs")
    with pytest.raises(ConfigError, match="2,4,8,16 asks for 4 trainings.*without data.dataset"):
        protocols.plan_fewshot(cfg, [2, 4, 8, 16])
    assert list(protocols.plan_fewshot(cfg, [4])[0]) == [4]
    config = write_config(cfg)
    assert main(["run", "fewshot", "--preset", str(config), "--shots", "2,4,8,16"]) == 2
    assert "only one K can run" in capsys.readouterr().err
    assert not (tmp_path / "fs").exists()
