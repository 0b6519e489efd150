"""Where the model looks: attention rollout of the class token over each frame's patches (``vificlip visualize``).

Attention rollout (Abnar & Zuidema, 2020): average each layer's attention over heads, add the residual path as
½·A + ½·I, and multiply the layers together, so the class token's row says how much of its final state flows from
each input patch. open_clip's blocks call fused attention without returning weights, so we recompute them from each
block's input (``ln_1`` and the attention's ``in_proj`` weights); open_clip itself is not touched.

Deep vision prompts sit at the end of the token sequence (SPEC §1.2). They take part in the rollout like any token,
are reset to "their own source" whenever a prompt layer replaces them, and are left out of the patch map.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VificlipError
from ..model.vificlip import ViFiCLIP
from .predict import VideoRecognizer


@dataclass
class Rollout:
    """Attention of N frames, S tokens = 1 class + g·g patches (+ prompts).

    Attributes:
        attentions: per block, head-averaged attention [N,S_l,S_l]; every row sums to 1.
        rollout: ∏ (½·A_l + ½·I) over the blocks [N,S,S]; every row sums to 1.
        maps: the class token's row over the patches [N,g,g] (prompt and class columns left out).
    """

    attentions: list[torch.Tensor]
    rollout: torch.Tensor
    maps: torch.Tensor


def attention_weights(
    block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Head-averaged softmax attention [N,S,S] of one open_clip block on its input x [N,S,W]."""
    attn = block.attn
    if not hasattr(attn, "in_proj_weight") or attn.in_proj_weight is None:
        raise VificlipError(f"cannot read attention weights from {type(attn).__name__} (no packed in_proj)")
    heads = attn.num_heads
    q, k, _ = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)  # [N,S,W] ×3
    n, s, w = q.shape
    q = q.view(n, s, heads, w // heads).transpose(1, 2)  # [N,H,S,W/H]
    k = k.view(n, s, heads, w // heads).transpose(1, 2)
    if getattr(attn, "logit_scale", None) is not None:  # open_clip's scaled-cosine attention
        scores = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        scores = scores * attn.logit_scale.clamp(max=attn.logit_scale_max).exp()
    else:
        q, k = getattr(attn, "ln_q", nn.Identity())(q), getattr(attn, "ln_k", nn.Identity())(k)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(w // heads)  # [N,H,S,S]
    if attn_mask is not None:
        scores = scores + attn_mask.to(scores.dtype)
    return scores.float().softmax(dim=-1).mean(dim=1)  # [N,S,S]


def _grow(rollout: torch.Tensor, size: int) -> torch.Tensor:
    """Extend [N,S,S] to [N,size,size] with identity rows for tokens that entered the sequence just now."""
    n, s, _ = rollout.shape
    if s == size:
        return rollout
    grown = torch.eye(size, dtype=rollout.dtype, device=rollout.device).repeat(n, 1, 1)
    keep = min(s, size)
    grown[:, :keep, :keep] = rollout[:, :keep, :keep]
    return grown


@torch.no_grad()
def attention_rollout(model: ViFiCLIP, frames: torch.Tensor) -> tuple[Rollout, torch.Tensor]:
    """Normalised frames [N,3,H,W] → (rollout, image features [N,D]) from one pass of the model's own forward."""
    blocks = list(model.clip.visual.transformer.resblocks)
    inputs: list[torch.Tensor] = [torch.empty(0)] * len(blocks)

    caller = threading.get_ident()

    def keep_input(index: int):
        def hook(module, args, kwargs):
            if threading.get_ident() == caller:  # a server may run other forwards of the same model meanwhile
                inputs[index] = args[0] if args else kwargs["q_x"]

        return hook

    handles = [b.register_forward_pre_hook(keep_input(i), with_kwargs=True) for i, b in enumerate(blocks)]
    try:
        features = model.encode_frames(
            frames
        )  # [N, D]; the hooks see the exact block inputs, prompts included
    finally:
        for handle in handles:
            handle.remove()
    num_image_tokens = 1 + model.arch.grid_size**2
    attentions, rollout = [], None
    for index, (block, x) in enumerate(zip(blocks, inputs)):
        a = attention_weights(block, x)  # [N,S,S]
        attentions.append(a)
        if rollout is None:
            rollout = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).repeat(a.shape[0], 1, 1)
        else:
            rollout = _grow(rollout, a.shape[-1])
            # Prompt tokens written afresh by a deep-prompt layer carry nothing from below: reset their rows.
            rows = torch.tensor(model.prompts.vision_rows_replaced(index, a.shape[-1]), dtype=torch.long)
            rollout[:, rows] = 0
            rollout[:, rows, rows] = 1
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        rollout = (0.5 * a + 0.5 * eye) @ rollout  # [N,S,S], rows still sum to 1
    grid = model.arch.grid_size
    maps = rollout[:, 0, 1:num_image_tokens].reshape(-1, grid, grid)  # class token over patches [N,g,g]
    return Rollout(attentions=attentions, rollout=rollout, maps=maps), features


def _display_frames(video: torch.Tensor, transform_probe) -> np.ndarray:
    """Undo the test transform's per-channel affine normalisation → uint8 [T,S,S,3] for drawing.

    The constants are measured by sending a black and a white frame through ``transform_probe`` so that we rely
    only on the transform's public contract, not on the constants' names.
    """
    black = transform_probe(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))[0, 0, :, 0, 0]  # [3]
    white = transform_probe(torch.full((1, 3, 8, 8), 255, dtype=torch.uint8))[0, 0, :, 0, 0]
    pixels = (video - black.view(1, 3, 1, 1)) / (white - black).view(1, 3, 1, 1)  # [T,3,S,S] in [0,1]
    return (pixels.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def overlay(frame: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 frame [S,S,3] + map [g,g] (any scale) → uint8 [S,S,3] with the map in matplotlib's 'jet'."""
    from matplotlib import colormaps

    h = torch.from_numpy(heat.astype(np.float32))[None, None]
    h = F.interpolate(h, size=frame.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
    h = (h - h.min()) / max(float(h.max() - h.min()), 1e-12)
    colour = colormaps["jet"](h)[..., :3] * 255
    return (frame * (1 - alpha) + colour * alpha).round().clip(0, 255).astype(np.uint8)


def save_grid_png(path: Path, frames: np.ndarray, overlays: np.ndarray, title: str) -> None:
    """Two rows per frame column: the frame, and the rollout on top of it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    t = len(frames)
    cols = min(t, 8)
    rows = 2 * math.ceil(t / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(t):
        r, c = 2 * (i // cols), i % cols
        axes[r, c].imshow(frames[i])
        axes[r, c].set_title(f"frame {i}", fontsize=8)
        axes[r + 1, c].imshow(overlays[i])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_gif(
    path: Path, overlays: np.ndarray, title: str, min_size: int = 224, ms_per_frame: int = 250
) -> None:
    """The overlaid frames as a looping GIF, scaled up to at least ``min_size`` px, with the title on top."""
    from PIL import Image, ImageDraw

    scale = max(1, math.ceil(min_size / overlays.shape[1]))
    images = []
    for frame in overlays:
        image = Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST)
        canvas = Image.new("RGB", (image.width, image.height + 16), "white")
        canvas.paste(image, (0, 16))
        ImageDraw.Draw(canvas).text((2, 2), title, fill="black")
        images.append(canvas)
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)


@dataclass(frozen=True)
class Visualization:
    """What ``visualize_video`` wrote, and the prediction drawn in its title."""

    png: Path
    gif: Path
    predicted_class: str
    probability: float
    maps: torch.Tensor  # [T,g,g] class-token rollout over patches


def rollout_overlays(
    recognizer: VideoRecognizer, clip: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """One view [1,T,3,S,S] → (frames uint8 [T,S,S,3], rollout overlays uint8 [T,S,S,3], maps [T,g,g])."""
    from ..data.transforms import build_test_transform

    frames = clip[0].to(recognizer.device)  # [T,3,S,S]
    with torch.autocast(recognizer.device.type, enabled=False):
        rollout, _ = attention_rollout(recognizer.model, frames.float())
    maps = rollout.maps.cpu()
    probe = build_test_transform(
        input_size=frames.shape[-1], num_crops=1, normalization=recognizer.normalization
    )
    shown = _display_frames(clip[0].cpu(), probe)  # uint8 [T,S,S,3]
    overlays = np.stack([overlay(f, m.numpy()) for f, m in zip(shown, maps)])
    return shown, overlays, maps


def visualize_video(
    recognizer: VideoRecognizer,
    video: str | Path,
    class_names: list[str],
    out_dir: str | Path,
) -> Visualization:
    """Rollout maps of one video's sampled frames → ``<stem>_attention.png`` (grid) and ``.gif`` in ``out_dir``."""
    out = Path(out_dir)
    try:  # before the model runs: an --out that names a file is the user's mistake, said in one line
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VificlipError(f"--out {out}: cannot be used as the output folder ({exc.strerror})") from None
    clip = recognizer.video_tensor(video)[:1]  # first view only: [1,T,3,S,S]
    probs = recognizer.probabilities(clip, class_names)  # [C]
    best = int(probs.argmax())
    shown, overlays, maps = rollout_overlays(recognizer, clip)
    title = f"{Path(str(video)).name}: {class_names[best]} ({float(probs[best]):.1%})"
    stem = Path(str(video)).stem
    png, gif = out / f"{stem}_attention.png", out / f"{stem}_attention.gif"
    save_grid_png(png, shown, overlays, title)
    save_gif(gif, overlays, title)
    return Visualization(png=png, gif=gif, predicted_class=class_names[best], probability=float(probs[best]),
                         maps=maps)  # fmt: skip
