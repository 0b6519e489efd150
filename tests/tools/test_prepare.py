"""`prepare`: same frames in the same order at short side 256 with short GOPs, same relative paths, resumable,
unreadable sources skipped and listed, lists resolved like the dataset (per-class archives → flat output)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from testkit import frame_index, indexed_frames

from vificlip.cli import main
from vificlip.data.decode import open_video
from vificlip.data.writer import write_video
from vificlip.tools.prepare import (
    PrepareError,
    PrepareOptions,
    output_size,
    prepare_dataset,
    transcode_video,
)


def decoded(path: Path) -> tuple[list[int], list[int], tuple[int, int], float, str]:
    """(frame indices in decode order, keyframe positions, (width, height), fps, codec) of a sequential decode."""
    ids, keys = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for position, frame in enumerate(container.decode(stream)):
            ids.append(frame_index(frame.to_ndarray(format="rgb24")))
            if frame.key_frame:
                keys.append(position)
        size = (stream.codec_context.width, stream.codec_context.height)
        return ids, keys, size, float(stream.average_rate), stream.codec_context.name


def test_output_size_short_side_even_and_never_upscaled():
    assert output_size(340, 256, 256) == (340, 256)
    assert output_size(1280, 720, 256) == (456, 256)  # 455.1 → nearest even 456
    assert output_size(400, 300, 256) == (342, 256)  # 341.3 → nearest even 342
    assert output_size(240, 320, 256) == (240, 320)  # short side 240 < 256: kept
    assert output_size(321, 241, 256) == (320, 240)  # odd sides made even


@pytest.mark.parametrize(
    ("suffix", "codec", "out_codec"), [(".mp4", "libx264", "h264"), (".webm", "libvpx-vp9", "vp9")]
)
def test_transcode_keeps_every_frame_in_order(tmp_path, suffix, codec, out_codec):
    source = write_video(
        tmp_path / f"src{suffix}", indexed_frames(37, 300, 400), fps=30, codec=codec, keyframe_interval=250
    )
    target = tmp_path / f"out{suffix}"
    assert transcode_video(source, target, PrepareOptions(gop=8)) == (37, 0)
    ids, keys, size, fps, name = decoded(target)
    assert ids == list(range(37))
    assert size == (342, 256) and fps == 30 and name == out_codec
    assert keys == [0, 8, 16, 24, 32]
    with open_video(target, "pyav") as reader:  # the pipeline's seeking reader lands on the same frames
        frames = reader.read([30, 5, 17, 5, 36]).permute(0, 2, 3, 1).numpy()
    assert [frame_index(frame) for frame in frames] == [30, 5, 17, 5, 36]


def test_prepare_tree_resumable_with_unreadable_sources(tmp_path):
    source, target = tmp_path / "src", tmp_path / "dst"
    write_video(source / "a.mp4", indexed_frames(20, 64, 96))
    write_video(source / "sub dir" / "b c.avi", indexed_frames(12, 64, 96), codec="mpeg4")
    (source / "broken.mp4").write_bytes(bytes(range(256)) * 8)
    (source / "notes.txt").write_text("not a video")

    report = prepare_dataset(source, target, workers=1, progress=False)
    assert (report.total, report.transcoded, report.skipped_existing) == (3, 2, 0)
    assert [p for p, _ in report.failed] == ["broken.mp4"]
    assert decoded(target / "sub dir" / "b c.avi")[0] == list(range(12))
    assert decoded(target / "sub dir" / "b c.avi")[4] == "h264"  # h264 inside the .avi name
    assert not (target / "broken.mp4").exists() and not list(target.rglob(".*partial*"))
    assert (target / "unreadable.txt").read_text() == "broken.mp4\n"
    saved = json.loads((target / "prepare_report.json").read_text())
    assert saved["transcoded"] == 2 and saved["failed"][0]["path"] == "broken.mp4"

    stamp = (target / "a.mp4").stat().st_mtime_ns
    again = prepare_dataset(source, target, workers=1, progress=False)
    assert (again.transcoded, again.skipped_existing, len(again.failed)) == (0, 2, 1)
    assert (target / "a.mp4").stat().st_mtime_ns == stamp


def test_prepare_from_lists_flattens_a_per_class_archive(tmp_path):
    source, target = tmp_path / "hmdb", tmp_path / "prepared"
    write_video(source / "brush_hair" / "x_brush_hair_u_0.avi", indexed_frames(10, 64, 96), codec="mpeg4")
    frames = source / "cartwheel" / "y_cartwheel_f_1"
    frames.mkdir(parents=True)
    for i in range(3):
        (frames / f"img_{i + 1:05d}.jpg").write_bytes(b"jpeg")
    listing = tmp_path / "val1.txt"
    listing.write_text("x_brush_hair_u_0.avi 0\ny_cartwheel_f_1 1\nmissing.avi 2\n")
    report = prepare_dataset(source, target, lists=[listing, listing], workers=1, progress=False)
    assert (report.total, report.transcoded, report.copied) == (3, 1, 1)
    assert decoded(target / "x_brush_hair_u_0.avi")[0] == list(range(10))
    assert sorted(p.name for p in (target / "y_cartwheel_f_1").iterdir()) == [
        f"img_{i:05d}.jpg" for i in (1, 2, 3)
    ]
    assert report.missing[0][0] == "missing.avi" and "val1.txt:3" in report.missing[0][1]
    assert (target / "unreadable.txt").read_text() == "missing.avi\n"


def test_cli_prepare_parallel_workers(tmp_path, capsys):
    source = tmp_path / "src"
    for name in ("a.mp4", "b.mp4", "c/d.mp4"):
        write_video(source / name, indexed_frames(9, 64, 96), keyframe_interval=250)
    assert (
        main(["prepare", str(source), str(tmp_path / "dst"), "--workers", "2", "--gop", "4", "--no-progress"])
        == 0
    )
    assert "3 videos: 3 transcoded" in capsys.readouterr().out
    ids, keys, *_ = decoded(tmp_path / "dst" / "c" / "d.mp4")
    assert ids == list(range(9)) and keys == [0, 4, 8]


def test_bad_arguments(tmp_path):
    with pytest.raises(PrepareError, match="short_side is 255"):
        PrepareOptions(short_side=255)
    with pytest.raises(PrepareError, match="not a directory"):
        prepare_dataset(tmp_path / "nope", tmp_path / "dst", progress=False)
    (tmp_path / "same").mkdir()
    with pytest.raises(PrepareError, match="same folder"):
        prepare_dataset(tmp_path / "same", tmp_path / "same", progress=False)
    assert main(["prepare", str(tmp_path / "nope"), str(tmp_path / "dst"), "--no-progress"]) == 2
