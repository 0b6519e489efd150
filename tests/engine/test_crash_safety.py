"""Training never loses work: every fault is injected deterministically (fault hook, monkeypatch, signal to self).

A shared interrupted run (SIGTERM to this process after optimiser step 4, so it stops with a snapshot at step 5)
is copied into each test, damaged in one way, and resumed; the resumed weights must equal an uninterrupted run's.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch

from vificlip.cli import main
from vificlip.engine import checkpoint as ckpt
from vificlip.engine import logging as engine_logging
from vificlip.engine import protocols, runs
from vificlip.engine import train as train_module
from vificlip.engine.config import ConfigError, to_yaml
from vificlip.engine.distributed import Topology
from vificlip.engine.train import ResumeError, Trainer, TrainingStopped, train
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


@pytest.fixture(scope="module")
def reference(toy_task, tmp_path_factory) -> dict[str, torch.Tensor]:
    cfg = toy_task.config(tmp_path_factory.mktemp("reference") / "run", OVERRIDES)
    torch.set_num_threads(1)
    return {k: v.clone() for k, v in train(cfg).model.state_dict().items()}


@pytest.fixture(scope="module")
def stopped_template(toy_task, tmp_path_factory):
    """A run stopped by SIGTERM after step 4: snapshots epoch_000 (step 3) and step_0000005 (mid-epoch 2)."""
    cfg = toy_task.config(tmp_path_factory.mktemp("stopped") / "run", OVERRIDES)
    torch.set_num_threads(1)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.MonkeyPatch.context() as mp:
        signal_after_step(mp, 4, signal.SIGTERM)
        with pytest.raises(TrainingStopped, match="stopped by SIGTERM.*step 5.*--resume auto") as stopped:
            train(cfg)
    assert stopped.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    return cfg.run_dir


@pytest.fixture
def stopped(stopped_template, toy_task, tmp_path):
    """A private copy of the stopped run and its config."""
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_template, run_dir)
    return toy_task.config(run_dir, OVERRIDES)


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


# ---- never start over silently ------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["deleted", "garbage", "empty", "dangling"])
def test_resume_finds_the_newest_snapshot_whatever_the_pointer_says(stopped, reference, damage, caplog):
    pointer = runs.pointer_path(stopped.run_dir)
    if damage == "deleted":
        pointer.unlink()
    else:
        pointer.write_text(
            {"garbage": "{not json", "empty": "", "dangling": '{"dir": "step_0009999"}'}[damage]
        )
    with pytest.raises(ResumeError, match="already holds checkpoints.*--overwrite"):
        train(stopped)  # a fresh start over checkpoints is refused
    train(stopped, resume="auto")
    said = {
        "deleted": "",
        "garbage": "unreadable pointer",
        "empty": "unreadable pointer",
        "dangling": "last.json names step_0009999 (missing), the newest complete checkpoint is step_0000005",
    }
    assert said[damage] in caplog.text  # says so
    assert "resumed" in caplog.text and "step_0000005" in caplog.text
    assert_same_weights(weights(stopped.run_dir), reference)


def test_damaged_newest_snapshot_falls_back_to_the_previous_one_and_says_so(stopped, reference, caplog):
    newest = runs.checkpoint_root(stopped.run_dir) / "step_0000005"
    state = newest / runs.STATE_FILE
    state.write_bytes(state.read_bytes()[:1000])  # truncated by hand or by a dying disk
    with pytest.raises(runs.RunFolderError, match="state.pt is 1000 bytes.*truncated"):
        ckpt.load_training_state(newest)  # named explicitly: one line, not a traceback
    assert main(["train", str(write_config(stopped)), "--resume", str(newest)]) == 2
    trainer = Trainer(stopped, Topology(), resume="auto")
    assert trainer.resume_from.name == "epoch_000"
    assert "skipping damaged newer checkpoint step_0000005" in caplog.text
    train(stopped, resume="auto")
    assert_same_weights(weights(stopped.run_dir), reference)


def test_truncated_weights_are_never_loaded(stopped):
    model = runs.checkpoint_root(stopped.run_dir) / "step_0000005" / runs.MODEL_FILE
    model.write_bytes(model.read_bytes()[:-10])
    assert runs.latest_checkpoint(stopped.run_dir).name == "epoch_000"  # readers (eval, predict) too
    assert runs.model_file(stopped.run_dir).parent.name == "epoch_000"


def test_no_complete_snapshot_refuses_resume_and_overwrite_starts_over(stopped, reference):
    root = runs.checkpoint_root(stopped.run_dir)
    for snapshot in ("epoch_000", "step_0000005"):
        (root / snapshot / runs.MODEL_FILE).unlink()
    with pytest.raises(ckpt.CheckpointNotFoundError, match="no complete checkpoint.*--overwrite"):
        train(stopped, resume="auto")
    train(stopped, overwrite=True)
    assert_same_weights(weights(stopped.run_dir), reference)
    assert [row["step"] for row in runs.read_metrics(stopped.run_dir, "train")] == [1, 2, 3, 4, 5, 6]


# ---- no window where the pointer names nothing ------------------------------------------------------------
def test_an_epoch_end_after_a_mid_epoch_save_of_the_same_step_gets_its_own_folder(
    toy_task, tmp_path, monkeypatch
):
    # 3 micro-batches, 2 per step: step 1 at micro-batch 2 is saved mid-epoch; the leftover micro-batch adds
    # no step, so the epoch end is the same step 1. On main both were "step_0000001": the old one was deleted
    # before the new one was renamed in.
    cfg = toy_task.config(tmp_path / "run", {**OVERRIDES, "train.epochs": 1, "train.accumulation_steps": 2,
                                             "train.save_every_steps": 1, "output.keep_every": 0})  # fmt: skip
    saved = []
    real = ckpt.save_checkpoint

    def recording(*args, **kwargs):
        saved.append(real(*args, **kwargs))
        return saved[-1]

    monkeypatch.setattr(ckpt, "save_checkpoint", recording)
    train(cfg)
    assert [p.name for p in saved] == ["step_0000001", "epoch_000"]


@pytest.mark.parametrize("stage", ["written", "renamed", "pointed", "rename-in"])
def test_a_kill_at_any_step_of_a_tag_replacement_leaves_a_complete_latest(
    toy_task, tmp_path, monkeypatch, stage
):
    run_dir = tmp_path / "run"
    model = load_model(toy_task.checkpoint)
    first = ckpt.save_checkpoint(run_dir, model, {"n": 1}, "step_0000003", {"last": {"step": 3}})
    with torch.no_grad():
        next(model.parameters()).add_(1.0)

    def kill(at: str) -> None:
        if at == stage:
            raise Killed(stage)

    real_replace = os.replace

    def replace(src, dst):  # between moving an old folder away and renaming the new one in (main's window)
        if stage == "rename-in" and os.path.basename(src).startswith(".tmp-"):
            raise Killed(stage)
        real_replace(src, dst)

    monkeypatch.setattr(ckpt, "fault_hook", kill)
    monkeypatch.setattr(ckpt.os, "replace", replace)
    with pytest.raises(Killed):
        ckpt.save_checkpoint(run_dir, model, {"n": 2}, "step_0000003", {"last": {"step": 3}})
    monkeypatch.undo()
    named = runs.pointer_dir(run_dir)
    assert runs.read_snapshot(named).problem(checksum=True) is None  # `last` names a complete snapshot
    latest = runs.latest_checkpoint(run_dir, resumable=True, checksum=True)
    assert ckpt.load_training_state(latest) == ({"n": 1} if stage in ("written", "rename-in") else {"n": 2})
    assert first.is_dir() and ckpt.load_training_state(first) == {"n": 1}


def test_pruning_spares_other_processes_temporaries_and_the_fallback(toy_task, tmp_path):
    run_dir = tmp_path / "run"
    model = load_model(toy_task.checkpoint)
    foreign = runs.checkpoint_root(run_dir) / ".tmp-step_0000009-999999999"
    foreign.mkdir(parents=True)
    (foreign / "model.safetensors").write_bytes(b"being written by another process")
    for step in (1, 2, 3):
        ckpt.save_checkpoint(
            run_dir, model, {"n": step}, f"step_{step:07d}", {"last": {"step": step}}, keep=False
        )
    names = sorted(p.name for p in runs.checkpoint_root(run_dir).iterdir())
    assert names == [".tmp-step_0000009-999999999", "last.json", "step_0000002", "step_0000003"]


def test_pruning_never_removes_the_newest_complete_snapshot(toy_task, tmp_path):
    run_dir = tmp_path / "run"
    model = load_model(toy_task.checkpoint)
    for step in (1, 2):
        ckpt.save_checkpoint(
            run_dir, model, {"n": step}, f"step_{step:07d}", {"last": {"step": step}}, keep=False
        )
    damaged = runs.checkpoint_root(run_dir) / "step_0000002" / runs.MODEL_FILE
    damaged.write_bytes(damaged.read_bytes()[:100])
    ckpt.prune(run_dir)  # step 1 is now the newest complete one: it stays, and so does the damaged evidence
    assert (runs.checkpoint_root(run_dir) / "step_0000001").is_dir() and damaged.is_file()
    ckpt.save_checkpoint(run_dir, model, {"n": 3}, "step_0000003", {"last": {"step": 3}}, keep=False)
    names = sorted(p.name for p in runs.checkpoint_root(run_dir).iterdir() if p.is_dir())
    assert names == ["step_0000001", "step_0000003"]  # the damaged one went; step 1 is the fallback


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


def test_a_garbage_pointer_named_directly_is_one_line(stopped):
    runs.pointer_path(stopped.run_dir).write_text("{half")
    with pytest.raises(ckpt.CheckpointNotFoundError, match="unreadable pointer"):
        runs.find_checkpoint_dir(runs.pointer_path(stopped.run_dir))
    assert runs.find_checkpoint_dir(stopped.run_dir).name == "step_0000005"  # the run folder still resolves


# ---- honest logs --------------------------------------------------------------------------------------------
def test_files_we_write_get_normal_permissions(stopped):
    old = os.umask(0o022)
    try:
        train(stopped, resume="auto")
    finally:
        os.umask(old)
    root = runs.checkpoint_root(stopped.run_dir)
    for path in (stopped.run_dir / runs.CONFIG_FILE, root / "last.json", root / "epoch_001" / runs.MODEL_FILE,
                 root / "epoch_001" / runs.MANIFEST_FILE, stopped.run_dir / runs.TRAIN_RESULTS_FILE):  # fmt: skip
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path


def test_metrics_are_truncated_to_the_resumed_step(stopped, reference):
    metrics = stopped.run_dir / runs.METRICS_FILE
    rows = metrics.read_text().splitlines(keepends=True)
    extra = json.dumps({"kind": "train", "step": 6, "loss": 9.0}) + "\n"
    metrics.write_text("".join(rows) + extra + '{"kind": "tra')  # logged after the snapshot, then a torn line
    train(stopped, resume="auto")
    train_rows = runs.read_metrics(stopped.run_dir, "train")
    assert [row["step"] for row in train_rows] == [1, 2, 3, 4, 5, 6] and 9.0 not in [
        r["loss"] for r in train_rows
    ]


def test_rows_of_an_attempt_killed_before_its_first_checkpoint_are_dropped(toy_task, tmp_path, reference):
    cfg = toy_task.config(tmp_path / "run", OVERRIDES)
    cfg.run_dir.mkdir()
    (cfg.run_dir / runs.METRICS_FILE).write_text(json.dumps({"kind": "train", "step": 1, "loss": 9.0}) + "\n")
    train(cfg, resume="auto")  # nothing to resume: a fresh start
    assert [row["step"] for row in runs.read_metrics(cfg.run_dir, "train")] == [1, 2, 3, 4, 5, 6]
    assert_same_weights(weights(cfg.run_dir), reference)


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


def write_config(cfg) -> os.PathLike:
    path = cfg.run_dir.parent / f"{cfg.run_dir.name}.yaml"
    path.write_text(to_yaml(cfg))
    return path
