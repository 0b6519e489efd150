"""The optional ``decord`` backend (``pip install vificlip[decord]``), for parity with the reference pipeline."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from vificlip.data.orientation import display_rotation
from vificlip.data.video_reader import ReaderBase, VideoDecodeError


class DecordReader(ReaderBase):
    """decord, as the reference uses it (random access by index, one thread)."""

    def __init__(self, path: Path, threads: int = 1, allow_truncated: bool = False):
        import decord

        self.path = path
        try:
            self._reader = decord.VideoReader(str(path), num_threads=threads)
        except (RuntimeError, decord.DECORDError) as error:
            raise VideoDecodeError(path, str(error)) from error
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())
        if self.num_frames == 0:
            raise VideoDecodeError(path, "the video has no frames")
        self._rotation = display_rotation(path)  # decord ignores the display matrix

    def _read_sorted(self, indices: list[int]) -> list[torch.Tensor]:
        import decord

        try:
            batch = self._reader.get_batch(indices).asnumpy()
        except (RuntimeError, decord.DECORDError) as error:
            raise VideoDecodeError(self.path, str(error)) from error
        self._reader.seek(0)  # releases decord's frame cache (its known memory leak, decord issue #197)
        return [self._finish(image, self._rotation) for image in batch]


@functools.cache
def decord_works() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True
