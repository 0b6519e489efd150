"""`vificlip embed` / `search`: deterministic embeddings, resumable indexing, and text search that finds the class.

A tiny model is trained here for a few steps to tell solid-colour videos apart by their colour names; search then
has to rank unseen videos of the queried colour first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from testkit import TINY_ARCH

from vificlip.cli import main
from vificlip.data.writer import write_video
from vificlip.model import ViFiCLIP
from vificlip.model.loading import save_model
from vificlip.tools.embed import embed_folder, model_identity
from vificlip.tools.embed_index import EmbeddingIndexError, load_index, parts_dir
from vificlip.tools.predict import load, load_video_tensor

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def colour_video(path: Path, rgb: tuple[int, int, int], seed: int, num_frames: int = 12) -> Path:
    """A solid-colour clip with per-pixel noise and a drifting brightness, so no two clips are the same."""
    rng = np.random.default_rng(seed)
    base = np.array(rgb, dtype=np.float32) * rng.uniform(0.75, 1.0)
    frames = (
        base
        + rng.normal(0, 12, size=(num_frames, 48, 64, 3))
        + np.linspace(-10, 10, num_frames)[:, None, None, None]
    )
    return write_video(path, frames.clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Train videos, a separate folder of unseen videos (class = folder), and a tiny model trained on the former."""
    root = tmp_path_factory.mktemp("colours")
    train = [(colour_video(root / "train" / f"{name}{i}.mp4", rgb, seed=10 * i + k), k)
             for k, (name, rgb) in enumerate(COLOURS.items()) for i in range(2)]  # fmt: skip
    for k, (name, rgb) in enumerate(COLOURS.items()):
        for i in range(2):
            colour_video(root / "videos" / name / f"clip{i}.mp4", rgb, seed=100 + 10 * i + k)
    torch.manual_seed(0)
    model = ViFiCLIP.from_arch(TINY_ARCH).train()
    videos = torch.cat(
        [load_video_tensor(path, num_frames=4, input_size=32) for path, _ in train]
    )  # [6,T,3,S,S]
    labels = torch.tensor([label for _, label in train])
    classes = list(COLOURS)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(40):
        optimizer.zero_grad()
        F.cross_entropy(model(videos, classes), labels).backward()
        optimizer.step()
    with torch.no_grad():
        assert (model.eval()(videos, classes).argmax(-1) == labels).all(), (
            "the tiny model did not learn the colours"
        )
    return {
        "root": root,
        "videos": root / "videos",
        "checkpoint": save_model(model, root / "colours.safetensors"),
    }


def embed(world: dict, out: Path, recognizer=None, **kwargs):
    recognizer = recognizer or load(world["checkpoint"], num_frames=4, device="cpu")
    identity = model_identity(recognizer, world["checkpoint"])
    return embed_folder(recognizer, world["videos"], out, identity, progress=False, **kwargs)


@pytest.mark.slow  # trains the tiny model (≈ 10 s) when it runs first
def test_search_ranks_the_queried_colour_first(world: dict, tmp_path: Path, capsys) -> None:
    index_file = tmp_path / "index.safetensors"
    code = main(["embed", str(world["videos"]), "--checkpoint", str(world["checkpoint"]), "--out", str(index_file),
                 "--frames", "4", "--workers", "0", "--device", "cpu", "--plot"])  # fmt: skip
    assert code == 0
    assert "6 videos (6 new, 0 already there, 0 unreadable)" in capsys.readouterr().out
    for colour in COLOURS:
        assert (
            main(["search", colour, "--index", str(index_file), "--top-k", "6", "--json", "--device", "cpu"])
            == 0
        )
        hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5, 6]
        assert {h["class"] for h in hits[:2]} == {colour}, hits  # both unseen clips of that colour on top
        assert Path(hits[0]["path"]).parent.name == colour and Path(hits[0]["path"]).exists()
    with Image.open(index_file.with_suffix(".png")) as image:
        assert image.format == "PNG"


def test_index_contents_and_identical_embeddings_across_runs(world: dict, tmp_path: Path) -> None:
    first = embed(world, tmp_path / "a.safetensors").index
    second = load_index(tmp_path / "a.safetensors")
    third = embed(world, tmp_path / "b.safetensors").index
    assert sorted(first.paths) == sorted(f"{c}/clip{i}.mp4" for c in COLOURS for i in range(2))
    assert first.labels == [Path(p).parent.name for p in first.paths] and first.num_frames == [12] * 6
    assert first.model["sha256"] == third.model["sha256"] and len(first.model["sha256"]) == 64
    torch.testing.assert_close(first.embeddings.norm(dim=-1), torch.ones(6))
    assert torch.equal(first.embeddings, second.embeddings)
    assert first.paths == third.paths and torch.equal(first.embeddings, third.embeddings)  # bit-identical


def test_interrupted_run_resumes_from_its_parts(world: dict, tmp_path: Path, monkeypatch) -> None:
    reference = embed(world, tmp_path / "clean.safetensors").index
    out = tmp_path / "resumed.safetensors"
    recognizer = load(world["checkpoint"], num_frames=4, device="cpu")
    encode = recognizer.encode_video
    calls = []

    def crash_after_four(views: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) > 4:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while the fifth video was being embedded
        return encode(views)

    monkeypatch.setattr(recognizer, "encode_video", crash_after_four)
    with pytest.raises(KeyboardInterrupt):
        embed(world, out, recognizer, flush_every=2)
    assert (
        not out.exists() and len(list(parts_dir(out).iterdir())) == 2
    )  # two complete parts, nothing half-written
    assert len(load_index(out)) == 4
    result = embed(world, out, flush_every=2)
    assert (result.added, result.skipped) == (2, 4) and not parts_dir(out).exists()
    order = [result.index.paths.index(p) for p in reference.paths]
    assert torch.equal(result.index.embeddings[order], reference.embeddings)


def test_resuming_with_another_pipeline_is_refused(world: dict, tmp_path: Path) -> None:
    out = tmp_path / "index.safetensors"
    embed(world, out)
    recognizer = load(world["checkpoint"], num_frames=8, device="cpu")
    with pytest.raises(EmbeddingIndexError, match="num_frames"):
        embed_folder(
            recognizer, world["videos"], out, model_identity(recognizer, world["checkpoint"]), progress=False
        )
