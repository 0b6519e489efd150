"""Every checkpoint format loads the same weights to the same logits; bad files fail with one clear line."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from ckpt_writers import (
    authors_model_dict,
    random_clip_state,
    write_authors,
    write_hf,
    write_open_clip,
    write_open_clip_hub,
    write_openai_jit,
    write_openai_plain,
)
from safetensors import safe_open
from safetensors.torch import save_file

from vificlip.cli import convert_cmd, main
from vificlip.model import ViFiCLIP, build_clip
from vificlip.model.backbone import load_clip_weights
from vificlip.model.convert import CheckpointError, convert_authors, convert_hf_config, infer_prompt_config
from vificlip.model.formats import detect_format, load_clip_state_dict
from vificlip.model.loading import CheckpointMismatchError, load_model, save_model
from vificlip.model.variants import TRAINABLE

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

CLASSES = ["dancing", "swimming", "playing_guitar"]


def reference_logits(arch, state, video, **kwargs) -> torch.Tensor:
    clip = build_clip(arch)
    load_clip_weights(clip, state, "reference")
    with torch.no_grad():
        return ViFiCLIP(clip, arch, **kwargs).eval()(video, CLASSES)


def logits(model: ViFiCLIP, video: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(video, CLASSES)


@pytest.fixture
def video() -> torch.Tensor:
    return torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def tiny_state(tiny_arch) -> dict[str, torch.Tensor]:
    return random_clip_state(tiny_arch)


@pytest.fixture
def base_file(tmp_path, tiny_state):
    return write_open_clip(tiny_state, tmp_path / "base.safetensors")


WRITERS = {
    "openai-jit": lambda s, d, a: write_openai_jit(s, d / "ViT-tiny.pt"),
    "openai": lambda s, d, a: write_openai_plain(s, d / "openai.pt"),
    "open_clip .pt": lambda s, d, a: write_open_clip(s, d / "open_clip.pt"),
    "open_clip .bin": lambda s, d, a: write_open_clip(s, d / "open_clip.bin"),
    "open_clip .safetensors": lambda s, d, a: write_open_clip(s, d / "open_clip.safetensors"),
    "hf": lambda s, d, a: write_hf(s, d / "hf", a),
    "hf .bin": lambda s, d, a: write_hf(s, d / "hf_bin", a, weights="bin"),
    "hf file": lambda s, d, a: write_hf(s, d / "hf_file", a) / "model.safetensors",
    "open_clip hub": lambda s, d, a: write_open_clip_hub(s, d / "hub", a),
    "authors": lambda s, d, a: write_authors(s, d / "ckpt_epoch_10.pth"),
}


@pytest.mark.parametrize("source", list(WRITERS))
def test_every_format_loads_to_identical_logits(source, tmp_path, tiny_arch, tiny_state, base_file, video):
    path = WRITERS[source](tiny_state, tmp_path, tiny_arch)
    expected_format = source.split()[0]  # "open_clip hub" → open_clip, "hf file" → hf
    assert detect_format(path) == expected_format
    model = load_model(path, base=base_file if expected_format == "authors" else None)
    assert model.arch == tiny_arch  # inferred from shapes: no named architecture needed
    assert model.variant == "vifi" and model.template == "a photo of a {}."
    assert (logits(model, video) - reference_logits(tiny_arch, tiny_state, video)).abs().max() <= 1e-5

    ours = save_model(model, tmp_path / "ours" / "model.safetensors")
    assert detect_format(ours) == "vificlip"
    assert (logits(load_model(ours), video) - logits(model, video)).abs().max() <= 1e-5


def test_scripted_open_clip_model_loads_as_openai_jit(tmp_path, tiny_arch, tiny_state, video):
    clip = build_clip(tiny_arch)
    clip.load_state_dict(tiny_state)
    path = tmp_path / "scripted.pt"
    torch.jit.script(clip.eval()).save(str(path))
    assert detect_format(path) == "openai-jit"
    assert (
        logits(load_model(path), video) - reference_logits(tiny_arch, tiny_state, video)
    ).abs().max() <= 1e-5


def test_openai_integer_entries_are_dropped(tmp_path, tiny_state):
    state, info = load_clip_state_dict(write_openai_plain(tiny_state, tmp_path / "o.pt"))
    assert set(state) == set(tiny_state) and info.format == "openai" and info.quick_gelu is True


def test_our_format_records_metadata_and_round_trips_settings(tmp_path, tiny_arch, tiny_model, video):
    tiny_model.set_variant("image")
    tiny_model.template, tiny_model.replace_underscores = "a video of {}.", True
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "vificlip" and meta["format_version"] == "1" and meta["variant"] == "image"
    assert json.loads(meta["arch"]) == json.loads(tiny_arch.to_json()) and json.loads(meta["prompts"]) == {}
    loaded = load_model(path)
    assert (loaded.variant, loaded.template, loaded.replace_underscores) == ("image", "a video of {}.", True)
    assert (logits(loaded, video) - logits(tiny_model, video)).abs().max() == 0
    assert load_model(path, variant="text", template="{}").template == "{}"
    assert load_model(path, variant="zeroshot").template == "a video of {}."  # a custom template is kept


def test_overriding_the_variant_drops_a_default_template(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    assert load_model(path).template == "a photo of a {}."
    assert load_model(path, variant="zeroshot").template == "{}"  # bare class names (SPEC §1.3)


def test_newer_format_version_is_refused(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    with safe_open(path, framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    save_file(tensors, str(path), metadata={**meta, "format_version": "2"})
    with pytest.raises(CheckpointError, match="format version 2 by a newer vificlip"):
        load_model(path)


def test_authors_checkpoint_settings_and_extras(tmp_path, tiny_state, base_file):
    config = {"TRAINER": {"ViFi_CLIP": {"USE": "image", "CTX_INIT": "a_video_of_a"}}}
    path = write_authors(tiny_state, tmp_path / "a.pth", config=config)
    with pytest.raises(pickle.UnpicklingError):  # a yacs CfgNode (faked here: no yacs installed) inside
        torch.load(path, weights_only=True)
    _, info = load_clip_state_dict(
        path, base=base_file
    )  # still weights_only=True, via an allow-listed stand-in
    assert info.extra["epoch"] == 10 and info.extra["max_accuracy"] == 71.5
    assert info.extra["config"] == config and type(info.extra["config"]["TRAINER"]) is dict
    model = load_model(path, base=base_file)
    assert (model.variant, model.template) == ("image", "a video of a {}.")


class Exploit:
    ran = False

    def __reduce__(self):
        return (Exploit.mark, ())

    @staticmethod
    def mark():
        Exploit.ran = True


def test_pickles_with_code_are_refused_without_running_it(tmp_path, tiny_state):
    torch.save({"state_dict": tiny_state, "payload": Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="needs code to load.*refused for safety") as err:
        load_model(tmp_path / "evil.pt")
    assert not Exploit.ran and str(tmp_path / "evil.pt") in str(err.value)


def test_authors_prompt_keys_map_to_deep_prompts(tmp_path, tiny_arch, tiny_state, base_file, video):
    n_v, n_t = 3, 2
    prompts = {
        "module.image_encoder.VPT": torch.randn(n_v, tiny_arch.vision_width),
        "module.image_encoder.transformer.resblocks.1.VPT_shallow": torch.randn(n_v, tiny_arch.vision_width),
        "module.prompt_learner.ctx": torch.randn(n_t, tiny_arch.text_width),
        "module.prompt_learner.token_prefix": torch.randn(5, 1, tiny_arch.text_width),
        "module.prompt_learner.token_suffix": torch.randn(5, 74, tiny_arch.text_width),
    }
    clip, prompt_state = convert_authors(authors_model_dict(tiny_state, prompts))
    assert set(clip) == set(tiny_state) - {"token_embedding.weight"}
    assert set(prompt_state) == {"prompts.vision.0", "prompts.vision.1", "prompts.text.0"}
    assert torch.equal(
        prompt_state["prompts.vision.1"], prompts["module.image_encoder.transformer.resblocks.1.VPT_shallow"]
    )
    assert infer_prompt_config(prompt_state) == {
        "n_vision": 3,
        "depth_vision": 2,
        "n_text": 2,
        "depth_text": 1,
    }

    model = load_model(write_authors(tiny_state, tmp_path / "p.pth", prompts=prompts), base=base_file)
    assert model.variant == "prompt"
    assert model.prompts.config() == {
        "n_vision": 3,
        "n_text": 2,
        "depth_vision": 2,
        "depth_text": 1,
        "init_text": None,
    }
    assert torch.equal(model.prompts.text[0], prompts["module.prompt_learner.ctx"])
    again = load_model(save_model(model, tmp_path / "p.safetensors"))
    assert again.prompts.config() == model.prompts.config()
    assert (logits(again, video) - logits(model, video)).abs().max() == 0


def test_prompt_blocks_must_be_contiguous():
    with pytest.raises(CheckpointError, match="blocks 0..d-1"):
        infer_prompt_config({"prompts.vision.0": torch.zeros(2, 4), "prompts.vision.2": torch.zeros(2, 4)})


def test_open_clip_hub_config_gives_heads_and_activation(tmp_path, tiny_arch, tiny_state, video):
    arch = dataclasses.replace(tiny_arch, vision_heads=2, text_heads=4, quick_gelu=False)
    folder = write_open_clip_hub(tiny_state, tmp_path / "hub", arch)
    model = load_model(folder)
    assert model.arch == arch
    assert (logits(model, video) - reference_logits(arch, tiny_state, video)).abs().max() <= 1e-5


def test_open_clip_options_outside_plain_vit_clip_are_refused(tmp_path, tiny_arch, tiny_state):
    folder = write_open_clip_hub(tiny_state, tmp_path / "hub", tiny_arch, text_cfg={"pool_type": "last"})
    with pytest.raises(CheckpointError, match=r"text_cfg.pool_type='last'.*not supported") as err:
        load_model(folder)
    assert str(folder) in str(err.value)


def test_hf_config_defaults_and_activations():
    assert convert_hf_config({}) == {
        "vision_heads": 12,
        "text_heads": 8,
        "quick_gelu": True,
    }  # transformers' defaults
    gelu = {"text_config": {"hidden_act": "gelu"}, "vision_config": {"hidden_act": "gelu"}}
    assert convert_hf_config(gelu)["quick_gelu"] is False
    with pytest.raises(CheckpointError, match="hidden_act"):
        convert_hf_config(
            {"text_config": {"hidden_act": "gelu"}}
        )  # towers disagree: open_clip has one setting


def test_prompt_artefact_is_pointed_to_its_loader(tmp_path):
    path = tmp_path / "prompts.safetensors"
    save_file({"vision.0": torch.zeros(2, 64)}, str(path), metadata={"format": "vificlip-prompts"})
    with pytest.raises(CheckpointError, match="load_prompts"):
        load_model(path)


def test_open_clip_activation_override(tmp_path, tiny_state):
    path = write_open_clip(tiny_state, tmp_path / "oc.safetensors")
    assert load_model(path).arch.quick_gelu is True
    assert load_model(path, quick_gelu=False).arch.quick_gelu is False


# ---- bad input ----------------------------------------------------------------------------------------------
def _truncated(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _saved(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


BAD_FILES = {
    "missing": (lambda d, s: d / "nope.pt", "no such file"),
    "empty": (lambda d, s: _bytes(d / "e.pt", b""), "empty file"),
    "garbage": (lambda d, s: _bytes(d / "g.bin", b"\x00garbage" * 100), "not a readable PyTorch checkpoint"),
    "truncated .pt": (lambda d, s: _truncated(write_open_clip(s, d / "t.pt")), "truncated or corrupt"),
    "truncated .safetensors": (lambda d, s: _truncated(write_open_clip(s, d / "t.safetensors")), "truncated"),
    "truncated jit": (lambda d, s: _truncated(write_openai_jit(s, d / "j.pt")), "truncated or corrupt"),
    "unknown layout": (lambda d, s: _saved(d / "u.pt", {"weights": [1, 2]}), "unknown checkpoint layout"),
    "unknown weights": (lambda d, s: _saved(d / "w.pt", {"fc.weight": torch.ones(2)}), "unknown weights"),
    "folder without config": (lambda d, s: d, "config.json"),
    "authors without base": (lambda d, s: write_authors(s, d / "a.pth"), "name the CLIP it was trained from"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_one_line_naming_the_file(case, tmp_path, tiny_state):
    make, expected = BAD_FILES[case]
    path = make(tmp_path, tiny_state)
    with pytest.raises(CheckpointError, match=expected) as err:
        load_model(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message


def test_architecture_mismatch_names_keys_and_file(tmp_path, tiny_state):
    path = write_open_clip(tiny_state, tmp_path / "oc.safetensors")
    with pytest.raises(
        CheckpointMismatchError, match=r"mis-shaped: ln_final.bias: expected \(512,\), got \(64,\)"
    ) as err:
        load_model(path, arch="ViT-B/16")
    assert str(path) in str(err.value) and "missing: " in str(err.value)  # 12 blocks expected, 2 present
    partial = {k: v for k, v in tiny_state.items() if k != "ln_final.bias"}
    with pytest.raises(CheckpointMismatchError, match="missing: ln_final.bias"):
        load_model(write_open_clip(partial, tmp_path / "partial.safetensors"))


# ---- CLI ----------------------------------------------------------------------------------------------------
def test_convert_cli_round_trip(tmp_path, tiny_arch, tiny_state, base_file, video, capsys):
    src = write_authors(tiny_state, tmp_path / "ckpt.pth")
    dst = tmp_path / "out" / "vifi.safetensors"
    assert main(["convert", str(src), str(dst), "--base", str(base_file), "--variant", "text"]) == 0
    assert str(dst) in capsys.readouterr().out
    model = load_model(dst)
    assert detect_format(dst) == "vificlip" and model.variant == "text"
    assert (logits(model, video) - reference_logits(tiny_arch, tiny_state, video)).abs().max() <= 1e-5

    tmpl = tmp_path / "t.safetensors"
    assert main(["convert", str(dst), str(tmpl), "--template", "{}", "--no-quick-gelu"]) == 0
    converted = load_model(tmpl)
    assert converted.template == "{}" and converted.arch.quick_gelu is False


def test_convert_cli_variant_choices_match_the_model():
    assert set(convert_cmd.VARIANTS) == set(TRAINABLE)  # imported from model/variants.py, not copied


@pytest.mark.parametrize("extra", [[], ["--arch", "ViT-B/16"]])
def test_convert_cli_errors_exit_2_with_one_line(extra, tmp_path, tiny_state, capsys):
    src = (
        write_authors(tiny_state, tmp_path / "ckpt.pth")
        if not extra
        else write_open_clip(tiny_state, tmp_path / "o.pt")
    )
    assert main(["convert", str(src), str(tmp_path / "out.safetensors"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vificlip convert: error:") and str(src) in err and "\n" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_the_format_table_is_the_one_place_formats_are_defined(tmp_path, tiny_arch, tiny_state):
    """detect_format, loading and the writers' coverage all come from model/formats.py's TABLE."""
    from vificlip.model import formats

    assert formats.FORMATS == ("vificlip", "openai-jit", "authors", "hf", "openai", "open_clip")
    covered = {name.split()[0] for name in WRITERS} | {"vificlip"}
    assert covered == set(formats.FORMATS)  # every row has a test writer (and every writer a row)
    # Detection of a safetensors file reads its header only: a file whose tensor bytes are garbage is still named.
    path = write_open_clip(tiny_state, tmp_path / "oc.safetensors")
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    path.write_bytes(path.read_bytes()[: 8 + header_len] + b"\x00" * (path.stat().st_size - 8 - header_len))
    assert detect_format(path) == "open_clip"


def test_a_new_row_is_all_a_format_needs(monkeypatch, tmp_path, tiny_arch, tiny_state, video):
    """A format added as one row (here: open_clip weights renamed with a 'clip_' prefix) loads everywhere."""
    from vificlip.model import formats

    row = formats.Format(
        "prefixed", "open_clip names with clip_", lambda s: any(k.startswith("clip_") for k in s.keys),
        lambda s: {k.removeprefix("clip_"): v for k, v in s.payload.items()}, lambda s, _: {"quick_gelu": True},
    )  # fmt: skip
    monkeypatch.setattr(formats, "TABLE", (row, *formats.TABLE))
    path = tmp_path / "p.safetensors"
    save_file({f"clip_{k}": v.contiguous() for k, v in tiny_state.items()}, str(path))
    assert detect_format(path) == "prefixed"
    assert (
        logits(load_model(path), video) - reference_logits(tiny_arch, tiny_state, video)
    ).abs().max() <= 1e-5
