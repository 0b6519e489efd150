"""Bridge and prompt end to end on the CPU: fine-tune a tiny ViFi-CLIP (the bridge), then learn deep prompts on
its frozen weights with the base-to-novel protocol runner, then move the prompts as the small artefact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vificlip.data.writer import write_video
from vificlip.engine.builders import build_model
from vificlip.engine.config import RunConfig, config_from_dict
from vificlip.engine.protocols import run_protocol
from vificlip.engine.runs import MODEL_FILE, pointer_dir
from vificlip.engine.train import train
from vificlip.model import ClipArch, ViFiCLIP
from vificlip.model.loading import load_model, save_model
from vificlip.model.prompt_io import load_prompts
from vificlip.model.prompts import DeepPrompts

# tests/conftest.py's TINY_ARCH (its fixture is function-scoped; this module builds its data once).
TINY = dict(embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=2, vision_heads=1,
            text_width=64, text_layers=2, text_heads=1)  # fmt: skip
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 50, 230), "yellow": (230, 220, 30)}
BASE, NOVEL = ["red", "green"], ["blue", "yellow"]
NUM_FRAMES = 4
N, DEPTH = 3, 2  # prompt tokens and depth in both towers (depth = every block of the tiny towers)


def _write_split(
    folder: Path, split: str, classes: list[str], per_class: int, rng: np.random.Generator
) -> Path:
    lines = []
    for label, name in enumerate(classes):
        for i in range(per_class):
            frames = np.array(COLOURS[name], np.float32) + rng.normal(0, 20, size=(NUM_FRAMES, 40, 40, 3))
            file = f"{split}_{name}_{i}.mp4"
            write_video(
                folder / "videos" / file, np.clip(frames, 0, 255).astype(np.uint8), options={"crf": "10"}
            )
            lines.append(f"{file} {label}")
    path = folder / f"{split}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _labels(folder: Path, name: str, classes: list[str]) -> Path:
    path = folder / f"{name}.csv"
    path.write_text("id,name\n" + "".join(f"{i},{c}\n" for i, c in enumerate(classes)))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Bridge data (all four colours, standing in for K400), base/novel halves, and a tiny CLIP checkpoint."""
    folder = tmp_path_factory.mktemp("bridge_prompt")
    rng = np.random.default_rng(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        clip = save_model(ViFiCLIP.from_arch(ClipArch(**TINY)), folder / "tiny_clip.safetensors")
    return {
        "folder": folder,
        "clip": clip,
        "all_labels": _labels(folder, "all", list(COLOURS)),
        "all_train": _write_split(folder, "all_train", list(COLOURS), 2, rng),
        "base_labels": _labels(folder, "base", BASE),
        "base_train": _write_split(folder, "base_train", BASE, 4, rng),
        "base_val": _write_split(folder, "base_val", BASE, 2, rng),
        "novel_labels": _labels(folder, "novel", NOVEL),
        "novel_val": _write_split(folder, "novel_val", NOVEL, 2, rng),
    }


def _config(world: dict[str, Path], run_dir: Path, **sections) -> RunConfig:
    data = {
        "root": str(world["folder"] / "videos"),
        "num_frames": NUM_FRAMES,
        "input_size": 32,
        "num_workers": 0,
    }
    base = {
        "name": run_dir.name,
        "model": {"checkpoint": str(world["clip"])},
        "data": data,
        "train": {"epochs": 1, "batch_size": 4, "accumulation_steps": 1, "seed": 7, "print_freq": 1},
        "optim": {"lr": 1e-4, "warmup_epochs": 0},
        "eval": {"batch_size": 4},
        "output": {"dir": str(run_dir), "tensorboard": False},
    }
    for section, values in sections.items():
        base[section] = {**base.get(section, {}), **values}
    return config_from_dict(base)


def test_bridge_then_prompt_base_to_novel(world, tmp_path):
    # Stage 1, the bridge: full ViFi-CLIP fine-tuning (K400 in the paper).
    bridge_cfg = _config(world, tmp_path / "bridge", data={"labels": str(world["all_labels"]),
                         "train_list": str(world["all_train"])})  # fmt: skip
    train(bridge_cfg, device="cpu")
    bridge_file = pointer_dir(tmp_path / "bridge") / MODEL_FILE
    bridge = load_model(bridge_file)

    # Stage 2, the prompts: the base-to-novel protocol on the frozen bridge (`model.init_from`), b2n recipe LR.
    prompt_cfg = _config(
        world,
        tmp_path / "prompt",
        model={"variant": "prompt", "init_from": str(tmp_path / "bridge"),
               "prompts": {"n_vision": N, "n_text": N, "depth_vision": DEPTH, "depth_text": DEPTH}},
        data={"labels": str(world["base_labels"]), "train_list": str(world["base_train"]),
              "val_list": str(world["base_val"])},
        train={"epochs": 2},
        optim={"lr": 4e-2},
        protocol={"novel_val_list": str(world["novel_val"]), "novel_labels": str(world["novel_labels"])},
    )  # fmt: skip
    fresh = build_model(prompt_cfg.model, prompt_cfg.model.init_from)
    assert isinstance(fresh.prompts, DeepPrompts)
    assert fresh.num_trainable_parameters() == DEPTH * N * (TINY["vision_width"] + TINY["text_width"])

    result = run_protocol("base2novel", prompt_cfg, device="cpu")
    summary = result.summary["model"]
    assert {"base", "novel", "hm"} <= set(summary) and 0 <= summary["hm"] <= 100
    assert "ViFi-CLIP + VL prompting" in (tmp_path / "prompt" / "results.md").read_text()

    # Only the prompts trained: every CLIP tensor, the logit scale included, is the bridge's.
    trained = load_model(pointer_dir(tmp_path / "prompt" / "s1") / MODEL_FILE)
    assert trained.variant == "prompt" and trained.prompts.config() == fresh.prompts.config()
    for name, tensor in trained.clip.state_dict().items():
        assert torch.equal(tensor, bridge.clip.state_dict()[name]), name
    assert not torch.equal(trained.prompts.text[0], fresh.prompts.text[0])

    # The small artefact the run wrote: prompts + the bridge's identity; reloaded onto the bridge, novel classes.
    artefact = tmp_path / "prompt" / "s1" / "prompts.safetensors"
    assert artefact.stat().st_size < bridge_file.stat().st_size / 20
    reloaded = load_prompts(artefact)
    videos = torch.randn(2, NUM_FRAMES, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(videos, NOVEL), trained.eval()(videos, NOVEL), atol=0, rtol=0)
