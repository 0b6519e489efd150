"""One served world for the serve tests: synthetic videos under --root, an index made by `vificlip embed`, and a
real uvicorn server on 127.0.0.1 running the built-in tiny model (session-scoped: the model loads once)."""

from __future__ import annotations

import numpy as np
import pytest

from vificlip.cli import main
from vificlip.data.synthetic import render_video
from vificlip.data.writer import write_video
from vificlip.serve.config import ServeConfig
from vificlip.serve.server import running
from vificlip.serve.service import Service

CHECKPOINT = "synthetic-tiny-clip"
FRAMES = 8
OBJECTS = (("red", "circle"), ("blue", "square"), ("green", "star"), ("yellow", "triangle"))
CLASSES = [f"{colour} {shape}" for colour, shape in OBJECTS]
MAX_UPLOAD = 64 << 10
MAX_CLASSES = 200
MODEL_WORKERS = 2  # model calls at once, each on one thread: the concurrent path, attention maps included


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("serve")
    videos = base / "videos"
    rng = np.random.default_rng(0)
    for colour, shape in OBJECTS:
        for i, action in enumerate(("sliding sideways", "standing still")):
            frames = render_video(action, colour, shape, "black", rng, num_frames=24)
            write_video(videos / f"{colour}_{shape}" / f"clip{i}.mp4", frames)
    index = base / "index.safetensors"
    assert main(["embed", str(videos), "--checkpoint", CHECKPOINT, "--out", str(index), "--frames", str(FRAMES),
                 "--workers", "0", "--device", "cpu"]) == 0  # fmt: skip
    outside = base / "outside"
    outside.mkdir()
    secret = write_video(outside / "secret.mp4", render_video("blinking", "red", "circle", "grey", rng, 24))
    (videos / "escape.mp4").symlink_to(secret)  # after embedding: a link leading out of --root
    return {"base": base, "videos": videos, "index": index, "secret": secret}


@pytest.fixture(scope="session")
def service(world) -> Service:
    config = ServeConfig(checkpoint=CHECKPOINT, root=world["videos"], index=world["index"], device="cpu",
                         frames=FRAMES, max_upload_bytes=MAX_UPLOAD, max_classes=MAX_CLASSES,
                         model_workers=MODEL_WORKERS, model_threads=1)  # fmt: skip
    return Service(config)


@pytest.fixture(scope="session")
def server(service) -> str:
    with running(service) as url:
        yield url
