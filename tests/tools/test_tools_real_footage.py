"""The inference tools on footage nobody on the project wrote: phone rotation, huge frames, truncated downloads,
every video type in a folder, bad arguments among good ones, and no traceback for any wrong kind of input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from testkit import frame_index, indexed_frames

import vificlip
from vificlip.cli import main
from vificlip.data.decode import open_video
from vificlip.data.writer import write_video
from vificlip.errors import VificlipError
from vificlip.model import ViFiCLIP
from vificlip.model.loading import save_model
from vificlip.tools.predict import MAX_FRAMES
from vificlip.tools.prepare import prepare_dataset

REPO = Path(__file__).resolve().parents[2]
LOSSLESS = {"codec": "libx264rgb", "options": {"qp": "0"}}


@pytest.fixture
def checkpoint(tmp_path: Path, tiny_model: ViFiCLIP) -> Path:
    return save_model(tiny_model, tmp_path / "tiny.safetensors")


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "good.mp4", indexed_frames(12))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def phone_pair(folder: Path, rotation: int = 90) -> tuple[Path, Path]:
    """The same clip stored upright, and stored sideways with a display rotation (lossless: identical pixels)."""
    upright = indexed_frames(8, height=64, width=128)
    sideways = np.ascontiguousarray(np.rot90(upright, -(rotation // 90), axes=(1, 2)))
    return (write_video(folder / "upright.mp4", upright, **LOSSLESS),
            write_video(folder / "phone.mp4", sideways, rotation=rotation, **LOSSLESS))  # fmt: skip


# ---- orientation -------------------------------------------------------------------------------------------------
def test_rotated_video_has_the_embedding_of_the_upright_original(tmp_path, checkpoint, capsys):
    upright, phone = phone_pair(tmp_path)
    recognizer = vificlip.load(checkpoint, num_frames=4, device="cpu")
    difference = (recognizer.encode_video(phone) - recognizer.encode_video(upright)).abs().max()
    assert difference <= 1e-4
    code, out, err = run_cli(capsys, "predict", upright, phone, "--checkpoint", checkpoint, "--classes",
                             "dancing,swimming,surfing", "--json", "--frames", "4")  # fmt: skip
    assert code == 0, err
    first, second = (json.loads(line)["top_k"] for line in out.splitlines())
    assert first == second


def test_prepare_writes_upright_frames_without_a_rotation_tag(tmp_path):
    _, phone = phone_pair(tmp_path / "src", rotation=270)
    (tmp_path / "src" / "upright.mp4").unlink()
    report = prepare_dataset(tmp_path / "src", tmp_path / "dst", workers=1, progress=False)
    assert report.transcoded == 1 and not report.failed
    with av.open(str(tmp_path / "dst" / "phone.mp4")) as container:
        frames = [frame for frame in container.decode(video=0)]
    assert all(frame.rotation == 0 for frame in frames)
    assert (frames[0].width, frames[0].height) == (128, 64)  # upright, as a player showed the source
    assert [frame_index(frame.to_ndarray(format="rgb24")) for frame in frames] == list(range(8))


# ---- memory --------------------------------------------------------------------------------------------------------
def test_peak_memory_of_a_4k_clip_grows_with_the_output_not_the_source(tmp_path):
    """200 frames sampled from a 4-frame 3840×2160 clip (every frame repeated 50 times). Before the per-frame
    reduction this read held 200 full-resolution copies: +5.1 GB; now +0.34 GB (the float output alone is 0.12 GB).
    Measured with ``resource`` in a fresh process (tests/tools/peak_rss.py)."""
    frames = np.zeros((4, 2160, 3840, 3), np.uint8)
    frames[:, :1080, :1280] = 200
    clip = write_video(tmp_path / "4k.mp4", frames, options={"preset": "ultrafast"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(REPO / "tests" / "tools" / "peak_rss.py"), str(clip), "200"],
                            capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["shape"] == [1, 200, 3, 224, 224]
    assert figures["peak_mb"] - figures["baseline_mb"] < 600, figures


def test_frame_count_above_the_limit_is_a_one_line_error(capsys, checkpoint, video):
    code, _, err = run_cli(capsys, "predict", video, "--checkpoint", checkpoint, "--classes", "a,b",
                           "--frames", str(MAX_FRAMES + 1))  # fmt: skip
    assert_one_line_error(code, err, str(MAX_FRAMES))


# ---- truncated downloads -------------------------------------------------------------------------------------------
@pytest.fixture
def half_downloaded(tmp_path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (40, 64, 96, 3), dtype=np.uint8)
    full = write_video(tmp_path / "full" / "clip.mp4", noise, container_options={"movflags": "+faststart"})
    cut = tmp_path / "cut" / "clip.mp4"
    cut.parent.mkdir()
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    return cut


def test_truncated_file_is_an_error_for_predict_unless_allowed(capsys, checkpoint, half_downloaded):
    argv = [
        "predict",
        half_downloaded,
        "--checkpoint",
        checkpoint,
        "--classes",
        "a,b",
        "--json",
        "--frames",
        "4",
    ]
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "truncated", "40 frames")
    assert out == ""
    code, out, err = run_cli(capsys, *argv, "--allow-truncated")
    assert code == 0, err
    assert len(out.splitlines()) == 1 and "1 truncated file(s)" in err


def test_truncated_file_is_unreadable_for_prepare_unless_allowed(tmp_path, half_downloaded, capsys):
    source = half_downloaded.parent
    code, out, err = run_cli(capsys, "prepare", source, tmp_path / "a", "--workers", "1", "--no-progress")
    report = json.loads((tmp_path / "a" / "prepare_report.json").read_text())
    assert report["transcoded"] == 0 and "truncated" in report["failed"][0]["error"]
    code, out, err = run_cli(capsys, "prepare", source, tmp_path / "b", "--workers", "1", "--no-progress",
                             "--allow-truncated")  # fmt: skip
    report = json.loads((tmp_path / "b" / "prepare_report.json").read_text())
    assert code == 0 and report["transcoded"] == 1 and report["truncated"] == ["clip.mp4"]
    assert "1 truncated" in err


# ---- folders and argument lists ----------------------------------------------------------------------------------
def mixed_folder(root: Path) -> list[str]:
    kinds = {"phone.3gp": "libx264", "camcorder.mts": "libx264", "bluray.m2ts": "libx264",
             "broadcast.ts": "mpeg2video", "web.ogv": "libvpx", "loop.gif": "gif", "a/b/deep.MOV": "libx264"}  # fmt: skip
    for name, codec in kinds.items():
        write_video(root / name, indexed_frames(6), codec=codec)
    frames = root / "shots" / "take1"
    frames.mkdir(parents=True)
    for i, image in enumerate(indexed_frames(3)):
        Image.fromarray(image).save(frames / f"img_{i + 1:05d}.png")
    return sorted([*kinds, "shots/take1"])


def test_a_folder_of_mixed_types_is_fully_expanded_by_predict_embed_and_prepare(tmp_path, checkpoint, capsys):
    expected = mixed_folder(tmp_path / "clips")
    code, out, err = run_cli(capsys, "predict", tmp_path / "clips", "--checkpoint", checkpoint, "--classes",
                             "a,b", "--json", "--frames", "2")  # fmt: skip
    assert code == 0, err
    seen = sorted(
        Path(json.loads(line)["video"]).relative_to(tmp_path / "clips").as_posix()
        for line in out.splitlines()
    )
    assert seen == expected
    code, out, err = run_cli(capsys, "embed", tmp_path / "clips", "--checkpoint", checkpoint, "--out",
                             tmp_path / "index.safetensors", "--frames", "2", "--workers", "0")  # fmt: skip
    assert code == 0 and f"{len(expected)} videos" in out, out + err
    report = prepare_dataset(tmp_path / "clips", tmp_path / "prepared", workers=1, progress=False)
    assert report.total == len(expected) and not report.failed, report.failed
    for relative in expected:  # .gif/.ogv keep their names (H.264 in Matroska inside) and decode
        with open_video(tmp_path / "prepared" / relative) as reader:
            assert reader.num_frames in (3, 6)


def test_a_bad_argument_among_good_ones_is_reported_and_the_rest_processed(
    tmp_path, checkpoint, video, capsys
):
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    code, out, err = run_cli(capsys, "predict", tmp_path / "missing.mp4", video, empty, "--checkpoint",
                             checkpoint, "--classes", "a,b", "--json", "--frames", "2")  # fmt: skip
    assert code == 2
    assert [json.loads(line)["video"] for line in out.splitlines()] == [str(video)]
    assert "missing.mp4: no such video file" in err and "empty_folder: folder holds no videos" in err
    assert "2 of 3 videos could not be read" in err and "Traceback" not in err


# ---- no traceback, ever ------------------------------------------------------------------------------------------
WRONG_KINDS = {
    "random.safetensors": os.urandom(4096),
    "random.bin": os.urandom(4096),
    "random.pt": os.urandom(4096),
    "random.mp4": os.urandom(4096),
    "lfs.safetensors": b"version https://git-lfs.github.com/spec/v1\noid sha256:"
    + b"a" * 64
    + b"\nsize 1234\n",
    "page.safetensors": b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>nope</body></html>\n",
    "page.json": b"<!DOCTYPE html><html></html>\n",
    "empty.safetensors": b"",
    "folder": None,
    "missing.safetensors": "missing",
}


@pytest.fixture
def wrong(tmp_path: Path):
    def make(kind: str) -> Path:
        path = tmp_path / "wrong" / kind
        path.parent.mkdir(exist_ok=True)
        content = WRONG_KINDS[kind]
        if content is None:
            path.mkdir(exist_ok=True)
        elif content != "missing":
            path.write_bytes(content)
        return path

    return make


COMMANDS = {  # a command line with one file argument left as {}; the others are good
    "predict-video": "predict {} --checkpoint CKPT --classes a,b",
    "predict-checkpoint": "predict VIDEO --checkpoint {} --classes a,b",
    "predict-labels": "predict VIDEO --checkpoint CKPT --labels {}",
    "embed-folder": "embed {} --checkpoint CKPT --out OUT",
    "embed-checkpoint": "embed FOLDER --checkpoint {} --out OUT",
    "embed-out": "embed FOLDER --checkpoint CKPT --out {}",
    "search-index": "search query --index {}",
    "search-checkpoint": "search query --index INDEX --checkpoint {}",
    "visualize-video": "visualize {} --checkpoint CKPT --classes a,b --out OUT",
    "visualize-checkpoint": "visualize VIDEO --checkpoint {} --classes a,b --out OUT",
    "convert-src": "convert {} OUT",
    "prepare-src": "prepare {} OUT --workers 1 --no-progress",
}
NOT_APPLICABLE = {  # a wrong kind that is a right kind for that argument
    ("embed-out", "missing.safetensors"),  # a new index is written there
    ("prepare-src", "folder"),  # an (empty) dataset root
    ("embed-folder", "folder"),  # an empty folder: 0 videos, nothing wrong
    # any text file is a list of names, one per line
    ("predict-labels", "lfs.safetensors"),
    ("predict-labels", "page.safetensors"),
    ("predict-labels", "page.json"),
}


@pytest.fixture
def good(tmp_path: Path, checkpoint: Path, video: Path) -> dict[str, str]:
    folder = tmp_path / "folder"
    write_video(folder / "x.mp4", indexed_frames(6))
    assert main(["embed", str(folder), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "index.safetensors"),
                 "--frames", "2", "--workers", "0"]) == 0  # fmt: skip
    return {"CKPT": str(checkpoint), "VIDEO": str(video), "FOLDER": str(folder),
            "INDEX": str(tmp_path / "index.safetensors"), "OUT": str(tmp_path / "out" / "o.safetensors")}  # fmt: skip


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_file_argument_fuzzed_with_wrong_kinds_of_file(command, wrong, good, capsys):
    capsys.readouterr()
    for kind in WRONG_KINDS:
        if (command, kind) in NOT_APPLICABLE:
            continue
        path = wrong(kind)
        argv = [str(path) if word == "{}" else good.get(word, word) for word in COMMANDS[command].split()]
        if argv[0] in ("predict", "embed", "visualize"):
            argv += ["--frames", "2", "--device", "cpu"]
        code, out, err = run_cli(capsys, *argv)
        if argv[0] == "prepare":  # a file instead of a dataset root
            assert_one_line_error(code, err, path.name)
            continue
        assert_one_line_error(code, err)
        assert path.name in err or str(path) in err, (kind, err)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps", "gpu", "cuda:x"])
def test_devices_this_machine_lacks_are_one_line_errors(device, good, capsys):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # the CPU-only CI always runs it
    capsys.readouterr()
    for argv in (
        ["predict", good["VIDEO"], "--checkpoint", good["CKPT"], "--classes", "a,b"],
        ["embed", good["FOLDER"], "--checkpoint", good["CKPT"], "--out", good["OUT"]],
        ["search", "x", "--index", good["INDEX"]],
        ["visualize", good["VIDEO"], "--checkpoint", good["CKPT"], "--classes", "a,b", "--out", good["OUT"]],
        ["benchmark", "--arch", "tiny", "--steps", "1", "--no-train"],
    ):
        code, _, err = run_cli(capsys, *argv, "--device", device)
        assert_one_line_error(code, err, repr(device))


@pytest.mark.parametrize("template", ["{} and {}", "no placeholder", "{0} {}", "a {name} {}"])
def test_bad_templates_are_one_line_errors(template, good, capsys):
    code, _, err = run_cli(capsys, "predict", good["VIDEO"], "--checkpoint", good["CKPT"], "--classes", "a,b",
                           "--template", template, "--frames", "2")  # fmt: skip
    assert_one_line_error(code, err, "template")


def test_visualize_out_naming_an_existing_file(tmp_path, good, capsys):
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    code, _, err = run_cli(capsys, "visualize", good["VIDEO"], "--checkpoint", good["CKPT"], "--classes", "a,b",
                           "--out", taken, "--frames", "2")  # fmt: skip
    assert_one_line_error(code, err, "taken.png")


def test_non_utf8_file_names_print_to_a_strict_utf8_stdout(tmp_path, checkpoint):
    folder = tmp_path / "clips"
    name = os.fsdecode(b"caf\xe9.mp4")  # Latin-1 bytes: not UTF-8
    write_video(folder / name, indexed_frames(6))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "vificlip", "predict", str(folder), "--checkpoint",
                             str(checkpoint), "--classes", "a,b", "--frames", "2"],
                            capture_output=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"caf\xe9.mp4" in result.stdout and b"Traceback" not in result.stderr


# ---- outputs are valid, the API checks its arguments ---------------------------------------------------------------
def test_nan_weights_are_an_error_naming_the_checkpoint(tmp_path, tiny_model, video, capsys):
    with torch.no_grad():
        tiny_model.clip.visual.proj.fill_(float("nan"))
    broken = save_model(tiny_model, tmp_path / "nan.safetensors")
    code, out, err = run_cli(capsys, "predict", video, "--checkpoint", broken, "--classes", "a,b", "--json",
                             "--frames", "2")  # fmt: skip
    assert_one_line_error(code, err, "nan.safetensors", "NaN")
    assert "NaN" not in out


def test_the_python_api_validates_its_arguments(checkpoint, video):
    recognizer = vificlip.load(checkpoint, num_frames=2, device="cpu")
    with pytest.raises(VificlipError, match="list of names"):
        recognizer.predict(video, "dancing")  # a bare string is not 7 one-letter classes
    for top_k in (0, -1, 1.5):
        with pytest.raises(VificlipError, match="top_k"):
            recognizer.predict(video, ["a", "b"], top_k=top_k)
    for frames in (0, MAX_FRAMES + 1):
        with pytest.raises(VificlipError, match="frames"):
            vificlip.load(checkpoint, num_frames=frames, device="cpu")
    with pytest.raises(VificlipError, match="not available"):
        vificlip.load(checkpoint, device="cuda:7")


@pytest.mark.parametrize(("text", "line"), [('id,name\n0,dancing\n1,"swimming\n2,surfing\n', 3),
                                           ('id,name\n0,"dancing\n', 2)])  # fmt: skip
def test_a_label_csv_with_an_unbalanced_quote_is_an_error_naming_the_line(tmp_path, good, capsys, text, line):
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    code, _, err = run_cli(capsys, "predict", good["VIDEO"], "--checkpoint", good["CKPT"], "--labels", labels)
    assert_one_line_error(code, err, f"labels.csv:{line}:", "quote")


def test_an_unsafe_pickle_is_refused_for_safety_not_called_corrupt(tmp_path, good, capsys):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo ran >> " + str(tmp_path / "ran.txt"),))

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, evil)
    code, _, err = run_cli(capsys, "predict", good["VIDEO"], "--checkpoint", evil, "--classes", "a,b")
    assert_one_line_error(code, err, "evil.pt", "needs code to load", "refused for safety")
    assert "corrupt" not in err and "weights_only" not in err and not (tmp_path / "ran.txt").exists()


@pytest.mark.parametrize(("content", "needle"), [(os.urandom(512) + b"\xff", "not a YAML text file"),
                                                 (b"model:\n  arch: [1, 2\n", "config.yaml:3: not valid YAML")])  # fmt: skip
def test_a_config_file_that_is_not_yaml_is_a_one_line_error(tmp_path, capsys, content, needle):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    code, _, err = run_cli(capsys, "train", config)
    assert_one_line_error(code, err, needle)
