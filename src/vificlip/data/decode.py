"""Video decoders behind one interface: open a video, ask for frame indices, get uint8 ``[T,3,H,W]`` RGB frames.

The reference reads the whole file and random-accesses frames with decord (SPEC §2.3). Here every backend decodes
only the frames it is asked for, and frame ``i`` is always the ``i``-th frame of a sequential decode:

* ``pyav`` (default): demuxes the packets once at open (no decoding, a few ms) to learn the true frame count and
  each frame's timestamp and keyframe, then seeks to the keyframe before each wanted frame and decodes forward,
  letting the decoder drop the unwanted non-reference frames on the way (nothing is decoded from them).
* ``torchcodec``: ``VideoDecoder(seek_mode="exact")``; needs the FFmpeg shared libraries on the system.
* ``decord``: optional, for parity with the reference pipeline.
* ``frames``: a directory of ``img_00001.jpg`` … images (one file per frame, as mmaction's raw-frame datasets).

Every backend returns frames as a player shows them: the stream's display matrix (phone videos are stored sideways
with a rotation of 90/180/270) or a JPEG's EXIF orientation is applied. ``read`` can reduce each frame (e.g. resize
to the pipeline's short side and crop) as soon as it is decoded, so what a read holds grows with the number and size
of the *output* frames, not with the source resolution; repeated indices are decoded and reduced once. A frame
above :data:`~vificlip.data.video_reader.MAX_FRAME_PIXELS` is refused. A file with fewer readable frames than its
container declares (a half-downloaded MP4) is refused unless ``allow_truncated`` is set (then a warning says how
many are missing).

This module picks and opens a backend. The interface, its error and the limits all backends share are in
``video_reader``; each backend has its own module (``pyav_reader``, ``torchcodec_reader``, ``decord_reader``,
``frame_folder_reader``); display rotation is ``orientation``; which files are videos is ``video_files``.
"""

from __future__ import annotations

from pathlib import Path

from vificlip.data.decord_reader import DecordReader, decord_works
from vificlip.data.frame_folder_reader import FrameFolderReader
from vificlip.data.pyav_reader import PyAVReader
from vificlip.data.torchcodec_reader import TorchCodecReader, torchcodec_works
from vificlip.data.video_reader import VideoDecodeError, VideoReader
from vificlip.errors import VificlipError

_BACKENDS = {
    "pyav": PyAVReader,
    "torchcodec": TorchCodecReader,
    "decord": DecordReader,
    "frames": FrameFolderReader,
}
BACKENDS: tuple[str, ...] = ("auto", *_BACKENDS)  # what data.backend and --backend accept
_PROBES = {
    "pyav": lambda: True,
    "torchcodec": torchcodec_works,
    "decord": decord_works,
    "frames": lambda: True,
}


def available_backends() -> list[str]:
    """Backends usable in this environment, in order of preference for files."""
    return [name for name, works in _PROBES.items() if works()]


def open_video(
    path: str | Path, backend: str = "auto", threads: int = 1, allow_truncated: bool = False
) -> VideoReader:
    """Open a video file (or a frame directory) for indexed reading.

    ``backend="auto"`` picks ``frames`` for directories and ``pyav`` for files. ``threads`` is the decoder's
    thread count: keep 1 inside DataLoader workers (the workers are the parallelism). ``allow_truncated``: read
    a file that has fewer frames than its container declares (``reader.missing_frames`` counts them) instead of
    refusing it.
    """
    path = Path(path)
    if backend == "auto":
        backend = "frames" if path.is_dir() else "pyav"
    if backend not in _BACKENDS:
        raise VificlipError(
            f"unknown video backend {backend!r}; expected one of auto, {', '.join(_BACKENDS)}"
        )
    if not _PROBES[backend]():
        raise VificlipError(
            f"video backend {backend!r} is not usable here; installed: {', '.join(available_backends())} "
            f"(torchcodec needs `pip install vificlip[torchcodec]` and the FFmpeg libraries, "
            f"decord needs `pip install vificlip[decord]`)"
        )
    if not path.exists():
        raise VideoDecodeError(path, "file does not exist")
    if backend == "frames":
        return FrameFolderReader(path)
    if path.is_dir():
        raise VideoDecodeError(path, f"is a directory; use backend 'frames' (not {backend!r})")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "file is empty")
    return _BACKENDS[backend](path, threads=threads, allow_truncated=allow_truncated)
