"""The default backend: PyAV with a packet index, seeking to keyframes and skipping unwanted non-reference frames."""

from __future__ import annotations

import bisect
from pathlib import Path

import av
import torch
from av.video.reformatter import VideoReformatter

from vificlip.data.video_reader import ReaderBase, VideoDecodeError, check_frame_count, check_frame_size


class PyAVReader(ReaderBase):
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
        # One converter for every frame of this reader: frame.to_ndarray(format=...) builds a new swscale context
        # per call, which cost 3.7x the conversion itself on small frames (bit-identical output).
        self._to_rgb = VideoReformatter()
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
        return self._finish(self._to_rgb.reformat(frame, format="rgb24").to_ndarray(), frame.rotation)

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
