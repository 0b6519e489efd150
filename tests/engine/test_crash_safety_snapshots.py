"""Training never loses work, on disk: resume finds the newest complete snapshot, pointers and pruning never leave a
window without one, and the logs of a resumed run are honest. Every fault is injected deterministically.

The shared interrupted run (``stopped``, tests/engine/conftest.py: SIGTERM after optimiser step 4, so it stops with
a snapshot at step 5) is copied into each test, damaged in one way, and resumed; the resumed weights must equal an
uninterrupted run's (``reference``).
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from crashkit import OVERRIDES, Killed, assert_same_weights, weights, write_config

from vificlip.cli import main
from vificlip.engine import checkpoint as ckpt
from vificlip.engine import runs
from vificlip.engine.distributed import Topology
from vificlip.engine.train import ResumeError, Trainer, train
from vificlip.model.loading import load_model


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


# ---- a pointer named directly -------------------------------------------------------------------------------
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
