"""Video decoders behind one interface: open a video, ask for frame indices, get uint8 ``[T,3,H,W]`` RGB frames.

The reference reads the whole file and random-accesses frames with decord (SPEC §2.3). Here every backend decodes
only the frames it is asked for, and frame ``i`` is always the ``i``-th frame of a sequential decode:

* ``pyav`` (default): demuxes the packets once at open (no decoding, a few ms) to learn the true frame count and
  each frame's timestamp and keyframe, then seeks to the keyframe before each wanted frame and decodes forward,
  letting the decoder drop the unwanted non-reference frames on the way (nothing is decoded from them).
* ``torchcodec``: ``VideoDecoder(seek_mode="exact")``; needs the FFmpeg shared libraries on the system.
* ``decord``: optional, for parity with the reference pipeline.
* ``frames``: a directory of ``img_00001.jpg`` … images (one file per frame, as mmaction's raw-frame datasets).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import torch
from PIL import Image

from vificlip.errors import VificlipError

FRAME_FILE = re.compile(r"^img_(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)


class VideoDecodeError(VificlipError):
    """A video that cannot be opened or decoded (missing, empty, corrupt, truncated, zero frames)."""

    def __init__(self, path: str | Path, reason: str | None = None):
        # One-argument form = an already formatted message: what pickling and DataLoader's re-raise call.
        super().__init__(f"cannot decode video {path}: {reason}" if reason is not None else str(path))
        self.path = str(path)
        self.reason = reason if reason is not None else str(path)


class VideoReader(Protocol):
    """What every backend provides. ``read`` returns frames in the order given; duplicates are allowed."""

    path: Path
    num_frames: int
    fps: float | None

    def read(self, indices: Sequence[int]) -> torch.Tensor: ...

    def close(self) -> None: ...

    def __enter__(self) -> VideoReader: ...

    def __exit__(self, *exc: object) -> None: ...


class _ReaderBase:
    """Shared plumbing: index validation, de-duplication and context-manager support."""

    path: Path
    num_frames: int
    fps: float | None = None

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 [T,3,H,W] RGB, frame ``indices[t]`` at position t; each distinct frame is decoded once."""
        wanted = [int(i) for i in indices]
        if not wanted:
            raise ValueError("read() needs at least one frame index")
        bad = [i for i in wanted if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad[:5]} out of range 0..{self.num_frames - 1}")
        unique = sorted(set(wanted))
        frames = self._read_sorted(unique)  # [U,3,H,W], unique order
        if unique == wanted:  # already in order (training clips): no second copy of the frames
            return frames
        position = {index: row for row, index in enumerate(unique)}
        return frames[torch.tensor([position[i] for i in wanted])]

    def _read_sorted(self, indices: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file; the reader is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, num_frames={self.num_frames})"


def _to_tensor(images: list[np.ndarray], path: Path) -> torch.Tensor:
    shapes = {image.shape for image in images}
    if len(shapes) > 1:  # e.g. a resolution change mid-stream
        raise VideoDecodeError(path, f"frames differ in size: {sorted(shapes)}")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # [U,H,W,3] -> [U,3,H,W]


