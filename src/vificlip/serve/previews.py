"""Images for the page: a decoded frame as a PNG data URI, and an indexed video as a small animated GIF."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np


def png_data_uri(frame: np.ndarray) -> str:
    """uint8 [H,W,3] → ``data:image/png;base64,…`` for an <img> on the page."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def gif_preview(path: Path, backend: str, frames: int, height: int) -> bytes:
    """An animated GIF of ``frames`` evenly spaced frames, ``height`` pixels high (raises ``VideoDecodeError``)."""
    from PIL import Image

    from ..data.decode import open_video
    from ..data.sampling import test_indices

    with open_video(path, backend=backend) as reader:
        decoded = reader.read(test_indices(reader.num_frames, frames))  # [T,3,H,W]
    images = []
    for frame in decoded.permute(0, 2, 3, 1).numpy():
        image = Image.fromarray(frame)
        width = max(1, round(image.width * height / image.height))
        images.append(
            image.resize((width, height), Image.NEAREST if image.height < height else Image.BILINEAR)
        )
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=200, loop=0)
    return buffer.getvalue()
