"""Shared fixtures: a tiny CLIP architecture (fast on CPU) and real encoded videos whose frames carry their index."""

from __future__ import annotations

import pytest
import torch
from testkit import TINY_ARCH, indexed_frames

from vificlip.data.writer import write_video
from vificlip.model import ClipArch, ViFiCLIP


@pytest.fixture
def tiny_arch() -> ClipArch:
    return TINY_ARCH


@pytest.fixture
def tiny_model() -> ViFiCLIP:
    torch.manual_seed(0)
    return ViFiCLIP.from_arch(TINY_ARCH)


@pytest.fixture
def indexed_video(tmp_path):
    """Factory: indexed_video(num_frames, suffix='.mp4', codec='libx264') -> path of a real encoded video."""

    def make(num_frames: int = 40, suffix: str = ".mp4", codec: str = "libx264", **kwargs):
        path = tmp_path / f"indexed_{num_frames}_{codec}{suffix}"
        return write_video(path, indexed_frames(num_frames), codec=codec, **kwargs)

    return make
