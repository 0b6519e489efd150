"""Config schema: presets, inheritance, overrides, coercion, validation errors naming the dotted key."""

from __future__ import annotations

import pytest
import yaml

from vificlip.cli import main
from vificlip.engine.batch import accumulation_steps
from vificlip.engine.config import (
    ConfigError,
    config_differences,
    list_presets,
    load_config,
    read_run_config,
    save_config,
)

# SPEC §3.12: (frames, batch, accumulation on the authors' 8 GPUs, global batch, epochs, LR, variant, final views)
EXPECTED = {
    "zeroshot_k400_vifi": (32, 4, 8, 256, 10, 8e-6, "vifi", (1, 1)),
    "zeroshot_k400_image": (32, 4, 8, 256, 10, 8e-6, "image", (1, 1)),
    "zeroshot_k400_text": (32, 4, 8, 256, 10, 8e-6, "text", (1, 1)),
    "zeroshot_vanilla": (32, 4, 8, 256, 10, 8e-6, "zeroshot", (1, 1)),
    "b2n_hmdb": (32, 4, 2, 64, 11, 2e-6, "vifi", (1, 1)),
    "b2n_k400": (32, 4, 2, 64, 11, 2e-6, "vifi", (1, 1)),
    "b2n_prompt_ucf": (32, 4, 2, 64, 11, 4e-2, "prompt", (1, 1)),
    "fewshot_ssv2": (32, 4, 2, 64, 50, 2e-6, "vifi", (1, 1)),
    "fewshot_prompt_hmdb": (32, 4, 2, 64, 50, 8e-3, "prompt", (1, 1)),
    "supervised_k400_vifi": (16, 4, 16, 512, 30, 2.2e-5, "vifi", (4, 3)),
    "supervised_k400_image": (16, 4, 8, 256, 30, 8e-6, "image", (4, 3)),
    "supervised_k400_text": (16, 4, 8, 256, 30, 8e-6, "text", (4, 3)),
}


def test_every_preset_loads_and_common_values_match_the_reference():
    for name in list_presets():
        cfg = load_config(name)
        assert cfg.model.arch == "ViT-B/16" and cfg.data.input_size == 224 and cfg.train.seed == 1024
        assert (cfg.optim.betas, cfg.optim.eps, cfg.optim.weight_decay) == ([0.9, 0.98], 1e-8, 1e-3)
        assert (cfg.optim.warmup_epochs, cfg.optim.lr_min_ratio, cfg.optim.schedule) == (5, 0.01, "reference")
        assert cfg.train.mixup and cfg.train.label_smoothing == 0.1 and cfg.train.mixup_alpha == 0.8


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_presets_carry_the_papers_values(name):
    cfg = load_config(name)
    frames, batch, acc, total, epochs, lr, variant, views = EXPECTED[name]
    got = (cfg.data.num_frames, cfg.train.batch_size, accumulation_steps(cfg, 8), cfg.train.global_batch,
           cfg.train.epochs, cfg.optim.lr, cfg.model.variant, (cfg.eval.final_num_clips, cfg.eval.final_num_crops))  # fmt: skip
    assert got == (frames, batch, acc, total, epochs, pytest.approx(lr), variant, views)
    assert 8 * batch * acc == total  # the paper's 8 GPUs


def test_prompt_presets_sizes_and_init_from():
    b2n, few = load_config("b2n_prompt_hmdb"), load_config("fewshot_prompt_ucf")
    assert (b2n.model.prompts.n_vision, b2n.model.prompts.n_text, b2n.model.prompts.depth_vision,
            b2n.model.prompts.depth_text) == (16, 16, 9, 9)  # fmt: skip
    assert (few.model.prompts.n_vision, few.model.prompts.depth_text) == (10, 12)
    assert b2n.model.init_from and few.model.init_from


def test_base_inheritance_and_overrides(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: b2n_hmdb\nname: mine\ntrain:\n  epochs: 3\n")
    cfg = load_config(child, ["optim.lr=8e-06", "train.batch_size='2'", "model.template=null"])
    assert cfg.name == "mine" and cfg.train.epochs == 3 and cfg.train.global_batch == 64  # base kept
    assert cfg.optim.lr == 8e-6 and cfg.train.batch_size == 2 and cfg.model.template is None


def test_yaml_numeric_strings_are_coerced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {arch: ViT-B/16}\noptim:\n  lr: 8e-06\n  warmup_epochs: '5'\n")
    assert yaml.safe_load(path.read_text())["optim"]["lr"] == "8e-06"  # what PyYAML does (SPEC §3.1)
    cfg = load_config(path)
    assert cfg.optim.lr == 8e-6 and cfg.optim.warmup_epochs == 5.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "train.lrr"),
        ("optim.lr=fast", "optim.lr"),
        ("train.epochs=2.5", "train.epochs"),
        ("train.mixup=3", "train.mixup"),
        ("model.variant=both", "model.variant"),
        ("eval.num_crops=2", "eval.num_crops"),
        ("train.batch_size=0", "train.batch_size"),
        ("model.prompts.n_text=x", "model.prompts.n_text"),
        ("optim.betas=[0.9]", "optim.betas"),
        ("eval.wise_alpha=1.5", "eval.wise_alpha"),
        ("nonsense", "KEY=VALUE"),
    ],
)
def test_bad_values_name_the_dotted_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_config("b2n_hmdb", [override])


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown preset.*b2n_hmdb"):
        load_config("no_such_preset")


def test_resolved_config_round_trips_and_differences(tmp_path):
    cfg = load_config("b2n_ucf", [f"output.dir={tmp_path}"])
    save_config(cfg, tmp_path)
    again = read_run_config(tmp_path)
    assert again == cfg
    changed = load_config("b2n_ucf", ["optim.lr=1e-5", "data.num_workers=0", "output.dir=/elsewhere"])
    assert config_differences(cfg, changed) == ["optim.lr: 2e-06 → 1e-05"]  # workers/output may change


def test_config_show_prints_the_effective_config(capsys):
    assert main(["config", "show", "supervised_k400_text", "--set", "train.epochs=2"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["variant"] == "text" and shown["train"]["epochs"] == 2
    assert shown["train"]["global_batch"] == 256 and shown["eval"]["final_num_crops"] == 3
    assert main(["config", "show", "missing_preset"]) == 2
    assert main(["config", "list"]) == 0 and "b2n_prompt_ssv2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("key", "bad", "allowed"),
    [
        ("data.backend", "ffmpeg", "auto, pyav, torchcodec, decord, frames"),
        ("model.variant", "both", "zeroshot, image, text, vifi, prompt"),
        ("data.layout", "tree", "auto, flat, per-class"),
        ("train.precision", "int8", "auto, bf16, fp16, fp32"),
    ],
)
def test_choice_fields_are_checked_at_config_time_against_the_owners_list(key, bad, allowed):
    with pytest.raises(ConfigError) as caught:
        load_config("b2n_hmdb", [f"{key}={bad}"])
    assert str(caught.value) == f"{key}: {bad!r} is not one of {allowed}"


def test_choice_lists_are_the_owning_modules_lists():
    from vificlip.data.decode import BACKENDS, available_backends
    from vificlip.engine.config_validate import CHOICES
    from vificlip.model.variants import TRAINABLE

    assert CHOICES["model.variant"] == tuple(TRAINABLE) and CHOICES["data.backend"] is BACKENDS
    assert set(available_backends()) <= set(BACKENDS)
