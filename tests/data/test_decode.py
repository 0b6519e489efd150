"""Decoders: true frame counts, exact indexed reads (checked against a sequential decode), minimal decoding, bad input."""

from __future__ import annotations

import pickle
import random

import av
import pytest
import torch
from PIL import Image

from vificlip.data.decode import available_backends, open_video
from vificlip.data.pyav_reader import PyAVReader
from vificlip.data.video_reader import VideoDecodeError
from vificlip.errors import VificlipError

NO_SCENECUT = {"x264-params": "scenecut=0"}  # keyframes exactly every keyframe_interval frames


def sequential_frames(path) -> torch.Tensor:
    """Every frame by a plain front-to-back PyAV decode: the ground truth for "frame i"."""
    with av.open(str(path)) as container:
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    return torch.stack(frames).permute(0, 3, 1, 2)


def test_pyav_and_frames_always_available():
    assert {"pyav", "frames"} <= set(available_backends())


def test_frame_count_is_true_count(indexed_video, codec, backend):
    suffix, encoder = codec
    path = indexed_video(45, suffix=suffix, codec=encoder)
    with open_video(path, backend) as reader:
        assert reader.num_frames == 45 == len(sequential_frames(path))


def test_webm_container_reports_zero_frames_but_we_count_them(indexed_video):
    path = indexed_video(30, suffix=".webm", codec="libvpx-vp9")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # the container "lies"
    with open_video(path) as reader:
        assert reader.num_frames == 30


