"""Decoding real-world files: display rotation, EXIF orientation, truncated downloads, frame-size limits, the
per-frame reduction that bounds memory, and the one list of video types a folder expands to."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from testkit import indexed_frames

from vificlip.data import video_reader
from vificlip.data.decode import open_video
from vificlip.data.transforms import build_test_transform
from vificlip.data.video_files import expand_videos
from vificlip.data.video_reader import VideoDecodeError
from vificlip.data.writer import write_video

LOSSLESS = {"codec": "libx264rgb", "options": {"qp": "0"}}  # stored pixels come back exactly


def stored_sideways(upright: np.ndarray, rotation: int) -> np.ndarray:
    """What a phone stores for a clip shown upright with a display rotation of ``rotation`` (ccw) degrees."""
    return np.ascontiguousarray(np.rot90(upright, -(rotation // 90), axes=(1, 2)))


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_video_reads_upright(tmp_path, rotation, frame_ids):
    upright = indexed_frames(12)  # [T,64,96,3]
    path = write_video(
        tmp_path / "phone.mp4", stored_sideways(upright, rotation), rotation=rotation, **LOSSLESS
    )
    with open_video(path) as reader:
        frames = reader.read([0, 7, 11, 7])
    assert frames.shape == (4, 3, 64, 96)  # as shown, not as stored (96×64 for 90/270)
    assert torch.equal(frames.permute(0, 2, 3, 1), torch.from_numpy(upright[[0, 7, 11, 7]]))
    assert frame_ids(frames) == [0, 7, 11, 7]


def test_rotated_video_upright_after_the_per_frame_reduction(tmp_path):
    """The reduction sees upright frames: its crop is the upright clip's crop."""
    upright = indexed_frames(6, height=64, width=128)
    rotated = write_video(tmp_path / "r.mp4", stored_sideways(upright, 90), rotation=90, **LOSSLESS)
    plain = write_video(tmp_path / "u.mp4", upright, **LOSSLESS)
    transform = build_test_transform(input_size=32)
    with open_video(rotated) as a, open_video(plain) as b:
        assert torch.equal(a.read(range(6), transform.reduce), b.read(range(6), transform.reduce))


