"""Attention rollout: recomputed weights match open_clip's attention, maps are distributions, files are written."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from PIL import Image
from testkit import TINY_ARCH

from vificlip.cli import main
from vificlip.model import ViFiCLIP
from vificlip.model.backbone import build_clip
from vificlip.model.loading import save_model
from vificlip.model.prompts import DeepPrompts
from vificlip.tools.visualize import attention_rollout, attention_weights

GRID = TINY_ARCH.grid_size  # 4×4 patches


def prompt_model(depth_vision: int) -> ViFiCLIP:
    torch.manual_seed(0)
    prompts = DeepPrompts(TINY_ARCH, n_vision=3, n_text=2, depth_vision=depth_vision, depth_text=1)
    with torch.no_grad():
        for p in prompts.parameters():
            p.normal_(0, 1)  # large enough that prompt tokens draw visible attention
    return ViFiCLIP(build_clip(TINY_ARCH), TINY_ARCH, variant="prompt", prompts=prompts).eval()


def test_recomputed_weights_equal_multihead_attention_weights(tiny_model: ViFiCLIP) -> None:
    block = tiny_model.clip.visual.transformer.resblocks[0]
    x = torch.randn(3, 1 + GRID * GRID, TINY_ARCH.vision_width)
    h = block.ln_1(x)
    _, expected = block.attn(h, h, h, need_weights=True, average_attn_weights=True)  # [N,S,S]
    torch.testing.assert_close(attention_weights(block, x), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("model_kind", ["plain", "prompts at input", "deep prompts"])
def test_rollout_rows_are_distributions_and_maps_fit_the_patch_grid(
    tiny_model: ViFiCLIP, model_kind: str
) -> None:
    model = {
        "plain": tiny_model.eval(),
        "prompts at input": prompt_model(1),
        "deep prompts": prompt_model(2),
    }[model_kind]
    frames = torch.randn(5, 3, TINY_ARCH.image_size, TINY_ARCH.image_size)
    rollout, features = attention_rollout(model, frames)
    tokens = 1 + GRID * GRID + (0 if model_kind == "plain" else 3)
    assert len(rollout.attentions) == TINY_ARCH.vision_layers
    for a in rollout.attentions:
        assert a.shape == (5, tokens, tokens)
        torch.testing.assert_close(a.sum(-1), torch.ones(5, tokens))
    assert rollout.rollout.shape == (5, tokens, tokens)
    assert (rollout.rollout >= 0).all()
    torch.testing.assert_close(rollout.rollout.sum(-1), torch.ones(5, tokens))
    assert rollout.maps.shape == (5, GRID, GRID)
    # The map is the class token's share coming from the patches: in (0, 1], the rest from itself and prompts.
    patch_share = rollout.maps.flatten(1).sum(-1)
    assert ((patch_share > 0) & (patch_share <= 1 + 1e-6)).all()
    if model_kind != "plain":
        assert (patch_share < 1 - 1e-3).all()  # prompts took some attention, and are left out of the map
    torch.testing.assert_close(features, model.encode_frames(frames))  # the hooks changed nothing


def test_deep_prompt_rows_restart_where_prompts_are_replaced() -> None:
    """Prompts replaced before block 1 carry nothing from below: their rows restart from the identity there."""
    model = prompt_model(2)
    rollout, _ = attention_rollout(model, torch.randn(2, 3, TINY_ARCH.image_size, TINY_ARCH.image_size))
    first, last = rollout.attentions
    eye = torch.eye(first.shape[-1])
    below = 0.5 * first + 0.5 * eye  # rollout after block 0
    restarted = below.clone()
    restarted[:, 1 + GRID * GRID :] = eye[1 + GRID * GRID :]
    torch.testing.assert_close(rollout.rollout, (0.5 * last + 0.5 * eye) @ restarted)
    assert not torch.allclose(rollout.rollout, (0.5 * last + 0.5 * eye) @ below, atol=1e-4)


def test_cli_writes_a_readable_png_grid_and_gif(
    tmp_path: Path, tiny_model: ViFiCLIP, indexed_video, capsys
) -> None:
    checkpoint = save_model(tiny_model, tmp_path / "tiny.safetensors")
    video = indexed_video(24)
    out = tmp_path / "maps"
    code = main(["visualize", str(video), "--checkpoint", str(checkpoint), "--classes", "dancing,swimming",
                 "--frames", "4", "--out", str(out), "--device", "cpu"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    png, gif = out / f"{video.stem}_attention.png", out / f"{video.stem}_attention.gif"
    assert ("dancing" in printed or "swimming" in printed) and str(png) in printed
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 4 and image.width >= 224


def test_rollout_ignores_forwards_of_the_same_model_on_other_threads(tiny_model: ViFiCLIP) -> None:
    """A server runs other requests through the model while a rollout's hooks are on its blocks: another thread's
    forward, made to happen right after the rollout's last block, must not replace the block inputs it kept."""
    torch.manual_seed(1)
    size = TINY_ARCH.image_size
    mine, other = torch.randn(2, 3, size, size), torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, _ = attention_rollout(tiny_model, mine)
    rollout_thread, fired = threading.get_ident(), []

    def forward_elsewhere(module, args, output) -> None:
        if threading.get_ident() == rollout_thread and not fired:
            fired.append(True)
            worker = threading.Thread(target=lambda: tiny_model.encode_frames(other))
            worker.start()
            worker.join()

    handle = tiny_model.clip.visual.transformer.resblocks[-1].register_forward_hook(forward_elsewhere)
    try:
        with torch.no_grad():
            got, _ = attention_rollout(tiny_model, mine)
    finally:
        handle.remove()
    assert fired
    torch.testing.assert_close(got.maps, expected.maps)