def test_read_returns_exact_frames_in_given_order(indexed_video, codec, backend, frame_ids):
    suffix, encoder = codec
    path = indexed_video(60, suffix=suffix, codec=encoder, keyframe_interval=8)
    truth = sequential_frames(path)
    rng = random.Random(0)
    with open_video(path, backend) as reader:
        for _ in range(12):
            indices = [rng.randrange(60) for _ in range(rng.randint(1, 12))]
            frames = reader.read(indices)
            assert frames.dtype == torch.uint8 and frames.shape == (len(indices), 3, 64, 96)
            assert frame_ids(frames) == indices
            if backend == "pyav":  # same decoder as the truth, so seeking must give bit-identical pixels
                assert torch.equal(frames, truth[indices])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_stream_cut_before_a_keyframe_counts_only_decodable_frames(
    indexed_video, tmp_path, suffix, frame_ids
):
    """A clip cut without re-encoding starts with packets FFmpeg cannot decode; frame 0 is the first decodable.

    PyAV only: torchcodec 0.16 counts the orphaned packets and fails to seek to them (a VideoDecodeError), and
    decord 0.6 counts them too and silently returns shifted frames.
    """
    source = indexed_video(40, keyframe_interval=10, options=NO_SCENECUT)
    cut = tmp_path / f"cut{suffix}"
    with av.open(str(source)) as src, av.open(str(cut), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for number, packet in enumerate(p for p in src.demux(video=0) if p.size):
            if (
                number >= 4
            ):  # drop the first keyframe and 3 more packets: 6 orphaned frames before keyframe 10
                packet.stream = out
                dst.mux(packet)
    truth = sequential_frames(cut)
    assert frame_ids(truth)[:2] == [10, 11] and len(truth) == 30
    with open_video(cut, "pyav") as reader:
        assert reader.num_frames == 30
        assert frame_ids(reader.read([0, 29, 5, 17])) == [10, 39, 15, 27]


def test_read_duplicates_and_reverse_order(indexed_video, backend, frame_ids):
    path = indexed_video(20)
    with open_video(path, backend) as reader:
        assert frame_ids(reader.read([19, 3, 3, 0, 19, 7])) == [19, 3, 3, 0, 19, 7]


@pytest.fixture
def no_skipping(monkeypatch):
    """Decode every frame from the keyframe on (the decoder drops nothing): frame counts are positions."""
    monkeypatch.setattr(PyAVReader, "skip_unwanted", False)


def test_pyav_decodes_only_from_the_keyframe_before_each_wanted_frame(indexed_video, no_skipping):
    path = indexed_video(60, keyframe_interval=10, options=NO_SCENECUT)
    with open_video(path, "pyav") as reader:
        assert reader._keyframes == [0, 10, 20, 30, 40, 50]
        reader.read([57])
        assert reader.frames_decoded == 6  # 50..54 and 57; 55, 56 follow 57 in decode order: never decoded
    with open_video(path, "pyav") as reader:
        reader.read([1, 2, 57, 58])  # two groups: decode 0..2, then seek forward instead of decoding 3..49
        assert reader.frames_decoded == 3 + 9  # 0..2, then 50..58


def test_pyav_continues_instead_of_seeking_within_a_gop(indexed_video, no_skipping):
    path = indexed_video(60, keyframe_interval=30, options=NO_SCENECUT)
    with open_video(path, "pyav") as reader:
        assert reader._keyframes[:2] == [0, 30]
        reader.read([3, 10, 20])
        assert reader.frames_decoded == 21  # one forward pass 0..20, no re-seek to frame 0


# Sources with B-frames (non-reference frames the decoder may drop) and without, in the three containers; x264's
# defaults use a B-pyramid (B-frames that are references), "scenecut=0" with GOP 250 is one keyframe per clip
# (Kinetics-like), libvpx's alt-ref frames are hidden frames packed with a visible one.
SKIP_SOURCES = {
    "h264-x264-defaults": (".mp4", "libx264", None, None),
    "h264-bf2-gop16": (".mp4", "libx264", {"bf": "2"}, 16),
    "h264-one-keyframe": (".mkv", "libx264", NO_SCENECUT, 250),
    "h264-no-pyramid": (".mp4", "libx264", {"x264-params": "b-pyramid=none"}, 24),
    "mpeg4-bf2-avi": (".avi", "mpeg4", {"bf": "2"}, 16),
    "mpeg4-bf2-mp4": (".mp4", "mpeg4", {"bf": "2"}, 16),
    "mpeg4-avi": (".avi", "mpeg4", None, 12),
    "vp9-webm": (".webm", "libvpx-vp9", {"auto-alt-ref": "1", "lag-in-frames": "16"}, 30),
    "hevc-x265-mp4": (".mp4", "libx265", {"x265-params": "log-level=error"}, 16),
    "hevc-x265-mkv": (".mkv", "libx265", {"x265-params": "log-level=error:bframes=3"}, 24),
    # dav1d keeps dropping frames once it was sent packets with skip_frame=NONREF: the fresh-decoder retry
    "av1-svt-mp4": (".mp4", "libsvtav1", None, 16),
    "av1-svt-mkv": (".mkv", "libsvtav1", None, 32),
}
# AV1 encoders the bundled FFmpeg may have; libsvtav1 is in the PyAV wheel we pin (checked below), the others are
# added to the table where present.
for _encoder in ("libaom-av1", "librav1e"):
    if _encoder in av.codecs_available:
        SKIP_SOURCES[f"av1-{_encoder}-mkv"] = (".mkv", _encoder, None, 16)


def test_the_exactness_table_covers_h264_hevc_vp9_and_av1():
    """Every codec family the issue names is in the table above; the pinned PyAV wheel has their encoders."""
    assert {"libx264", "libx265", "libvpx-vp9", "libsvtav1"} <= set(av.codecs_available)
    assert {"libx264", "libx265", "libvpx-vp9", "libsvtav1"} <= {
        codec for _, codec, _, _ in SKIP_SOURCES.values()
    }


HAS_NONREF_FRAMES = {"h264-x264-defaults", "h264-bf2-gop16", "h264-one-keyframe", "h264-no-pyramid",
                     "mpeg4-bf2-avi", "mpeg4-bf2-mp4"}  # fmt: skip


@pytest.mark.parametrize("source", list(SKIP_SOURCES))
def test_pyav_skipping_unwanted_frames_is_exact(indexed_video, frame_ids, source, monkeypatch):
    """Letting the decoder drop unwanted non-reference frames changes no output pixel: random index sets (and
    sorted training-like ones) are bit-identical to a sequential decode, through one reader (seeks, drains and
    continues), and fewer frames are decoded on sources with non-reference frames."""
    suffix, codec, options, gop = SKIP_SOURCES[source]
    path = indexed_video(75, suffix=suffix, codec=codec, options=options, keyframe_interval=gop)
    truth = sequential_frames(path)
    if source in HAS_NONREF_FRAMES:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONREF"
            assert sum(1 for _ in container.decode(stream)) < len(truth)  # the source has droppable frames
    rng = random.Random(source)
    requests = [[rng.randrange(75) for _ in range(rng.randint(1, 16))] for _ in range(24)]
    requests += [sorted(rng.sample(range(75), 16)) for _ in range(8)]
    decoded = {}
    for skip in (True, False):
        monkeypatch.setattr(PyAVReader, "skip_unwanted", skip)
        with open_video(path, "pyav") as reader:
            for indices in requests:
                frames = reader.read(indices)
                assert torch.equal(frames, truth[indices]), (skip, indices)
                assert frame_ids(frames) == indices
            decoded[skip] = reader.frames_decoded
            assert (reader.packets_skippable > 0) == skip
    if source in HAS_NONREF_FRAMES:
        assert decoded[True] < decoded[False]


def test_pyav_decodes_again_without_skipping_if_a_wanted_frame_does_not_come_out(indexed_video, frame_ids):
    """The safety net: should a decoder not output a wanted frame while skipping, it is decoded again without."""
    path = indexed_video(40, keyframe_interval=20, options=NO_SCENECUT)
    truth = sequential_frames(path)
    with open_video(path, "pyav") as reader:
        decode_seeking, calls = reader._decode_seeking, []

        def lossy(indices, skip):
            calls.append((list(indices), skip))
            images = decode_seeking(indices, skip)
            if skip:
                images.pop(indices[-1])  # as if the decoder had dropped it
            return images

        reader._decode_seeking = lossy
        frames = reader.read([5, 33, 12])
        assert frame_ids(frames) == [5, 33, 12] and torch.equal(frames, truth[[5, 33, 12]])
        assert calls == [([5, 12, 33], True), ([33], False)]


def test_pyav_drains_after_the_last_wanted_frame(indexed_video, frame_ids, no_skipping):
    """With B-frames the decoder holds frames back; once the last wanted packet is in, it is flushed instead of
    fed on, so frames that come after the wanted one in decode order are never decoded."""
    path = indexed_video(60, keyframe_interval=10, options=NO_SCENECUT)
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    with open_video(path, "pyav") as reader:
        decode_order = [reader._by_pts[p.pts] for p in packets]
        sent = decode_order[decode_order.index(50) : decode_order.index(57) + 1]  # keyframe 50 up to 57
        assert len(sent) < 8  # some frames shown before 57 are decoded after it (B-frames)
        reader.read([57])
        assert reader.frames_decoded == len(sent)
        assert frame_ids(reader.read([41, 59, 0])) == [41, 59, 0]  # usable again after the flush


def test_pyav_without_usable_timestamps_counts_frames_from_the_start(indexed_video, frame_ids):
    with open_video(indexed_video(30, keyframe_interval=10)) as reader:
        reader._by_pts = None  # as for packets without unique timestamps: the sequential fallback
        assert frame_ids(reader.read([25, 3, 3])) == [25, 3, 3]
        assert reader.frames_decoded == 26


def test_reader_is_reusable_and_closes(indexed_video, frame_ids):
    path = indexed_video(30)
    with open_video(path) as reader:
        assert frame_ids(reader.read([25])) == [25]
        assert frame_ids(reader.read([2, 28])) == [2, 28]  # backwards after forwards
    assert reader._container is None


def test_out_of_range_and_empty_requests(indexed_video):
    with open_video(indexed_video(10)) as reader:
        with pytest.raises(IndexError, match="out of range"):
            reader.read([10])
        with pytest.raises(ValueError):
            reader.read([])


def test_frame_folder_backend(frame_folder, frame_ids):
    folder = frame_folder(25)
    (folder / "notes.txt").write_text("ignored")
    with open_video(folder) as reader:  # auto picks "frames" for a directory
        assert type(reader).__name__ == "FrameFolderReader"
        assert reader.num_frames == 25
        assert frame_ids(reader.read([24, 0, 12, 12])) == [24, 0, 12, 12]


def test_bad_files_raise_decode_error_naming_the_path(bad_video, bad_kind, backend):
    path = bad_video(bad_kind)
    with pytest.raises(VideoDecodeError) as caught:
        with open_video(path, backend) as reader:
            reader.read(range(reader.num_frames))
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, VificlipError)


