"""Fixtures for the data-pipeline tests: codecs, decoder backends, frame-id reading, frame folders, bad files.

Everything is a fixture or a parametrisation hook, never a name to import: several test folders have a
conftest.py, so ``from conftest import …`` resolves to whichever conftest pytest imported last. Test functions
that take ``codec`` run for every container/codec pair, ``backend`` for every file decoder (skipped with a reason
when not usable here), ``bad_kind`` for every kind of broken input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from vificlip.data.decode import available_backends, open_video

# (suffix, encoder) of the three container/codec pairs the issue names
CODECS = [(".mp4", "libx264"), (".avi", "mpeg4"), (".webm", "libvpx-vp9")]
FILE_BACKENDS = ["pyav", "torchcodec", "decord"]
BAD_KINDS = ["missing", "empty", "corrupt", "truncated", "zero_frames"]


def _backend_param(name: str):
    reason = f"backend {name!r} not usable here (not installed, or torchcodec without system FFmpeg)"
    return pytest.param(
        name, marks=pytest.mark.skipif(name not in available_backends(), reason=reason), id=name
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "codec" in metafunc.fixturenames:
        metafunc.parametrize("codec", CODECS, ids=[suffix[1:] for suffix, _ in CODECS])
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", [_backend_param(name) for name in FILE_BACKENDS])
    if "bad_kind" in metafunc.fixturenames:
        metafunc.parametrize("bad_kind", BAD_KINDS)


def _frame_ids(video: torch.Tensor) -> list[int]:
    """The painted index of every frame of a uint8 [T,3,H,W] tensor (8 bars of width W//8, read at mid-height)."""
    height, width = video.shape[-2:]
    bar = width // 8
    centre = video[:, :, height // 2, :].float().mean(dim=1)  # [T, W]
    bits = centre[:, [b * bar + bar // 2 for b in range(8)]] > 127
    return (bits.long() * (1 << torch.arange(8))).sum(dim=1).tolist()


@pytest.fixture
def frame_ids():
    """Function: uint8 [T,3,H,W] -> the painted index of every frame."""
    return _frame_ids


@pytest.fixture
def frame_folder(indexed_video, tmp_path):
    """Factory: frame_folder(num_frames) -> directory of img_00001.jpg … holding the painted frames."""

    def make(num_frames: int = 40) -> Path:
        folder = tmp_path / f"frames_{num_frames}"
        folder.mkdir()
        with open_video(indexed_video(num_frames, suffix=".avi", codec="mpeg4")) as reader:
            frames = reader.read(range(reader.num_frames))
        for i, frame in enumerate(frames):
            Image.fromarray(frame.permute(1, 2, 0).numpy()).save(folder / f"img_{i + 1:05d}.jpg", quality=95)
        return folder

    return make


@pytest.fixture
def bad_video(indexed_video, tmp_path):
    """Factory: bad_video(kind) -> path of a broken input: missing, empty, corrupt, truncated or zero_frames."""

    def make(kind: str) -> Path:
        path = tmp_path / f"bad_{kind}.mp4"
        if kind == "missing":
            return path
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "corrupt":
            path.write_bytes(bytes(range(256)) * 64)
        elif kind == "truncated":
            data = indexed_video(40).read_bytes()
            path.write_bytes(data[: len(data) // 2])
        elif kind == "zero_frames":
            from vificlip.data.writer import write_video

            write_video(path, torch.zeros(0, 64, 96, 3, dtype=torch.uint8))
        else:
            raise ValueError(kind)
        return path

    return make
