"""Importable test helpers (a tests/ subfolder conftest would shadow `from conftest import ...`)."""

from __future__ import annotations

import numpy as np
import torch

from vificlip.model import ClipArch

# 32×32 frames, patch 8 → 16 patches; two blocks per tower; widths divisible by 64 so heads = width // 64 holds.
TINY_ARCH = ClipArch(
    embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=2, vision_heads=1,
    text_width=64, text_layers=2, text_heads=1,
)  # fmt: skip


def indexed_frames(num_frames: int, height: int = 64, width: int = 96) -> np.ndarray:
    """uint8 [T,H,W,3] whose frame i shows i in 8 binary bars (255/0), robust to lossy codecs; see frame_index."""
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    bar = width // 8
    for i in range(num_frames):
        for bit in range(8):
            if (i >> bit) & 1:
                frames[i, :, bit * bar : (bit + 1) * bar] = 255
    return frames


def frame_index(frame: np.ndarray | torch.Tensor) -> int:
    """Read back the index painted by indexed_frames from an [H,W,3] or [3,H,W] uint8 frame."""
    array = frame.numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if array.shape[0] == 3:
        array = array.transpose(1, 2, 0)
    width = array.shape[1]
    bar = width // 8
    centre = array[array.shape[0] // 2]
    return sum(1 << bit for bit in range(8) if centre[bit * bar + bar // 2].mean() > 127)
