"""`vificlip export`: a run folder → a Hub-ready folder whose weights give the run's logits and whose card holds the
run's results; `--push` hands the folder to huggingface_hub's upload."""

from __future__ import annotations

import json

import pytest
import torch
from testkit import TINY_ARCH

import vificlip
from vificlip.cli import main
from vificlip.engine.checkpoint import save_checkpoint
from vificlip.engine.config import config_from_dict, save_config
from vificlip.engine.protocols import TABLE_FILE, ProtocolResult, markdown_table
from vificlip.model import ViFiCLIP
from vificlip.model.formats import detect_format

CLASSES = ["red", "green", "blue"]


@pytest.fixture
def run_dir(tmp_path):
    """A training run folder as the engine writes it: config.yaml, checkpoints/last, train_results, results.md."""
    folder = tmp_path / "runs" / "b2n_toy"
    torch.manual_seed(3)
    model = ViFiCLIP.from_arch(TINY_ARCH, variant="vifi")
    save_checkpoint(folder, model, {}, "epoch_001", {"last": {"epoch": 1, "step": 4}})
    cfg = config_from_dict({"name": "b2n_toy", "description": "toy base-to-novel", "data": {"num_frames": 4},
                            "model": {"checkpoint": "synthetic-tiny-clip"},
                            "train": {"epochs": 1}, "output": {"dir": str(folder)}})  # fmt: skip
    save_config(cfg, folder)
    final = {"top1": 66.67, "top5": 100.0, "mean_class": 66.67, "num_scored": 6, "num_videos": 6}
    (folder / "train_results.json").write_text(json.dumps({"evals": [], "final": final}))
    result = ProtocolResult("base2novel", "ViFi-CLIP", "4x32", {"Toy": "66.7 / 50.0 / 57.1"}, {}, [])
    (folder / TABLE_FILE).write_text(markdown_table([result]))
    return folder


def _logits(checkpoint) -> torch.Tensor:
    model = vificlip.load(checkpoint, device="cpu").model
    torch.manual_seed(0)
    with torch.no_grad():
        return model(torch.randn(2, 3, 3, 32, 32), CLASSES)


def test_export_of_a_run_loads_to_the_same_logits_and_carries_its_results(run_dir, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(run_dir), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert detect_format(out) == "vificlip"
    assert torch.equal(_logits(out), _logits(run_dir))
    config = json.loads((out / "config.json").read_text())
    assert (
        config["num_frames"] == 4 and config["variant"] == "vifi" and config["template"] == "a photo of a {}."
    )
    assert config["arch"]["vision_width"] == TINY_ARCH.vision_width and config["normalization"] == "authors"
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: vificlip\nlicense: mit")
    assert "| ViFi-CLIP | 4x32 | 66.7 / 50.0 / 57.1 |" in card  # the run's results table
    assert "| final | 66.67 | 100.00 | 66.67 | 6 of 6 |" in card
    assert "name: b2n_toy" in card and "Fine-tuned CLIP Models are Efficient Video Learners" in card
    assert 'vificlip.load("hf-hub:ORG/REPO"' in card
    recognizer = vificlip.load(out, device="cpu")  # the recorded pipeline becomes the default
    assert (recognizer.num_frames, recognizer.normalization) == (4, "authors")
    assert vificlip.load(run_dir, device="cpu").num_frames == 16


def test_export_records_the_chosen_pipeline(run_dir, tmp_path):
    out = tmp_path / "clip_norm"
    assert main(["export", str(run_dir), str(out), "--frames", "8", "--normalization", "clip"]) == 0
    recognizer = vificlip.load(out / "model.safetensors", device="cpu")
    assert (recognizer.num_frames, recognizer.normalization) == (8, "clip")
    assert vificlip.load(out, num_frames=2, normalization="authors", device="cpu").num_frames == 2


def test_export_refuses_a_non_empty_folder_and_convert_accepts_run_folders(run_dir, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", str(run_dir), str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    converted = tmp_path / "converted.safetensors"
    assert main(["convert", str(run_dir), str(converted)]) == 0  # run folders resolve in every command
    assert torch.equal(_logits(converted), _logits(run_dir))


def test_push_uploads_the_folder_through_huggingface_hub(run_dir, tmp_path, monkeypatch, capsys):
    # The upload itself is huggingface_hub's (preupload, LFS, commit endpoints): what we own is the call.
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo, **kw: calls.append(("create", repo, kw)))

    def upload_folder(self, **kw):
        calls.append(
            (
                "upload",
                kw["repo_id"],
                sorted(p.name for p in __import__("pathlib").Path(kw["folder_path"]).iterdir()),
            )
        )
        return type("Commit", (), {"commit_url": f"https://hub.example/{kw['repo_id']}/commit/1"})()

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    assert main(["export", str(run_dir), str(tmp_path / "pushed"), "--push", "me/toy", "--private"]) == 0
    assert calls == [("create", "me/toy", {"private": True, "exist_ok": True}),
                     ("upload", "me/toy", ["README.md", "config.json", "model.safetensors"])]  # fmt: skip
    assert "pushed: https://hub.example/me/toy/commit/1" in capsys.readouterr().out
    assert 'vificlip.load("hf-hub:me/toy"' in (tmp_path / "pushed" / "README.md").read_text()
