"""Embeddings equal the source libraries' own outputs on the same weights (open_clip and Hugging Face CLIP)."""

from __future__ import annotations

import dataclasses

import open_clip
import pytest
import torch
from ckpt_writers import hf_config, random_clip_state, write_open_clip

from vificlip.model import build_clip
from vificlip.model.loading import load_model

CLASSES = ["dancing", "swimming", "playing_guitar", "blowing out candles on a birthday cake"]
TOL = 1e-4


def images(arch, n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, arch.image_size, arch.image_size, generator=torch.Generator().manual_seed(2))


def test_open_clip_encoders(tmp_path, tiny_arch):
    state = random_clip_state(tiny_arch, seed=3)
    clip = build_clip(tiny_arch).eval()
    clip.load_state_dict(state)
    model = load_model(write_open_clip(state, tmp_path / "oc.safetensors")).eval()
    pixels = images(tiny_arch)
    tokens = open_clip.tokenize(model.prompt_texts(CLASSES), context_length=tiny_arch.context_length)
    with torch.no_grad():
        assert (model.encode_frames(pixels) - clip.encode_image(pixels)).abs().max() <= TOL
        # ours runs only up to the longest prompt's EOT; open_clip the full 77 tokens
        assert (model.encode_text(CLASSES) - clip.encode_text(tokens)).abs().max() <= TOL


@pytest.mark.parametrize("hidden_act, vision_heads, text_heads", [("quick_gelu", 1, 1), ("gelu", 2, 4)])
def test_hugging_face_encoders(tmp_path, tiny_arch, hidden_act, vision_heads, text_heads):
    """A CLIPModel folder written by transformers; heads and activation must come from its config.json."""
    transformers = pytest.importorskip("transformers")
    arch = dataclasses.replace(tiny_arch, vision_heads=vision_heads, text_heads=text_heads)
    torch.manual_seed(4)
    hf = transformers.CLIPModel(hf_config(arch, hidden_act)).eval()
    with torch.no_grad():
        for param in hf.parameters():  # HF initialises norms to 1/0 and biases to 0: make every tensor count
            param.add_(0.05 * torch.randn_like(param))
    hf.save_pretrained(tmp_path / "hf")

    model = load_model(tmp_path / "hf").eval()
    assert model.arch == dataclasses.replace(arch, quick_gelu=hidden_act == "quick_gelu")
    pixels = images(arch)
    tokens = open_clip.tokenize(model.prompt_texts(CLASSES), context_length=arch.context_length)
    with torch.no_grad():
        hf_image = hf.get_image_features(pixel_values=pixels).pooler_output
        hf_text = hf.get_text_features(input_ids=tokens).pooler_output
        assert (model.encode_frames(pixels) - hf_image).abs().max() <= TOL
        assert (model.encode_text(CLASSES) - hf_text).abs().max() <= TOL
        assert torch.equal(model.clip.logit_scale, hf.logit_scale)
