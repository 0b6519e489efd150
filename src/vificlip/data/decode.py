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
above :data:`MAX_FRAME_PIXELS` is refused. A file with fewer readable frames than its container declares (a
half-downloaded MP4) is refused unless ``allow_truncated`` is set (then a warning says how many are missing).
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import torch
from PIL import Image, ImageOps

from vificlip.errors import VificlipError

log = logging.getLogger(__name__)

FRAME_FILE = re.compile(r"^img_(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
#: every file suffix a folder is expanded to (predict, embed, prepare); anything FFmpeg demuxes could be added
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .3gp .3g2 .mkv .webm .avi .wmv .asf .flv .f4v .mpg .mpeg .m2v .vob .ts .mts .m2ts .ogv .ogg "
    ".gif .mxf .nut .y4m .divx .dv".split()
)
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


def rotate_upright(frame: torch.Tensor, rotation: float) -> torch.Tensor:
    """[...,H,W] turned by ``rotation`` degrees counter-clockwise (FFmpeg's display-matrix angle), as players do."""
    turns = round(rotation / 90) % 4
    return torch.rot90(frame, turns, dims=(-2, -1)) if turns else frame


def is_frame_folder(path: Path) -> bool:
    """A directory holding ``img_<number>.jpg|png`` files (the ``frames`` backend)."""
    return path.is_dir() and any(FRAME_FILE.match(p.name) for p in path.iterdir())


def expand_videos(folder: Path) -> list[Path]:
    """Every video file (by :data:`VIDEO_SUFFIXES`) and frame folder under ``folder``, sorted; frame folders are
    not searched further."""
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            found.extend([entry] if is_frame_folder(entry) else expand_videos(entry))
        elif entry.suffix.lower() in VIDEO_SUFFIXES and entry.is_file():
            found.append(entry)
    return found


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


class _ReaderBase:
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


class PyAVReader(_ReaderBase):
    """PyAV decoding with a packet index, so seeks land on keyframes and frames are identified by timestamp.

    Decoding forward from a keyframe to a wanted frame, the packets of frames that are not wanted go to the decoder
    with ``skip_frame = "NONREF"``: it drops them if they are non-reference frames (h264 ``nal_ref_idc == 0``,
    mpeg4 B-frames, VP9 frames that refresh no reference), which by definition no other frame is decoded from, so
    every frame that is output is bit-identical to a front-to-back decode. Packets of wanted frames go with
    ``"DEFAULT"``. On B-frame sources (x264's defaults) this drops about 40 % of the frames. Once the packets of all
    wanted frames are in, the decoder is drained instead of fed further packets. Should a wanted frame still not
    come out (a decoder that ties output to the frames it was fed: dav1d on SVT-AV1 files keeps dropping frames
    once it has skipped some), the missing frames are decoded again by a fresh decoder without skipping, and this
    reader stops skipping.
    """

    #: let the decoder drop unwanted non-reference frames (``False``: decode every frame from the keyframe on)
    skip_unwanted: bool = True

    def __init__(self, path: Path, threads: int = 1, allow_truncated: bool = False):
        self.path = path
        self._threads = threads
        self._allow_truncated = allow_truncated
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
        check_frame_size(self.path, self._stream.codec_context.width, self._stream.codec_context.height)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else None

    def _index_packets(self) -> None:
        """Demux every packet once: the true frame count (containers may say 0, e.g. webm) and a timestamp map.

        Counts what a sequential decode outputs: not the flush packet, not packets an edit list discards, and
        not the frames before the first keyframe (a clip cut without re-encoding), which FFmpeg cannot decode.
        Fewer packets than the container declares (or a packet cut off by the end of the file) is a truncated
        file: :func:`check_frame_count` decides.
        """
        demuxed, corrupt, packets = 0, 0, []
        for p in self._container.demux(self._stream):
            if p.size == 0 and p.dts is None:  # the flush packet PyAV appends
                continue
            if p.is_corrupt:  # e.g. the last packet of a cut file, whose data ends with the file
                corrupt += 1
                continue
            demuxed += 1
            if p.size and not p.is_discard:
                packets.append((p.pts, p.is_keyframe))
        declared = max(self._stream.frames, demuxed + corrupt)
        self.missing_frames = check_frame_count(self.path, demuxed, declared, self._allow_truncated)
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

    def _read_sorted(self, indices: list[int]) -> list[torch.Tensor]:
        try:
            if self._by_pts is None:
                images = self._decode_sequential(indices)
            else:
                images = self._decode_seeking(indices, skip=self.skip_unwanted)
                missing = [i for i in indices if i not in images]
                if (
                    missing and self.skip_unwanted
                ):  # a decoder that skipped once may keep dropping: a fresh one
                    self.skip_unwanted = False  # this file's decoder does not honour skipping: stop asking
                    self._open()
                    images.update(self._decode_seeking(missing, skip=False))
        except av.FFmpegError as error:
            raise VideoDecodeError(self.path, f"{type(error).__name__}: {error}") from error
        missing = [i for i in indices if i not in images]
        if missing:
            raise VideoDecodeError(
                self.path, f"frames {missing[:5]} could not be decoded (truncated or corrupt)"
            )
        return [images[i] for i in indices]

    def _image(self, frame: av.VideoFrame) -> torch.Tensor:
        check_frame_size(self.path, frame.width, frame.height)  # the size may change mid-stream
        return self._finish(frame.to_ndarray(format="rgb24"), frame.rotation)

    def _decode_sequential(self, indices: list[int]) -> dict[int, torch.Tensor]:
        """Decode from the first frame, counting; used only when the packets carry no usable timestamps."""
        self._open()  # a fresh decoder: skip_frame at its default, every frame output
        wanted, images = set(indices), {}
        for position, frame in enumerate(self._container.decode(self._stream)):
            self.frames_decoded += 1
            if position in wanted:
                images[position] = self._image(frame)
            if position >= indices[-1]:
                break
        return images

    def _decode_seeking(self, indices: list[int], skip: bool) -> dict[int, torch.Tensor]:
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
                    images[index] = self._image(frame)
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


def _display_rotation(path: Path) -> float:
    """The rotation a player applies (counter-clockwise degrees), from the first frame PyAV decodes; for the
    backends that ignore the display matrix."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0), None)
    except av.FFmpegError:
        return 0
    return frame.rotation if frame is not None else 0


class TorchCodecReader(_ReaderBase):
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
        self._rotation = _display_rotation(path)
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


class DecordReader(_ReaderBase):
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
        self._rotation = _display_rotation(path)  # decord ignores the display matrix

    def _read_sorted(self, indices: list[int]) -> list[torch.Tensor]:
        import decord

        try:
            batch = self._reader.get_batch(indices).asnumpy()
        except (RuntimeError, decord.DECORDError) as error:
            raise VideoDecodeError(self.path, str(error)) from error
        self._reader.seek(0)  # releases decord's frame cache (its known memory leak, decord issue #197)
        return [self._finish(image, self._rotation) for image in batch]


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
