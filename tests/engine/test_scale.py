"""Real processes: SIGKILL or SIGTERM mid-epoch + ``--resume auto`` equals an uninterrupted run; 2 gloo ranks equal
1 process, log the mean loss over ranks, and stop together when one of them gets SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vificlip.engine import checkpoint as ckpt
from vificlip.engine import runs
from vificlip.engine.config import to_yaml
from vificlip.engine.train import train

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SIGNAL_AT_STEP = Path(__file__).with_name("signal_at_step.py")
KILL_OVERRIDES = {"train.epochs": 3, "train.batch_size": 2, "train.accumulation_steps": 2, "train.save_every_steps": 1,
                  "optim.warmup_epochs": 1}  # 6 micro-batches, 3 optimiser steps per epoch  # fmt: skip


def write_config(cfg, path: Path) -> Path:
    path.write_text(to_yaml(cfg))
    return path


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(runs.pointer_dir(run_dir) / ckpt.MODEL_FILE))


def vificlip(*args: str) -> list[str]:
    return [sys.executable, "-m", "vificlip", *args]


@pytest.fixture(scope="module")
def uninterrupted(toy_task, tmp_path_factory) -> dict[str, torch.Tensor]:
    """Final weights of the KILL_OVERRIDES run, trained in one go by the CLI."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    reference = toy_task.config(folder / "reference", KILL_OVERRIDES)
    subprocess.run(vificlip("train", str(write_config(reference, folder / "ref.yaml"))), env=ENV, check=True,
                   capture_output=True)  # fmt: skip
    return final_weights(reference.run_dir)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_auto_gives_identical_weights(toy_task, tmp_path, uninterrupted):
    overrides = KILL_OVERRIDES
    killed = toy_task.config(tmp_path / "killed", overrides)
    config = write_config(killed, tmp_path / "killed.yaml")
    process = subprocess.Popen(vificlip("train", str(config)), env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    pointer = killed.run_dir / "checkpoints" / "last.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (
            pointer.is_file()
            and (info := json.loads(pointer.read_text()))["epoch"] >= 1
            and info["micro_step"] > 0
        ):
            process.send_signal(signal.SIGKILL)  # mid-epoch 2, right after a mid-epoch checkpoint
            break
        time.sleep(0.002)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    stopped_at = json.loads(pointer.read_text())
    assert stopped_at["epoch"] < 3

    subprocess.run(
        vificlip("train", str(config), "--resume", "auto"), env=ENV, check=True, capture_output=True
    )
    assert json.loads(pointer.read_text())["step"] == 9
    want, got = uninterrupted, final_weights(killed.run_dir)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    log = (killed.run_dir / "log.txt").read_text()
    assert "resumed" in log and f"micro-batch {stopped_at['micro_step']}" in log


