"""Shared fixtures: a tiny CLIP architecture (fast on CPU) and real encoded videos whose frames carry their index."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Caches in a throw-away folder, set before anything imports huggingface_hub (it reads these once): tests never
# write to the user's home, and a Hub request that a test forgot to point at its local server hits a closed port.
_CACHE = tempfile.mkdtemp(prefix="vificlip-test-cache-")
atexit.register(shutil.rmtree, _CACHE, True)
os.environ.update({"VIFICLIP_CACHE": os.path.join(_CACHE, "vificlip"), "HF_HOME": os.path.join(_CACHE, "hf"),
                   "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1"})  # fmt: skip
for _name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "XDG_CACHE_HOME"):
    os.environ.pop(_name, None)

import pytest  # noqa: E402
import torch  # noqa: E402
from testkit import TINY_ARCH, indexed_frames  # noqa: E402

from vificlip.data.writer import write_video  # noqa: E402
from vificlip.model import ClipArch, ViFiCLIP  # noqa: E402


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