def test_frame_folder_applies_exif_orientation(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    image = np.zeros((40, 60, 3), np.uint8)
    image[:10, :20] = 255  # a white block top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display" (a phone held upright)
    Image.fromarray(image).save(folder / "img_00001.png", exif=exif)
    with open_video(folder) as reader:
        frame = reader.read([0])[0].permute(1, 2, 0).numpy()
    assert frame.shape == (60, 40, 3)
    np.testing.assert_array_equal(frame, np.rot90(image, -1))  # the block is now top-right


def faststart_video(tmp_path, frames: int = 60):
    """An MP4 with its index at the front (as web servers want), and the same file cut at 60 %."""
    noise = np.random.default_rng(0).integers(0, 256, (frames, 64, 96, 3), dtype=np.uint8)
    full = write_video(tmp_path / "full.mp4", noise, keyframe_interval=10,
                       container_options={"movflags": "+faststart"})  # fmt: skip
    data = full.read_bytes()
    assert data[24:40].find(b"moov") >= 0 or b"moov" in data[:64]  # the index comes first
    cut = tmp_path / "half_downloaded.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    return full, cut


def test_truncated_faststart_file_is_an_error_by_default(tmp_path):
    _, cut = faststart_video(tmp_path)
    with pytest.raises(VideoDecodeError, match=r"truncated: the container declares 60 frames but only \d+"):
        open_video(cut)


def test_truncated_file_allowed_reads_the_frames_it_has_exactly(tmp_path, caplog):
    full, cut = faststart_video(tmp_path)
    with open_video(cut, allow_truncated=True) as reader, open_video(full) as whole:
        assert 20 < reader.num_frames < 60
        assert reader.missing_frames == 60 - reader.num_frames
        indices = list(range(reader.num_frames))
        assert torch.equal(reader.read(indices), whole.read(indices))
    assert "truncated" in caplog.text and "missing" in caplog.text
    with open_video(full) as whole:
        assert whole.missing_frames == 0


def test_frames_above_the_pixel_limit_are_refused(indexed_video, monkeypatch, frame_folder):
    video, folder = indexed_video(5), frame_folder(3)
    monkeypatch.setattr(video_reader, "MAX_FRAME_PIXELS", 64 * 96 - 1)
    with pytest.raises(VideoDecodeError, match="6,143 pixels"):
        open_video(video)
    with open_video(folder) as reader, pytest.raises(VideoDecodeError, match="above the limit"):
        reader.read([0])


def test_resized_frames_above_the_pixel_limit_are_refused(tmp_path, monkeypatch):
    """An extreme aspect ratio grows enormous when its short side is resized up: refused, not allocated."""
    path = write_video(tmp_path / "strip.mp4", np.zeros((3, 16, 1024, 3), np.uint8))
    monkeypatch.setattr(video_reader, "MAX_FRAME_PIXELS", 100_000)  # 16×1024 passes, 256×16384 would not
    with open_video(path) as reader, pytest.raises(VideoDecodeError, match="a resized frame"):
        reader.read([0], lambda frame: torch.zeros(3, 256, 16384, dtype=torch.uint8))


@pytest.mark.parametrize("num_crops", [1, 3])
@pytest.mark.parametrize("size", [(64, 96), (96, 64), (20, 200)])
def test_per_frame_reduction_gives_the_whole_clip_pipeline_exactly(num_crops, size):
    """reduce per frame, then finish = the reference order (resize the clip, crop, normalise), bit for bit."""
    video = torch.randint(
        0, 256, (5, 3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    transform = build_test_transform(input_size=32, num_crops=num_crops)
    per_frame = torch.stack([transform.reduce(frame) for frame in video])
    assert per_frame.shape[-1] * per_frame.shape[-2] <= 32 * max(size) * 32 // min(size) + 32 * 32
    assert torch.equal(transform.finish(per_frame), transform(video))


def test_repeated_indices_are_decoded_and_reduced_once(indexed_video, frame_ids):
    calls = []

    def reduce(frame):
        calls.append(frame.shape)
        return frame[:, :8, :]

    with open_video(indexed_video(3)) as reader:
        frames = reader.read([0, 0, 1, 1, 2, 2, 2, 0], reduce)
    assert len(calls) == 3 and frames.shape == (8, 3, 8, 96)
    assert frame_ids(frames) == [0, 0, 1, 1, 2, 2, 2, 0]


def test_a_folder_expands_to_every_video_type_and_frame_folders(tmp_path):
    """One list (VIDEO_SUFFIXES) for predict, embed and prepare: phone, camcorder, broadcast, web and GIF."""
    kinds = {".3gp": "libx264", ".mts": "libx264", ".m2ts": "libx264", ".ts": "mpeg2video", ".ogv": "libvpx",
             ".gif": "gif", ".MOV": "libx264", ".mpg": "mpeg2video", ".wmv": "wmv2", ".flv": "flv"}  # fmt: skip
    for suffix, codec in kinds.items():
        write_video(tmp_path / "clips" / f"clip{suffix}", indexed_frames(6), codec=codec)
    frames = tmp_path / "clips" / "camera" / "take1"
    frames.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(indexed_frames(3)[i]).save(frames / f"img_{i + 1:05d}.png")
    (tmp_path / "clips" / "notes.txt").write_text("not a video")
    found = expand_videos(tmp_path / "clips")
    assert sorted(p.name for p in found) == sorted([f"clip{s}" for s in kinds] + ["take1"])
    for path in found:  # and every one of them decodes
        with open_video(path) as reader:
            assert reader.read([reader.num_frames - 1]).shape[-2:] == (64, 96)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_matches_what_the_ffmpeg_player_shows(tmp_path, rotation):
    """The direction check that a PyAV write/read round trip cannot give: FFmpeg's own autorotation (what ffplay
    and the ffmpeg CLI show) of the same file equals our frame. Needs the ffmpeg CLI (.ci/run installs it)."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "the ffmpeg CLI is required for this test (apt-get install ffmpeg; .ci/run installs it)"
    frames = np.random.default_rng(rotation).integers(0, 256, (6, 32, 48, 3), dtype=np.uint8)
    path = write_video(tmp_path / "phone.mp4", frames, rotation=rotation, **LOSSLESS)
    with open_video(path) as reader:
        ours = reader.read([4])[0].permute(1, 2, 0).numpy()  # [H,W,3] as we show it
    shown = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-vf", r"select=eq(n\,4)", "-frames:v", "1",
                            "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout  # fmt: skip
    assert len(shown) == ours.size and ours.shape[:2] == ((48, 32) if rotation % 180 else (32, 48))
    np.testing.assert_array_equal(np.frombuffer(shown, np.uint8).reshape(ours.shape), ours)