class PyAVReader(_ReaderBase):
    """PyAV decoding with a packet index, so seeks land on keyframes and frames are identified by timestamp.

    Decoding forward from a keyframe to a wanted frame, the packets of frames that are not wanted go to the decoder
    with ``skip_frame = "NONREF"``: it drops them if they are non-reference frames (h264 ``nal_ref_idc == 0``,
    mpeg4 B-frames, VP9 frames that refresh no reference), which by definition no other frame is decoded from, so
    every frame that is output is bit-identical to a front-to-back decode. Packets of wanted frames go with
    ``"DEFAULT"``. On B-frame sources (x264's defaults) this drops about 40 % of the frames. Once the packets of all
    wanted frames are in, the decoder is drained instead of fed further packets. Should a wanted frame still not
    come out (a decoder that ties output to the frames it was fed), the missing frames are decoded again without
    skipping.
    """

    #: let the decoder drop unwanted non-reference frames (``False``: decode every frame from the keyframe on)
    skip_unwanted: bool = True

    def __init__(self, path: Path, threads: int = 1):
        self.path = path
        self._threads = threads
        self._container = None
        # decode-cost accounting for tests and benchmarks: frames the decoder output, and packets it was allowed
        # to drop (it does so for those that are non-reference frames; dropped frames are never output)
        self.frames_decoded = 0
        self.packets_skippable = 0
        try:
            self._open()
            self._index_packets()
        except av.FFmpegError as error:
            self.close()
            raise VideoDecodeError(path, f"{type(error).__name__}: {error}") from error
        except VideoDecodeError:
            self.close()
            raise

    def _open(self) -> None:
        self.close()
        self._container = av.open(str(self.path), mode="r")
        if not self._container.streams.video:
            raise VideoDecodeError(self.path, "no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = self._threads
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else None

    def _index_packets(self) -> None:
        """Demux every packet once: the true frame count (containers may say 0, e.g. webm) and a timestamp map.

        Counts what a sequential decode outputs: not the flush packet, not packets an edit list discards, and
        not the frames before the first keyframe (a clip cut without re-encoding), which FFmpeg cannot decode.
        """
        packets = [
            (p.pts, p.is_keyframe) for p in self._container.demux(self._stream) if p.size and not p.is_discard
        ]
        first_key = next((i for i, (_, key) in enumerate(packets) if key), 0)
        packets = packets[first_key:]
        pts = [value for value, _ in packets]
        if packets and None not in pts:
            packets = [(value, key) for value, key in packets if value >= pts[0]]  # open-GOP leading frames
            pts = [value for value, _ in packets]
        self.num_frames = len(packets)
        if self.num_frames == 0:
            raise VideoDecodeError(self.path, "the video has no frames")
        # Presentation order is timestamp order; without unique timestamps fall back to counting decoded frames.
        self._by_pts = None
        if None not in pts and len(set(pts)) == len(pts):
            order = sorted(pts)
            self._by_pts = {value: index for index, value in enumerate(order)}
            self._keyframes = sorted(self._by_pts[value] for value, key in packets if key)
            self._pts = order

    def _read_sorted(self, indices: list[int]) -> torch.Tensor:
        try:
            if self._by_pts is None:
                images = self._decode_sequential(indices)
            else:
                images = self._decode_seeking(indices, skip=self.skip_unwanted)
                missing = [i for i in indices if i not in images]
                if missing and self.skip_unwanted:  # never seen; safe whatever a decoder does with skip_frame
                    images.update(self._decode_seeking(missing, skip=False))
        except av.FFmpegError as error:
            raise VideoDecodeError(self.path, f"{type(error).__name__}: {error}") from error
        missing = [i for i in indices if i not in images]
        if missing:
            raise VideoDecodeError(
                self.path, f"frames {missing[:5]} could not be decoded (truncated or corrupt)"
            )
        return _to_tensor([images[i] for i in indices], self.path)

    def _decode_sequential(self, indices: list[int]) -> dict[int, np.ndarray]:
        """Decode from the first frame, counting; used only when the packets carry no usable timestamps."""
        self._open()  # a fresh decoder: skip_frame at its default, every frame output
        wanted, images = set(indices), {}
        for position, frame in enumerate(self._container.decode(self._stream)):
            self.frames_decoded += 1
            if position in wanted:
                images[position] = frame.to_ndarray(format="rgb24")
            if position >= indices[-1]:
                break
        return images

    def _decode_seeking(self, indices: list[int], skip: bool) -> dict[int, np.ndarray]:
        """Decode the sorted ``indices`` run by run: a run starts at the keyframe before its first frame and takes
        the following frames up to the next one that has a keyframe after the previous wanted frame (seeking
        there is cheaper than decoding on)."""
        runs: list[tuple[int, list[int]]] = []  # (keyframe, wanted frames from it on)
        for target in indices:
            keyframe = self._keyframe_before(target)
            if runs and keyframe <= runs[-1][1][-1]:
                runs[-1][1].append(target)
            else:
                runs.append((keyframe, [target]))
        images = {}
        for keyframe, run in runs:
            pending = set(run)  # wanted and not output yet: what the decoder must not drop
            for frame in self._seek(keyframe, pending, skip):
                self.frames_decoded += 1
                index = self._by_pts.get(frame.pts, -1)
                if index in pending:
                    images[index] = frame.to_ndarray(format="rgb24")
                    pending.discard(index)
                if not pending or index >= run[-1]:
                    break
        return images

    def _keyframe_before(self, index: int) -> int:
        slot = bisect.bisect_right(self._keyframes, index) - 1
        return self._keyframes[slot] if slot >= 0 else 0

    def _seek(self, keyframe: int, pending: set[int], skip: bool):
        """Decoded frames from ``keyframe`` on. Seeks by timestamp and checks where the demuxer landed; if it
        landed past the keyframe (or on a frame we cannot place), reopens the file and decodes from the start."""
        self._container.seek(self._pts[keyframe], stream=self._stream, backward=True, any_frame=False)
        frames = self._decode_from_here(pending, skip)
        first = next(frames, None)
        if first is not None and 0 <= self._by_pts.get(first.pts, -1) <= keyframe:
            return _chain(first, frames)
        self._open()  # a fresh demuxer at the start of the file is always exact
        return self._decode_from_here(pending, skip)

    def _decode_from_here(self, pending: set[int], skip: bool):
        """Frames decoded from the demuxer's position on (a seek has flushed the decoder), until the packets of
        all ``pending`` frames are sent: then the decoder is drained (its delayed frames output) and this ends.

        ``pending`` is live (the caller removes frames as they come out). With ``skip``, the packets of all other
        frames are sent with ``skip_frame = "NONREF"``, those of pending frames with ``"DEFAULT"``.
        """
        context = self._stream.codec_context
        skipping = False
        context.skip_frame = "DEFAULT"
        unsent = set(pending)  # pending frames whose packets are still ahead
        for packet in self._container.demux(self._stream):
            index = self._by_pts.get(packet.pts) if packet.pts is not None else -1
            if skip and packet.pts is not None and (index not in pending) != skipping:
                skipping = not skipping
                context.skip_frame = "NONREF" if skipping else "DEFAULT"
            self.packets_skippable += skipping
            yield from packet.decode()
            unsent.discard(index)
            if not unsent:  # every wanted frame is in the decoder: flush it rather than decode on
                yield from context.decode(None)
                return

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _chain(first, rest):
    yield first
    yield from rest


class FrameFolderReader(_ReaderBase):
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

    def _read_sorted(self, indices: list[int]) -> torch.Tensor:
        images = []
        for i in indices:
            try:
                with Image.open(self._files[i]) as image:
                    images.append(np.asarray(image.convert("RGB")))
            except (OSError, ValueError) as error:  # PIL raises UnidentifiedImageError (an OSError) for junk
                raise VideoDecodeError(self._files[i], f"unreadable frame image: {error}") from error
        return _to_tensor(images, self.path)


class TorchCodecReader(_ReaderBase):
    """torchcodec's exact-seek decoder (scans the file once at open, like our PyAV index)."""

    def __init__(self, path: Path, threads: int = 1):
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

    def _read_sorted(self, indices: list[int]) -> torch.Tensor:
        try:
            return self._decoder.get_frames_at(indices=indices).data
        except (RuntimeError, ValueError, IndexError) as error:
            raise VideoDecodeError(self.path, str(error)) from error


class DecordReader(_ReaderBase):
    """decord, as the reference uses it (random access by index, one thread)."""

    def __init__(self, path: Path, threads: int = 1):
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

    def _read_sorted(self, indices: list[int]) -> torch.Tensor:
        import decord

        try:
            batch = self._reader.get_batch(indices).asnumpy()
        except (RuntimeError, decord.DECORDError) as error:
            raise VideoDecodeError(self.path, str(error)) from error
        self._reader.seek(0)  # releases decord's frame cache (its known memory leak, decord issue #197)
        return torch.from_numpy(batch).permute(0, 3, 1, 2)


@functools.cache
def _torchcodec_works() -> bool:
    """Importable AND able to load FFmpeg: torchcodec imports without FFmpeg and fails on first use."""
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception:  # ImportError, or OSError/RuntimeError from older versions when FFmpeg is missing
        return False
    return getattr(torchcodec, "ffmpeg_major_version", 0) is not None  # None: FFmpeg libraries not found


@functools.cache
def _decord_works() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


_BACKENDS = {
    "pyav": PyAVReader,
    "torchcodec": TorchCodecReader,
    "decord": DecordReader,
    "frames": FrameFolderReader,
}
BACKENDS: tuple[str, ...] = ("auto", *_BACKENDS)  # what data.backend and --backend accept
_PROBES = {
    "pyav": lambda: True,
    "torchcodec": _torchcodec_works,
    "decord": _decord_works,
    "frames": lambda: True,
}


def available_backends() -> list[str]:
    """Backends usable in this environment, in order of preference for files."""
    return [name for name, works in _PROBES.items() if works()]


def open_video(path: str | Path, backend: str = "auto", threads: int = 1) -> VideoReader:
    """Open a video file (or a frame directory) for indexed reading.

    ``backend="auto"`` picks ``frames`` for directories and ``pyav`` for files. ``threads`` is the decoder's
    thread count: keep 1 inside DataLoader workers (the workers are the parallelism).
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
    return _BACKENDS[backend](path, threads=threads)
