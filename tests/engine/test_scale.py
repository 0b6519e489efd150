"""Real processes: SIGKILL mid-epoch + ``--resume auto`` equals an uninterrupted run; 2 gloo ranks equal 1 process."""

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

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def write_config(cfg, path: Path) -> Path:
    path.write_text(to_yaml(cfg))
    return path


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(runs.pointer_dir(run_dir) / ckpt.MODEL_FILE))


def vificlip(*args: str) -> list[str]:
    return [sys.executable, "-m", "vificlip", *args]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_auto_gives_identical_weights(toy_task, tmp_path):
    overrides = {"train.epochs": 3, "train.batch_size": 2, "train.accumulation_steps": 2, "train.save_every_steps": 1,
                 "optim.warmup_epochs": 1}  # 6 micro-batches, 3 optimiser steps per epoch  # fmt: skip
    reference = toy_task.config(tmp_path / "reference", overrides)
    subprocess.run(vificlip("train", str(write_config(reference, tmp_path / "ref.yaml"))), env=ENV, check=True,
                   capture_output=True)  # fmt: skip

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
    want, got = final_weights(reference.run_dir), final_weights(killed.run_dir)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    log = (killed.run_dir / "log.txt").read_text()
    assert "resumed" in log and f"micro-batch {stopped_at['micro_step']}" in log


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(toy_task, tmp_path):
    # Mixup mixes within a rank's micro-batch, so it is off here; augmentations are seeded per video and match.
    # eps 1e-3: some gradients are exactly 0 in exact arithmetic (attention key biases) and only float noise in
    # practice; Adam with eps 1e-8 would turn that noise into ±LR steps that differ between topologies.
    common = {
        "train.epochs": 2,
        "train.mixup": False,
        "optim.warmup_epochs": 0,
        "optim.lr": 1e-3,
        "optim.eps": 1e-3,
    }
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
    # Evaluation of 5 videos on 2 ranks (uneven shards): every video once, the same numbers as one process.
    one = json.loads((single.run_dir / "evals" / "eval_epoch001.json").read_text())
    two = json.loads((double.run_dir / "evals" / "eval_epoch001.json").read_text())
    assert two["num_videos"] == one["num_videos"] == two["num_scored"] == 5 and two["top1"] == one["top1"]
    assert (double.run_dir / "log_rank1.txt").is_file()
