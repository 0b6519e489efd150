"""Decoders: true frame counts, exact indexed reads (checked against a sequential decode), minimal decoding, bad input."""

from __future__ import annotations

import pickle
import random

import av
import pytest
import torch
from PIL import Image

from vificlip.data.decode import VideoDecodeError, available_backends, open_video
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


def test_pyav_decodes_only_from_the_keyframe_before_each_wanted_frame(indexed_video):
    path = indexed_video(60, keyframe_interval=10, options=NO_SCENECUT)
    with open_video(path, "pyav") as reader:
        assert reader._keyframes == [0, 10, 20, 30, 40, 50]
        reader.read([57])
        assert reader.frames_decoded == 8  # 50..57
    with open_video(path, "pyav") as reader:
        reader.read([1, 2, 57, 58])  # two groups: decode 0..2, then seek forward instead of decoding 3..49
        assert reader.frames_decoded == 3 + 9  # 0..2, then 50..58


def test_pyav_continues_instead_of_seeking_within_a_gop(indexed_video):
    path = indexed_video(60, keyframe_interval=30, options=NO_SCENECUT)
    with open_video(path, "pyav") as reader:
        assert reader._keyframes[:2] == [0, 30]
        reader.read([3, 10, 20])
        assert reader.frames_decoded == 21  # one forward pass 0..20, no re-seek to frame 0


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
