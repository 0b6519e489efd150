"""Checkpoints by name against a local stand-in for the Hub (tests/hubserver.py, reached through HF_ENDPOINT).

Each name must give the logits of the same files loaded from disk, be served from the cache once fetched (server
stopped), work offline with a warm cache, and fail in one line with a clean cache otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch
from ckpt_writers import random_clip_state, write_authors, write_hf, write_open_clip, write_open_clip_hub
from hubserver import FakeHub
from testkit import TINY_ARCH

import vificlip
from vificlip.cli import main
from vificlip.model import ViFiCLIP, build_clip
from vificlip.model.formats import detect_format
from vificlip.model.hub import HubError, url_cache_dir
from vificlip.model.loading import save_model
from vificlip.model.pretrained import cached_open_clip
from vificlip.tools.export import export

CLASSES = ["dancing", "swimming", "climbing stairs"]
TOKEN = "hf_test_token"


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict:
    """Tiny checkpoints in every format, written once: repo id → local folder (or file) with the same bytes."""
    root = tmp_path_factory.mktemp("repos")
    state = random_clip_state(TINY_ARCH, seed=1)
    clip = build_clip(TINY_ARCH)
    clip.load_state_dict(state)
    vifi = save_model(ViFiCLIP(clip, TINY_ARCH, variant="vifi"), root / "tiny.safetensors")
    gelu = dataclasses.replace(TINY_ARCH, quick_gelu=False)
    authors = root / "authors"
    authors.mkdir()
    write_authors(random_clip_state(TINY_ARCH, seed=2), authors / "k400_seed1.pth")
    (authors / "notes.txt").write_text("released checkpoints")
    weights = root / "openclip_weights"
    weights.mkdir()
    write_open_clip(state, weights / "open_clip_model.safetensors")
    return {
        "vificlip/exported": export(str(vifi), root / "exported"),
        "openclip/tiny": write_open_clip_hub(state, root / "openclip", TINY_ARCH),
        "hf/tiny-clip": write_hf(state, root / "hf", TINY_ARCH),
        "authors/vifi": authors,
        "openclip/tiny-weights": weights,  # what open_clip's hf_hub entry points at: the weights only
        "org/gated": write_open_clip_hub(state, root / "gated", TINY_ARCH),
        "org/private": write_open_clip_hub(state, root / "private", TINY_ARCH),
        "org/no-model": _no_model(root / "nomodel"),
        "file": vifi,
        "gelu": gelu,
    }


def _no_model(folder: Path) -> Path:
    folder.mkdir()
    (folder / "README.md").write_text("nothing to load")
    (folder / "weights.npy").write_bytes(b"\0" * 16)
    return folder


@pytest.fixture
def hub(repos, tmp_path, monkeypatch) -> FakeHub:
    """A running fake Hub with the repos, and huggingface_hub pointed at it with an empty cache in tmp_path."""
    from huggingface_hub import constants

    fake = FakeHub(token=TOKEN)
    for repo_id, folder in repos.items():
        if "/" in repo_id:
            fake.add_folder(repo_id, folder, gated=repo_id == "org/gated", private=repo_id == "org/private")
    fake.urls["/files/tiny.safetensors"] = repos["file"].read_bytes()
    fake.start()
    home = tmp_path / "hf"
    for name, value in {"ENDPOINT": fake.endpoint, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
                        "HUGGINGFACE_CO_URL_TEMPLATE": fake.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
                        "HF_HUB_OFFLINE": False, "HF_TOKEN_PATH": str(home / "token")}.items():  # fmt: skip
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield fake
    fake.stop()


def logits(checkpoint, base=None) -> torch.Tensor:
    model = vificlip.load(checkpoint, base=base, device="cpu").model
    torch.manual_seed(0)
    with torch.no_grad():
        return model(torch.randn(2, 3, 3, 32, 32), CLASSES)


def cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("name", "local", "base", "local_base"),
    [
        ("hf-hub:vificlip/exported", "vificlip/exported", None, None),
        ("hf-hub:openclip/tiny", "openclip/tiny", None, None),
        ("hf-hub:hf/tiny-clip", "hf/tiny-clip", None, None),
        ("hf-hub:authors/vifi:k400_seed1.pth", "authors/vifi", "hf-hub:openclip/tiny", "openclip/tiny"),
    ],
)
def test_hub_names_give_the_logits_of_the_local_files_then_come_from_the_cache(
    hub, repos, name, local, base, local_base
):
    local_path = repos[local] / "k400_seed1.pth" if name.endswith(".pth") else repos[local]
    reference = logits(local_path, base=repos[local_base] if local_base else None)
    fetched = logits(name, base=base)
    assert (fetched - reference).abs().max().item() <= 1e-5
    assert any("/resolve/main/" in r for r in hub.requests)
    hub.stop()  # second call: no server, the cache answers
    again = logits(name, base=base)
    assert torch.equal(again, fetched)


def test_exported_folder_is_read_as_vificlip_not_as_a_clipmodel_folder(repos):
    assert detect_format(repos["vificlip/exported"]) == "vificlip"
    assert detect_format(repos["hf/tiny-clip"]) == "hf"


def test_open_clip_pretrained_name_goes_through_open_clip_registry(hub, repos, monkeypatch):
    arch = repos["gelu"]  # GELU: the activation must come from the registry, not the QuickGELU default
    model_cfg = {"embed_dim": arch.embed_dim, "quick_gelu": False,
                 "vision_cfg": {"image_size": arch.image_size, "layers": arch.vision_layers, "width": arch.vision_width,
                                "head_width": arch.vision_width // arch.vision_heads, "patch_size": arch.patch_size},
                 "text_cfg": {"context_length": arch.context_length, "vocab_size": arch.vocab_size,
                              "width": arch.text_width, "heads": arch.text_heads, "layers": arch.text_layers}}  # fmt: skip
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "ViT-Tiny-Test", model_cfg)
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "ViT-Tiny-Test",
                        {"vificlip_test": open_clip.pretrained._pcfg(hf_hub="openclip/tiny-weights/")})  # fmt: skip
    from vificlip.model.loading import load_model

    weights = repos["openclip/tiny-weights"] / "open_clip_model.safetensors"
    local = load_model(weights, quick_gelu=False)
    fetched = vificlip.load("vificlip_test/ViT-Tiny-Test", device="cpu").model
    assert fetched.arch == local.arch and fetched.arch.quick_gelu is False
    torch.manual_seed(0)
    video = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        assert (fetched(video, CLASSES) - local(video, CLASSES)).abs().max().item() <= 1e-5
    hub.stop()
    assert vificlip.load("vificlip_test/ViT-Tiny-Test", device="cpu").model.arch == local.arch
    assert "vificlip_test/ViT-Tiny-Test" in [name for name, *_ in cached_open_clip()]


def test_open_clip_towers_we_cannot_run_are_refused_with_the_runnable_names():
    with pytest.raises(HubError, match=r"openai/RN50: .*ResNet.*openai/ViT-B-32"):
        vificlip.load("openai/RN50")
    with pytest.raises(HubError, match=r"no pretrained tag 'nosuch'.*openai/ViT-B-16"):
        vificlip.load("nosuch/ViT-B-16")
    with pytest.raises(
        FileNotFoundError, match=r"not found; expected a file .*did you mean openai/ViT-B-16\?"
    ):
        vificlip.load("ViT-B-16/openai")


def test_offline_warm_cache_works_and_cold_cache_fails_clearly(hub, repos, monkeypatch):
    from huggingface_hub import constants

    reference = logits("hf-hub:openclip/tiny")
    hub.stop()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert torch.equal(logits("hf-hub:openclip/tiny"), reference)
    assert torch.equal(logits("hf-hub:openclip/tiny@main"), reference)
    with pytest.raises(HubError) as cold:
        logits("hf-hub:hf/tiny-clip")
    message = str(cold.value)
    assert "\n" not in message and "hf-hub:hf/tiny-clip" in message and "HF_HUB_OFFLINE=1" in message
    assert "vificlip download hf-hub:hf/tiny-clip" in message and "local path" in message


def test_no_network_cold_cache_names_what_was_tried(hub):
    hub.stop()
    with pytest.raises(
        HubError, match=r"hf-hub:hf/tiny-clip: not in the cache .* cannot reach http://127\.0\.0\.1"
    ):
        logits("hf-hub:hf/tiny-clip")


def test_url_with_sha256_downloads_once_and_verifies(hub, repos):
    name = f"{hub.endpoint}/files/tiny.safetensors#sha256={sha256(repos['file'].read_bytes())}"
    assert torch.equal(logits(name), logits(repos["file"]))
    hub.stop()
    assert torch.equal(logits(name), logits(repos["file"]))  # from the cache
    assert [p.name for p in cache_files(url_cache_dir())] == ["tiny.safetensors"]


def test_url_checksum_mismatch_and_truncation_leave_a_clean_cache(hub, repos):
    good = sha256(repos["file"].read_bytes())
    with pytest.raises(HubError, match=r"SHA-256 [0-9a-f]{12}…, expected 000000000000…; it was removed"):
        logits(f"{hub.endpoint}/files/tiny.safetensors#sha256={'0' * 64}")
    hub.broken["/files/tiny.safetensors"] = (
        "truncate"  # a short body (its Content-Length agrees): the hash catches it
    )
    with pytest.raises(HubError, match="it was removed"):
        logits(f"{hub.endpoint}/files/tiny.safetensors#sha256={good}")
    assert cache_files(url_cache_dir()) == []
    with pytest.raises(HubError, match="#sha256="):
        logits(f"{hub.endpoint}/files/tiny.safetensors")
    with pytest.raises(HubError, match="HTTP 404"):
        logits(f"{hub.endpoint}/files/gone.pth#sha256={good}")


def test_hub_truncated_or_corrupt_download_is_removed(hub):
    from huggingface_hub import constants

    hub.broken["openclip/tiny/open_clip_model.safetensors"] = "truncate"
    with pytest.raises(
        HubError,
        match=r"hf-hub:openclip/tiny: download truncated \(\d+ of \d+ bytes arrived\); nothing was kept, retry$",
    ):
        logits("hf-hub:openclip/tiny")
    hub.broken["openclip/tiny/open_clip_model.safetensors"] = "corrupt"
    with pytest.raises(HubError, match=r"SHA-256 .* the bad file was removed"):
        logits("hf-hub:openclip/tiny")
    weights = [
        p
        for p in cache_files(Path(constants.HF_HUB_CACHE))
        if p.stat().st_size > 10_000 or ".incomplete" in p.name
    ]
    assert weights == []
    hub.broken.clear()
    logits("hf-hub:openclip/tiny")  # and a clean retry works


def test_404_401_and_repos_without_a_model_are_one_line_errors(hub, monkeypatch):
    cases = {
        "hf-hub:nobody/nothing": r"repository nobody/nothing not found on http://127\.0\.0\.1.*or private.*HF_TOKEN",
        "hf-hub:org/private": r"org/private not found .*or private: .*HF_TOKEN",
        "hf-hub:org/gated": r"org/gated is gated; accept its terms on the Hub, then set HF_TOKEN",
        "hf-hub:openclip/tiny:missing.pth": r"no file 'missing.pth' in openclip/tiny@main \(files: open_clip_config",
        "hf-hub:org/no-model": r"no loadable model in the repo \(files: README.md, weights.npy\).*:FILE",
        "hf-hub:openclip/tiny@v9": r"revision 'v9' not found",
        "hf-hub:not-a-repo": r"expected hf-hub:ORG/REPO",
    }
    for name, pattern in cases.items():
        with pytest.raises(HubError, match=pattern) as caught:
            logits(name)
        assert "\n" not in str(caught.value)
    from huggingface_hub import constants

    assert cache_files(Path(constants.HF_HUB_CACHE)) == []  # nothing written for any of them
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert logits("hf-hub:org/gated").shape == (2, 3)
    assert logits("hf-hub:org/private").shape == (2, 3)


def test_cli_reports_hub_errors_in_one_line_with_status_2(hub, tmp_path, capsys):
    assert main(["download", "hf-hub:openclip/tiny", "hf-hub:hf/tiny-clip"]) == 0
    out = capsys.readouterr().out
    assert "hf-hub:openclip/tiny -> " in out and "snapshots" in out
    assert main(["convert", "hf-hub:nobody/nothing", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vificlip convert: error: hf-hub:nobody/nothing:") and "\n" not in err
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert (
        "hf-hub:openclip/tiny" in listing
        and "hf-hub:hf/tiny-clip" in listing
        and "openai/ViT-B-16" in listing
    )
    assert "k400" in listing and "400 classes" in listing


def test_convert_accepts_hub_names_for_the_source_and_its_base(hub, repos, tmp_path):
    out = tmp_path / "converted.safetensors"
    assert (
        main(["convert", "hf-hub:authors/vifi:k400_seed1.pth", str(out), "--base", "hf-hub:openclip/tiny"])
        == 0
    )
    expected = logits(repos["authors/vifi"] / "k400_seed1.pth", base=repos["openclip/tiny"])
    assert (logits(out) - expected).abs().max().item() <= 1e-5


def test_predict_by_name_with_a_bundled_label_set(hub, indexed_video, capsys):
    from vificlip.data.labelsets import read_label_set

    video = indexed_video(8)
    assert main(["predict", str(video), "--checkpoint", "hf-hub:openclip/tiny", "--labels", "hmdb51", "--frames", "2",
                 "--device", "cpu", "--top-k", "51", "--json"]) == 0  # fmt: skip
    top = json.loads(capsys.readouterr().out)["top_k"]
    assert sorted(t["class"] for t in top) == sorted(read_label_set("hmdb51"))


def test_a_real_process_honours_hf_endpoint_hf_home_and_hf_hub_offline(hub, tmp_path):
    """The in-process tests patch huggingface_hub's constants; a fresh process reads the environment itself."""
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    command = [sys.executable, "-m", "vificlip", "download", "hf-hub:openclip/tiny"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "home" / "hub" / "models--openclip--tiny" / "snapshots") in done.stdout
    hub.stop()
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    warm = subprocess.run(
        command + ["hf-hub:hf/tiny-clip"], env=offline, capture_output=True, text=True, timeout=120
    )
    assert warm.returncode == 2 and "hf-hub:openclip/tiny -> " in warm.stdout
    assert (
        warm.stderr.strip()
        .splitlines()[-1]
        .startswith("vificlip download: error: hf-hub:hf/tiny-clip: not in the cache")
    )
    assert "HF_HUB_OFFLINE=1" in warm.stderr


