"""The optional ``torchcodec`` backend (``pip install vificlip[torchcodec]`` plus the FFmpeg shared libraries)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from vificlip.data.orientation import display_rotation
from vificlip.data.video_reader import ReaderBase, VideoDecodeError, check_frame_count


class TorchCodecReader(ReaderBase):
    """torchcodec's exact-seek decoder (scans the file once at open, like our PyAV index)."""

    def __init__(self, path: Path, threads: int = 1, allow_truncated: bool = False):
        from torchcodec.decoders import VideoDecoder

        self.path = path
        try:
            self._decoder = VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=threads)
        except (RuntimeError, ValueError) as error:
            raise VideoDecodeError(path, str(error)) from error
        metadata = self._decoder.metadata
        self.num_frames = int(metadata.num_frames or 0)
        self.fps = float(metadata.average_fps) if metadata.average_fps else None
        if self.num_frames == 0:
            raise VideoDecodeError(path, "the video has no frames")
        declared = getattr(metadata, "num_frames_from_header", None) or 0
        self.missing_frames = check_frame_count(path, self.num_frames, declared, allow_truncated)
        self._rotation = display_rotation(path)
        self._coded = (metadata.height, metadata.width)
        self._knows_rotation = getattr(metadata, "rotation", None) is not None  # versions that apply it

    def _read_sorted(self, indices: list[int]) -> list[torch.Tensor]:
        try:
            batch = self._decoder.get_frames_at(indices=indices).data
        except (RuntimeError, ValueError, IndexError) as error:
            raise VideoDecodeError(self.path, str(error)) from error
        turns = round(self._rotation / 90) % 4
        applied = tuple(batch.shape[-2:]) != self._coded if turns % 2 else self._knows_rotation
        rotation = 0 if applied else self._rotation
        return [self._finish(frame, rotation) for frame in batch]


@functools.cache
def torchcodec_works() -> bool:
    """Importable AND able to load FFmpeg: torchcodec imports without FFmpeg and fails on first use."""
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception:  # ImportError, or OSError/RuntimeError from older versions when FFmpeg is missing
        return False
    return getattr(torchcodec, "ffmpeg_major_version", 0) is not None  # None: FFmpeg libraries not found
