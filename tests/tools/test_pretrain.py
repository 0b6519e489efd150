"""The built-in small CLIP: shipped within the size budget, loadable by name, and reproducible from its record."""

from __future__ import annotations

import pytest
import torch
import yaml

from vificlip.cli import main
from vificlip.model.loading import load_model
from vificlip.model.text import tokenize
from vificlip.model.zoo import resolve_checkpoint
from vificlip.tools.pretrain import SYNTHETIC_ARCH, PretrainConfig, encode_text, train_clip, weights_digest

SHIPPED = resolve_checkpoint("synthetic-tiny-clip")
RECORD = yaml.safe_load(SHIPPED.with_suffix(".yaml").read_text())


def test_shipped_weights_match_their_record_and_load_by_name():
    assert SHIPPED.stat().st_size <= 20 * 2**20
    assert weights_digest(SHIPPED) == RECORD["weights_sha256"]
    model = load_model(SHIPPED)
    assert model.arch == SYNTHETIC_ARCH and model.arch.vocab_size == 49408 and model.arch.context_length == 32
    assert RECORD["config"] == PretrainConfig(**RECORD["config"]).__dict__


def test_first_steps_reproduce_the_recorded_losses():
    """The shipped weights came from this exact loss trace; the same seed and threads give it back.

    Tolerance 1e-4: bit-exact on the machine that made the file, float-close on other CPUs (kernel choice).
    """
    threads = torch.get_num_threads()
    try:
        _, losses = train_clip(PretrainConfig(**RECORD["config"]), steps=4)
    finally:
        torch.set_num_threads(threads)
    assert losses == pytest.approx(RECORD["loss_first_steps"][:4], rel=1e-4, abs=1e-4)


def test_text_encoder_trims_padding_exactly(tiny_model):
    clip = tiny_model.clip
    tokens = tokenize(["a red circle", "a small blue star at the top left on a grey background"], 77)
    torch.testing.assert_close(encode_text(clip, tokens), clip.encode_text(tokens), atol=1e-5, rtol=1e-5)


def test_pretrain_command_is_deterministic(tmp_path, capsys):
    args = ["pretrain-synthetic", "--steps", "2", "--batch-size", "8", "--eval-images", "16"]
    assert main([*args, "--out", str(tmp_path / "a.safetensors")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.safetensors")]) == 0
    assert weights_digest(tmp_path / "a.safetensors") == weights_digest(tmp_path / "b.safetensors")
    record = yaml.safe_load((tmp_path / "a.yaml").read_text())
    assert set(record["zero_shot_accuracy"]) == {"object_seen", "object_held_out", "position", "size"}
    assert "zero-shot accuracy" in capsys.readouterr().out
    assert main([*args[:1], "--steps", "0", "--out", str(tmp_path / "c.safetensors")]) == 2