@pytest.mark.slow
def test_sigterm_from_outside_saves_exits_143_and_resume_gives_identical_weights(
    toy_task, tmp_path, uninterrupted
):
    cfg = toy_task.config(tmp_path / "stopped", {**KILL_OVERRIDES, "train.save_every_steps": 0})
    config = write_config(cfg, tmp_path / "stopped.yaml")
    child = subprocess.Popen([sys.executable, str(SIGNAL_AT_STEP), "4", "park", "--", "train", str(config)],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout.readline().strip() == "parked"  # after optimiser step 4 (epoch 2), waiting
    child.send_signal(signal.SIGTERM)  # what a scheduler sends before preemption
    _, err = child.communicate(timeout=120)
    assert child.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("vificlip train: stopped by SIGTERM at epoch 2, optimiser step 5; saved ") and (
        last.endswith("continue with --resume auto")
    )
    assert "Traceback" not in err
    assert ckpt.load_training_state(runs.latest_checkpoint(cfg.run_dir))["progress"]["global_step"] == 5
    subprocess.run(
        vificlip("train", str(config), "--resume", "auto"), env=ENV, check=True, capture_output=True
    )
    got = final_weights(cfg.run_dir)
    for key in uninterrupted:
        assert torch.equal(uninterrupted[key], got[key]), key


# Mixup mixes within a rank's micro-batch, so it is off here; augmentations are seeded per video and match.
# eps 1e-3: some gradients are exactly 0 in exact arithmetic (attention key biases) and only float noise in
# practice; Adam with eps 1e-8 would turn that noise into ±LR steps that differ between topologies.
GLOO_COMMON = {
    "train.epochs": 2,
    "train.mixup": False,
    "optim.warmup_epochs": 0,
    "optim.lr": 1e-3,
    "optim.eps": 1e-3,
}


def torchrun(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2", *args]


@pytest.mark.slow
def test_sigterm_on_one_rank_stops_every_rank_at_the_same_step(toy_task, tmp_path):
    common = {**GLOO_COMMON, "data.val_list": None}
    single = toy_task.config(tmp_path / "single", {**common, "train.batch_size": 4})
    want = train(single).model.state_dict()
    double = toy_task.config(tmp_path / "double", {**common, "train.batch_size": 2})  # 3 steps per epoch
    config = write_config(double, tmp_path / "double.yaml")
    # Only rank 1 gets SIGTERM, after step 4: the flag is all-reduced, so both ranks stop after step 5.
    stopped = subprocess.run(torchrun(str(SIGNAL_AT_STEP), "4", "TERM", "--", "train", str(config), "--device", "cpu"),
                             env={**ENV, "RANK_ONLY": "1"}, capture_output=True, text=True)  # fmt: skip
    assert stopped.returncode != 0
    assert stopped.stderr.count("stopped by SIGTERM at epoch 2, optimiser step 5") == 2, stopped.stderr[
        -3000:
    ]
    latest = runs.latest_checkpoint(double.run_dir, resumable=True)
    assert latest.name == "step_0000005" and ckpt.load_training_state(latest)["world_size"] == 2
    done = subprocess.run(torchrun("-m", "vificlip", "train", str(config), "--device", "cpu", "--resume", "auto"),
                          env=ENV, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = final_weights(double.run_dir)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-5, msg=key)


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(toy_task, tmp_path):
    common = dict(GLOO_COMMON)
    uneven = tmp_path / "val5.txt"  # 5 videos: rank shards of 3 and 2
    uneven.write_text("\n".join(toy_task.val_list.read_text().split("\n")[:5]) + "\n")
    common["data.val_list"] = str(uneven)
    single = toy_task.config(tmp_path / "single", {**common, "train.batch_size": 4})
    subprocess.run(vificlip("train", str(write_config(single, tmp_path / "single.yaml"))), env=ENV, check=True,
                   capture_output=True)  # fmt: skip
    double = toy_task.config(tmp_path / "double", {**common, "train.batch_size": 2})
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "vificlip", "train",
                           str(write_config(double, tmp_path / "double.yaml")), "--device", "cpu"],
                          env=ENV, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    want, got = final_weights(single.run_dir), final_weights(double.run_dir)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-5, msg=key)
    assert any(not torch.equal(want[k], load_file(str(toy_task.checkpoint))[k]) for k in want)  # it did train
    # The logged loss is the mean over ranks (each rank sees half of the same global batch), not rank 0's share.
    single_loss = [row["loss"] for row in runs.read_metrics(single.run_dir, "train")]
    double_loss = [row["loss"] for row in runs.read_metrics(double.run_dir, "train")]
    assert double_loss == pytest.approx(single_loss, rel=1e-5)
    # Evaluation of 5 videos on 2 ranks (uneven shards): every video once, the same numbers as one process.
    one = json.loads((single.run_dir / "evals" / "eval_epoch001.json").read_text())
    two = json.loads((double.run_dir / "evals" / "eval_epoch001.json").read_text())
    assert two["num_videos"] == one["num_videos"] == two["num_scored"] == 5 and two["top1"] == one["top1"]
    assert (double.run_dir / "log_rank1.txt").is_file()
