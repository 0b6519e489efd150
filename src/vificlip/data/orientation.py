"""Frames as a player shows them: the display-matrix rotation phone videos are stored with, applied to decoded
frames (JPEG EXIF orientation is handled where the images are opened, in the ``frames`` backend)."""

from __future__ import annotations

from pathlib import Path

import av
import torch


def rotate_upright(frame: torch.Tensor, rotation: float) -> torch.Tensor:
    """[...,H,W] turned by ``rotation`` degrees counter-clockwise (FFmpeg's display-matrix angle), as players do."""
    turns = round(rotation / 90) % 4
    return torch.rot90(frame, turns, dims=(-2, -1)) if turns else frame


def display_rotation(path: Path) -> float:
    """The rotation a player applies (counter-clockwise degrees), from the first frame PyAV decodes; for the
    backends that ignore the display matrix."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0), None)
    except av.FFmpegError:
        return 0
    return frame.rotation if frame is not None else 0
