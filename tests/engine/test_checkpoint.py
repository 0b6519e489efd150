"""Checkpoints: atomic writes survive a crash mid-write; resume restores everything, init-from weights only."""

from __future__ import annotations

import pytest
import torch

from vificlip.engine import checkpoint as ckpt
from vificlip.engine import runs
from vificlip.engine.checkpoint import CheckpointNotFoundError
from vificlip.engine.distributed import Topology
from vificlip.engine.train import Trainer, train
from vificlip.model.loading import load_model


def test_crash_while_writing_keeps_the_previous_checkpoint_loadable(toy_task, tmp_path, monkeypatch):
    cfg = toy_task.config(tmp_path / "run", {"train.epochs": 1, "data.val_list": None})
    model = load_model(toy_task.checkpoint)
    first = ckpt.save_checkpoint(
        cfg.run_dir, model, {"progress": {"step": 1}}, "step_0000001", {"last": {"step": 1}}
    )
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    def crash(obj, handle, *args, **kwargs):  # the weights are written, then the process dies mid state.pt
        handle.write(b"half a file")
        raise KeyboardInterrupt("killed while writing")

    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(
            cfg.run_dir, model, {"progress": {"step": 2}}, "step_0000002", {"last": {"step": 2}}
        )
    monkeypatch.undo()
    assert runs.pointer_dir(cfg.run_dir) == first
    assert ckpt.load_training_state(first) == {"progress": {"step": 1}}
    for key, value in load_model(first / ckpt.MODEL_FILE).state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert not (runs.checkpoint_root(cfg.run_dir) / "step_0000002").exists()
    # The next successful save cleans up and moves the pointer; the previous snapshot stays as the fallback.
    ckpt.save_checkpoint(cfg.run_dir, model, {"progress": {"step": 2}}, "step_0000002", {"last": {"step": 2}})
    assert sorted(p.name for p in runs.checkpoint_root(cfg.run_dir).iterdir()) == [
        "last.json",
        "step_0000001",
        "step_0000002",
    ]


def test_find_checkpoint_accepts_run_folder_checkpoints_folder_pointer_and_dir(toy_task, tmp_path):
    cfg = toy_task.config(tmp_path / "run", {"train.epochs": 1, "data.val_list": None})
    train(cfg)
    last = runs.pointer_dir(cfg.run_dir)
    root = runs.checkpoint_root(cfg.run_dir)
    for given in (cfg.run_dir, root, root / "last.json", last):
        assert runs.find_checkpoint_dir(given) == last
    assert runs.model_file(cfg.run_dir) == last / ckpt.MODEL_FILE
    with pytest.raises(CheckpointNotFoundError):
        runs.find_checkpoint_dir(tmp_path)


def test_resume_restores_optimizer_schedule_progress_and_rng(toy_task, tmp_path):
    cfg = toy_task.config(
        tmp_path / "run", {"train.epochs": 2, "data.val_list": None, "train.save_every_steps": 2}
    )
    done = train(cfg)
    state = ckpt.load_training_state(runs.pointer_dir(cfg.run_dir))
    assert state["progress"]["epoch"] == 2 and state["progress"]["global_step"] == 6
    longer = toy_task.config(tmp_path / "run", {"train.epochs": 2, "data.val_list": None, "train.save_every_steps": 2,
                                                "data.num_workers": 0})  # fmt: skip
    trainer = Trainer(longer, Topology(), resume="auto")
    trainer._restore(trainer.resume_from)
    assert trainer.progress.global_step == 6 and trainer.schedule.last_t == state["scheduler"]["last_t"]
    assert trainer.optimizer.state_dict()["state"][0]["step"] == state["optimizer"]["state"][0]["step"]
    for a, b in zip(trainer.model.state_dict().values(), done.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_init_from_loads_weights_only_and_starts_at_step_zero(toy_task, tmp_path):
    first = toy_task.config(tmp_path / "first", {"train.epochs": 1, "data.val_list": None})
    trained = train(first)
    second = toy_task.config(tmp_path / "second", {"train.epochs": 1, "data.val_list": None})
    trainer = Trainer(second, Topology(), init_from=str(first.run_dir))
    assert trainer.resume_from is None and trainer.progress.global_step == 0
    assert not trainer.optimizer.state_dict()["state"]  # fresh optimiser
    for a, b in zip(
        trainer.model.clip.state_dict().values(), trained.model.clip.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    with pytest.raises(
        CheckpointNotFoundError, match="weights only"
    ):  # a weights-only snapshot cannot resume
        (runs.pointer_dir(first.run_dir) / ckpt.STATE_FILE).unlink()
        Trainer(first, Topology(), resume=str(first.run_dir))._restore(runs.pointer_dir(first.run_dir))


def test_kept_snapshots_follow_keep_every_and_best_survives(toy_task, tmp_path):
    cfg = toy_task.config(
        tmp_path / "run", {"train.epochs": 4, "output.keep_every": 2}
    )  # evaluates every epoch
    result = train(cfg)
    root = runs.checkpoint_root(cfg.run_dir)
    best = runs.read_pointer(cfg.run_dir, "best")
    assert best["top1"] == max(e["top1"] for e in result.evals)
    # Kept: every 2nd epoch and the last, whichever folder `best` names, and the previous snapshot as the
    # fallback should the newest be damaged; other superseded epoch ends are gone.
    assert {p.name for p in root.iterdir() if p.is_dir()} == {
        "epoch_001",
        "epoch_002",
        "epoch_003",
        best["dir"],
    }
    assert sorted(p.parent.name for p in root.glob("*/state.pt")) == ["epoch_002", "epoch_003"]