def test_decode_error_survives_pickling():
    error = pickle.loads(pickle.dumps(VideoDecodeError("/data/a.mp4", "moov atom not found")))
    assert (
        isinstance(error, VideoDecodeError)
        and str(error) == "cannot decode video /data/a.mp4: moov atom not found"
    )


def test_bad_frame_folders(tmp_path, frame_folder):
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(VideoDecodeError, match="no frame files"):
        open_video(empty)
    folder = frame_folder(5)
    (folder / "img_00003.jpg").write_bytes(b"not a jpeg")
    with open_video(folder) as reader, pytest.raises(VideoDecodeError, match="img_00003.jpg"):
        reader.read([0, 2])
    Image.new("RGB", (32, 32)).save(folder / "img_00004.jpg")
    with open_video(folder) as reader, pytest.raises(VideoDecodeError, match="differ in size"):
        reader.read([0, 3])


def test_unknown_or_unusable_backend(indexed_video, tmp_path):
    path = indexed_video(5)
    with pytest.raises(VificlipError, match="unknown video backend"):
        open_video(path, "opencv")
    with pytest.raises(VideoDecodeError, match="is a directory"):
        open_video(tmp_path, "pyav")
    missing = [name for name in ("torchcodec", "decord") if name not in available_backends()]
    for name in missing:
        with pytest.raises(VificlipError, match="not usable"):
            open_video(path, name)
