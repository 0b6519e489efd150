"""Encode frames to a real video file with PyAV (synthetic benchmark, ``prepare``, and the tests' fixtures)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

# codec -> pixel format it is written with
PIXEL_FORMATS = {"libx264": "yuv420p", "h264": "yuv420p", "mpeg4": "yuv420p", "libvpx-vp9": "yuv420p",
                 "mjpeg": "yuvj420p", "libx264rgb": "rgb24", "ffv1": "yuv444p", "gif": "rgb8"}  # fmt: skip


def write_video(
    path: str | Path,
    frames: torch.Tensor | np.ndarray,
    fps: int = 25,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    keyframe_interval: int | None = None,
    rotation: int = 0,
    container_options: dict[str, str] | None = None,
    pix_fmt: str | None = None,
) -> Path:
    """Write uint8 frames [T,H,W,3] (RGB) to ``path``; the container follows the suffix (.mp4, .avi, .webm …).

    ``keyframe_interval`` sets the GOP size (Kinetics-style sources use 250; ``prepare`` writes short GOPs).
    Width and height must be even for yuv420p codecs. ``rotation`` (counter-clockwise degrees) is written as the
    stream's display matrix, as phones do: players turn the stored frames by it. ``container_options`` go to the
    muxer (e.g. ``{"movflags": "+faststart"}``).
    """
    path = Path(path)
    array = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {array.dtype} {array.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = array.shape[2], array.shape[1]
        stream.pix_fmt = pix_fmt or PIXEL_FORMATS.get(codec, "yuv420p")
        if rotation:
            stream.set_display_rotation(rotation)
        if keyframe_interval is not None:
            stream.codec_context.gop_size = keyframe_interval
        if options:
            stream.options = dict(options)
        for image in array:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
