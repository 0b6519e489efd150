"""What every decoder backend shares: the :class:`VideoReader` interface, its error, the frame-size limit, the
truncation policy, and the base class that validates indices, decodes each distinct frame once and reduces it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from vificlip.data.orientation import rotate_upright
from vificlip.errors import VificlipError

log = logging.getLogger(__name__)

#: the most pixels one frame may have, decoded or after the per-frame reduction: 8192×8192 (an 8K frame is 35 M)
MAX_FRAME_PIXELS = 8192 * 8192
#: a per-frame reduction applied right after decoding: uint8 [3,H,W] → uint8 [3,h,w]
FrameTransform = Callable[[torch.Tensor], torch.Tensor]


class VideoDecodeError(VificlipError):
    """A video that cannot be opened or decoded (missing, empty, corrupt, truncated, zero frames)."""

    def __init__(self, path: str | Path, reason: str | None = None):
        # One-argument form = an already formatted message: what pickling and DataLoader's re-raise call.
        super().__init__(f"cannot decode video {path}: {reason}" if reason is not None else str(path))
        self.path = str(path)
        self.reason = reason if reason is not None else str(path)


def check_frame_count(path: Path, readable: int, declared: int, allow_truncated: bool) -> int:
    """The one truncation policy: ``declared − readable`` frames missing is an error unless allowed (then a
    warning). Returns the number missing (0 for a complete file or a container that declares no count)."""
    missing = max(0, declared - readable)
    if missing and not allow_truncated:
        raise VideoDecodeError(
            path,
            f"truncated: the container declares {declared} frames but only {readable} can be read "
            "(pass --allow-truncated / allow_truncated=True to use them)",
        )
    if missing:
        log.warning("%s: truncated, %d of %d declared frames are missing; using the %d that exist",
                    path, missing, declared, readable)  # fmt: skip
    return missing


def check_frame_size(path: Path, width: int, height: int, what: str = "frame") -> None:
    """Refuse frames above :data:`MAX_FRAME_PIXELS` before any memory is spent on them."""
    if width * height > MAX_FRAME_PIXELS:
        raise VideoDecodeError(
            path, f"{what} of {width}×{height} pixels is above the limit of {MAX_FRAME_PIXELS:,} pixels"
        )


class VideoReader(Protocol):
    """What every backend provides. ``read`` returns frames in the order given; duplicates are allowed."""

    path: Path
    num_frames: int
    fps: float | None
    missing_frames: int

    def read(self, indices: Sequence[int], transform: FrameTransform | None = None) -> torch.Tensor: ...

    def close(self) -> None: ...

    def __enter__(self) -> VideoReader: ...

    def __exit__(self, *exc: object) -> None: ...


class ReaderBase:
    """Shared plumbing: index validation, de-duplication and context-manager support."""

    path: Path
    num_frames: int
    fps: float | None = None
    missing_frames: int = 0  # frames the container declares that cannot be read (allow_truncated)
    _transform: FrameTransform | None = None

    def read(self, indices: Sequence[int], transform: FrameTransform | None = None) -> torch.Tensor:
        """uint8 [T,3,H,W] RGB, frame ``indices[t]`` at position t, upright; each distinct frame is decoded once
        and, with ``transform``, reduced right after decoding (the full-size frame is never kept)."""
        wanted = [int(i) for i in indices]
        if not wanted:
            raise ValueError("read() needs at least one frame index")
        bad = [i for i in wanted if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad[:5]} out of range 0..{self.num_frames - 1}")
        unique = sorted(set(wanted))
        self._transform = transform
        try:
            frames = self._read_sorted(unique)  # [3,H,W] per unique frame
        finally:
            self._transform = None
        position = {index: row for row, index in enumerate(unique)}
        return _stack([frames[position[i]] for i in wanted], self.path)

    def _read_sorted(self, indices: list[int]) -> list[torch.Tensor]:
        raise NotImplementedError

    def _finish(self, image: np.ndarray | torch.Tensor, rotation: float = 0) -> torch.Tensor:
        """One decoded frame ([H,W,3] array or [3,H,W] tensor) → upright [3,H,W], reduced by the read's
        transform."""
        frame = torch.from_numpy(image).permute(2, 0, 1) if isinstance(image, np.ndarray) else image
        frame = rotate_upright(frame, rotation)
        if self._transform is not None:
            frame = self._transform(frame).contiguous()  # a copy: the decoded frame can go
            check_frame_size(self.path, frame.shape[-1], frame.shape[-2], "a resized frame")
        return frame

    def close(self) -> None:
        """Release the file; the reader is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, num_frames={self.num_frames})"


def _stack(frames: list[torch.Tensor], path: Path) -> torch.Tensor:
    shapes = {tuple(frame.shape) for frame in frames}
    if len(shapes) > 1:  # e.g. a resolution change mid-stream
        raise VideoDecodeError(path, f"frames differ in size: {sorted(shapes)}")
    return torch.stack(frames)  # [T,3,H,W]
