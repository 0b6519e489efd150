"""A learnable toy video task on disk (real encoded clips, lists, labels) and a tiny CLIP checkpoint for the engine."""

from __future__ import annotations

import dataclasses
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from crashkit import OVERRIDES, signal_after_step

from vificlip.data.writer import write_video
from vificlip.engine.config import RunConfig, apply_overrides, config_from_dict
from vificlip.engine.train import TrainingStopped, train
from vificlip.model import ClipArch, ViFiCLIP
from vificlip.model.loading import save_model

# Same shape as tests/conftest.py TINY_ARCH (session fixtures cannot use its function-scoped fixture).
TINY = dict(embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=2, vision_heads=1,
            text_width=64, text_layers=2, text_heads=1)  # fmt: skip
CLASSES = ["red", "green", "blue"]
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 50, 230)]
NUM_FRAMES = 4


@dataclasses.dataclass
class ToyTask:
    root: Path
    labels: Path
    train_list: Path
    val_list: Path
    checkpoint: Path

    def config(self, run_dir: Path, overrides: dict | None = None) -> RunConfig:
        """A small, fast run on the toy task; ``overrides`` are dotted keys."""
        base = {
            "name": "toy",
            "model": {"checkpoint": str(self.checkpoint)},
            "data": {"root": str(self.root), "labels": str(self.labels), "train_list": str(self.train_list),
                     "val_list": str(self.val_list), "num_frames": NUM_FRAMES, "input_size": 32, "num_workers": 0},
            "train": {"epochs": 2, "batch_size": 4, "accumulation_steps": 1, "seed": 7, "print_freq": 1},
            "optim": {"lr": 1e-4, "warmup_epochs": 0},
            "eval": {"batch_size": 4},
            "output": {"dir": str(run_dir), "tensorboard": False},
        }  # fmt: skip
        return config_from_dict(apply_overrides(base, overrides or {}))


def _clip_frames(colour: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A noisy solid-colour clip [T,40,40,3]: the class is the colour, so frame averaging can learn it."""
    base = np.array(colour, dtype=np.float32)
    frames = base + rng.normal(0, 20, size=(NUM_FRAMES, 40, 40, 3))
    return np.clip(frames, 0, 255).astype(np.uint8)


def write_task(folder: Path, per_class_train: int = 4, per_class_val: int = 2) -> ToyTask:
    rng = np.random.default_rng(0)
    root = folder / "videos"
    lines = {"train": [], "val": []}
    for split, count in (("train", per_class_train), ("val", per_class_val)):
        for label, colour in enumerate(COLOURS):
            for i in range(count):
                name = f"{split}_{CLASSES[label]}_{i}.mp4"
                write_video(root / name, _clip_frames(colour, rng), codec="libx264", options={"crf": "10"})
                lines[split].append(f"{name} {label}")
    labels = folder / "labels.csv"
    labels.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(CLASSES)))
    train_list, val_list = folder / "train.txt", folder / "val.txt"
    train_list.write_text("\n".join(lines["train"]) + "\n")
    val_list.write_text("\n".join(lines["val"]) + "\n")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ViFiCLIP.from_arch(ClipArch(**TINY))
    checkpoint = save_model(model, folder / "tiny_clip.safetensors")
    return ToyTask(root, labels, train_list, val_list, checkpoint)


@pytest.fixture(scope="session")
def toy_task(tmp_path_factory) -> ToyTask:
    return write_task(tmp_path_factory.mktemp("toy_task"))


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny models gain nothing from intra-op threads, and shared CI cores are oversubscribed by them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- the crash-safety tests' shared runs (tests/engine/test_crash_safety_*.py) --------------------------------------
@pytest.fixture(scope="session")
def reference(toy_task, tmp_path_factory) -> dict[str, torch.Tensor]:
    cfg = toy_task.config(tmp_path_factory.mktemp("reference") / "run", OVERRIDES)
    torch.set_num_threads(1)
    return {k: v.clone() for k, v in train(cfg).model.state_dict().items()}


@pytest.fixture(scope="session")
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
