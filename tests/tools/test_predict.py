"""`vificlip predict` and `vificlip.load(...).predict(...)` on real encoded videos, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from testkit import indexed_frames

import vificlip
from vificlip.cli import main
from vificlip.data.writer import write_video
from vificlip.model import ViFiCLIP
from vificlip.model.loading import save_model
from vificlip.tools.predict import load_video_tensor

CLASSES = ["dancing", "swimming", "playing guitar"]


@pytest.fixture
def checkpoint(tmp_path: Path, tiny_model: ViFiCLIP) -> Path:
    return save_model(tiny_model, tmp_path / "tiny.safetensors") or tmp_path / "tiny.safetensors"


@pytest.fixture
def videos(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "videos"
    mp4 = write_video(folder / "a.mp4", indexed_frames(24), codec="libx264")
    avi = write_video(folder / "sub" / "b.avi", indexed_frames(30), codec="mpeg4")
    return [mp4, avi]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_python_api_matches_manual_computation(
    checkpoint: Path, videos: list[Path], tiny_model: ViFiCLIP
) -> None:
    recognizer = vificlip.load(checkpoint, num_frames=4, device="cpu")
    prediction = recognizer.predict(videos[0], CLASSES, top_k=3)
    views = load_video_tensor(videos[0], num_frames=4, input_size=32)
    assert views.shape == (1, 4, 3, 32, 32)
    with torch.no_grad():
        expected = tiny_model.eval()(views, CLASSES).softmax(-1)[0]
    order = expected.argsort(descending=True).tolist()
    assert prediction.classes == tuple(CLASSES[i] for i in order)
    np.testing.assert_allclose(prediction.probabilities, expected[order].numpy(), atol=1e-5)


def test_cli_text_output(capsys, checkpoint: Path, videos: list[Path]) -> None:
    code, out, err = run_cli(capsys, "predict", *map(str, videos), "--checkpoint", str(checkpoint),
                             "--classes", ",".join(CLASSES), "--top-k", "2", "--frames", "4")  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == str(videos[0]) and lines[3] == str(videos[1])
    for line in lines[1:3] + lines[4:6]:
        percent, name = line.split("%", 1)
        assert 0 <= float(percent) <= 100 and name.strip() in CLASSES


def test_cli_json_on_folder_with_label_file(
    capsys, tmp_path: Path, checkpoint: Path, videos: list[Path]
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,name\r\n0,dancing\r\n1,swimming\r\n2,playing guitar\r\n")
    code, out, err = run_cli(capsys, "predict", str(videos[0].parent), "--checkpoint", str(checkpoint),
                             "--labels", str(labels), "--json", "--frames", "3", "--crops", "3")  # fmt: skip
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["video"] for r in records] == [
        str(videos[0]),
        str(videos[1]),
    ]  # folder expanded recursively, sorted
    for record in records:
        probs = [entry["probability"] for entry in record["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert {entry["class"] for entry in record["top_k"]} == set(CLASSES)


@pytest.mark.parametrize(
    "classes, message", [(",", "empty"), ("a,b,a", "duplicate")]
)  # fmt: skip
def test_bad_class_lists_exit_2(
    capsys, checkpoint: Path, videos: list[Path], classes: str, message: str
) -> None:
    code, out, err = run_cli(
        capsys, "predict", str(videos[0]), "--checkpoint", str(checkpoint), "--classes", classes
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_and_bad_checkpoints_exit_2(
    capsys, tmp_path: Path, videos: list[Path], checkpoint: Path
) -> None:
    unknown = tmp_path / "notes.pt"
    unknown.write_text("not a checkpoint")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(checkpoint.read_bytes()[:200])
    for path in (tmp_path / "missing.pt", unknown, truncated):
        code, out, err = run_cli(
            capsys, "predict", str(videos[0]), "--checkpoint", str(path), "--classes", "a,b"
        )
        assert code == 2, err
        assert str(path.name) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unreadable_and_missing_videos(capsys, tmp_path: Path, checkpoint: Path, videos: list[Path]) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    code, out, err = run_cli(capsys, "predict", str(broken), str(videos[0]), "--checkpoint", str(checkpoint),
                             "--classes", "a,b", "--json", "--frames", "2")  # fmt: skip
    assert code == 2
    assert "broken.mp4" in err and "1 of 2 videos could not be read" in err
    assert len(out.splitlines()) == 1  # the readable video is still scored
    code, out, err = run_cli(capsys, "predict", str(tmp_path / "nope.mp4"), "--checkpoint", str(checkpoint),
                             "--classes", "a,b")  # fmt: skip
    assert code == 2 and "nope.mp4" in err


def test_prompt_artefact_loads_onto_its_base(tmp_path: Path, checkpoint: Path, videos: list[Path]) -> None:
    from vificlip.model.loading import load_model
    from vificlip.model.prompt_io import save_prompts

    torch.manual_seed(1)
    prompted = load_model(checkpoint).with_prompts(2, 2, 1, 1)
    artefact = save_prompts(prompted, tmp_path / "prompts.safetensors", base_checkpoint=checkpoint)
    prediction = vificlip.load(artefact, num_frames=3).predict(videos[1], CLASSES, top_k=3)
    with torch.no_grad():
        expected = prompted.eval()(load_video_tensor(videos[1], 3, 32), CLASSES).softmax(-1)[0]
    order = expected.argsort(descending=True).tolist()
    assert prediction.classes == tuple(CLASSES[i] for i in order)
    np.testing.assert_allclose(prediction.probabilities, expected[order].numpy(), atol=1e-5)
