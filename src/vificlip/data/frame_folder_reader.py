"""The ``frames`` backend: a directory of numbered images, one per frame (mmaction's raw-frame datasets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from vificlip.data.video_files import FRAME_FILE
from vificlip.data.video_reader import ReaderBase, VideoDecodeError, check_frame_size


class FrameFolderReader(ReaderBase):
    """A directory of ``img_00001.jpg`` … files (JPEG or PNG), sorted by their number."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_dir():
            raise VideoDecodeError(path, "not a directory of frames")
        numbered = [(int(m.group(1)), p) for p in path.iterdir() if (m := FRAME_FILE.match(p.name))]
        self._files = [p for _, p in sorted(numbered)]
        self.num_frames = len(self._files)
        if self.num_frames == 0:
            raise VideoDecodeError(path, "no frame files named img_<number>.jpg in the directory")

    def _read_sorted(self, indices: list[int]) -> list[torch.Tensor]:
        images = []
        for i in indices:
            try:
                with Image.open(self._files[i]) as image:
                    check_frame_size(self._files[i], *image.size)
                    upright = ImageOps.exif_transpose(
                        image
                    )  # a phone photo's EXIF orientation, as viewers show it
                    images.append(self._finish(np.array(upright.convert("RGB"))))
            except (
                OSError,
                ValueError,
                Image.DecompressionBombError,
            ) as error:  # junk: UnidentifiedImageError
                raise VideoDecodeError(self._files[i], f"unreadable frame image: {error}") from error
        return images