def test_config_keys_take_names_model_checkpoint_and_init_from(hub, repos):
    from vificlip.engine.builders import build_model
    from vificlip.engine.config_schema import ModelConfig

    def same(a, b) -> bool:
        return all(
            torch.equal(x, y) for x, y in zip(a.clip.state_dict().values(), b.clip.state_dict().values())
        )

    hf = vificlip.load(repos["hf/tiny-clip"], device="cpu").model
    authors = vificlip.load(
        repos["authors/vifi"] / "k400_seed1.pth", base=repos["openclip/tiny"], device="cpu"
    ).model
    assert not same(hf, authors)  # different weights (seeds 1 and 2), so the checks below can fail
    assert same(build_model(ModelConfig(checkpoint="hf-hub:hf/tiny-clip")), hf)
    initialised = build_model(ModelConfig(checkpoint="hf-hub:hf/tiny-clip", base_checkpoint="hf-hub:openclip/tiny",
                                          init_from="hf-hub:authors/vifi:k400_seed1.pth"))  # fmt: skip
    assert same(initialised, authors)


def test_export_push_then_load_by_name_gives_the_source_logits(hub, repos, tmp_path, monkeypatch, capsys):
    """The README's story for the authors' releases: fetch, export with its base, publish, load by name."""
    out = tmp_path / "export"
    command = ["export", "hf-hub:authors/vifi:k400_seed1.pth", str(out), "--base", "hf-hub:openclip/tiny",
               "--push", "me/vifi-k400"]  # fmt: skip
    assert main(command) == 2  # no token: the upload is refused, in one line
    assert "push to me/vifi-k400 failed" in capsys.readouterr().err and "me/vifi-k400" not in hub.repos
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(command[:2] + [str(tmp_path / "again")] + command[3:]) == 0
    assert f"pushed: {hub.endpoint}/me/vifi-k400/commit/" in capsys.readouterr().out
    assert sorted(hub.repos["me/vifi-k400"].files) == ["README.md", "config.json", "model.safetensors"]
    expected = logits(repos["authors/vifi"] / "k400_seed1.pth", base=repos["openclip/tiny"])
    assert (logits("hf-hub:me/vifi-k400") - expected).abs().max().item() <= 1e-5


def test_an_interrupted_download_resumes_with_a_range_request(hub, repos):
    assert (
        repos["hf/tiny-clip"] / "model.safetensors"
    ).stat().st_size > 10 << 20  # more than one 10 MB chunk
    hub.broken["hf/tiny-clip/model.safetensors"] = "cut_once"
    assert (logits("hf-hub:hf/tiny-clip") - logits(repos["hf/tiny-clip"])).abs().max().item() <= 1e-5
    resumed = [
        r
        for r in hub.requests
        if r.startswith("GET /hf/tiny-clip/resolve/main/model.safetensors Range: bytes=")
    ]
    assert len(resumed) == 1 and not resumed[0].endswith("bytes=0-"), hub.requests
