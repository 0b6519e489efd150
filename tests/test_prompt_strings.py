"""One template rule: every entry point reads the same prompt strings for the same checkpoint and variant.

load_model (Python), `vificlip eval` (engine builders), `vificlip predict` (tools.predict.load) and `vificlip run`
(protocol runner) must agree, including for a checkpoint that records a custom template and underscore rule.
"""

from __future__ import annotations

import pytest
import torch
from testkit import TINY_ARCH

from vificlip.cli import main
from vificlip.engine import evaluate, protocols
from vificlip.model import ViFiCLIP
from vificlip.model.loading import load_model, save_model
from vificlip.tools.predict import load

NAMES = ["playing_guitar", "surfing water"]


class Captured(Exception):
    """Raised by the patched evaluation with the prompt strings of the model it was given."""


def _capture(cfg, model, *args, **kwargs):
    raise Captured(model.prompt_texts(NAMES))


def _checkpoint(tmp_path, variant: str, template: str | None, underscores: bool):
    torch.manual_seed(0)
    model = ViFiCLIP.from_arch(TINY_ARCH, variant=variant, template=template, replace_underscores=underscores)
    return save_model(model, tmp_path / f"{variant}_{template is None}_{underscores}.safetensors")


def _config(tmp_path, path) -> str:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"name: t\nmodel: {{checkpoint: {path}}}\noutput: {{dir: {tmp_path / 'run'}}}\n")
    return str(cfg)


def _eval_prompts(tmp_path, path, variant, monkeypatch) -> list[str]:
    monkeypatch.setattr(evaluate, "evaluate_config", _capture)
    extra = ["--set", f"model.variant={variant}"] if variant else []
    with pytest.raises(Captured) as caught:
        main(["eval", _config(tmp_path, path), "--checkpoint", str(path), "--device", "cpu", *extra])
    return caught.value.args[0]


def _run_prompts(tmp_path, path, variant, monkeypatch) -> list[str]:
    monkeypatch.setattr(protocols, "evaluate_config", _capture)
    monkeypatch.setattr(protocols, "plan_zeroshot", lambda cfg: {"target": [cfg]})
    cfg = _config(tmp_path, path)
    extra = ["--set", f"model.variant={variant}"] if variant else []
    with pytest.raises(Captured) as caught:
        main(["run", "zeroshot", "--preset", cfg, "--checkpoint", str(path), "--device", "cpu", *extra])
    return caught.value.args[0]


@pytest.mark.parametrize(
    ("recorded", "template", "underscores"),
    [("vifi", None, False), ("vifi", "a video of {}.", True), ("image", "{} in a video", False),
     ("zeroshot", None, True)],
)  # fmt: skip
@pytest.mark.parametrize("variant", [None, "zeroshot", "text"])
def test_every_entry_point_reads_the_same_prompts(
    tmp_path, monkeypatch, recorded, template, underscores, variant
):
    path = _checkpoint(tmp_path, recorded, template, underscores)
    expected = load_model(path, variant=variant).prompt_texts(NAMES)
    # A config always names a variant (default vifi), so the engine's side gets the one load_model used.
    assert _eval_prompts(tmp_path, path, variant or recorded, monkeypatch) == expected
    assert _run_prompts(tmp_path, path, variant or recorded, monkeypatch) == expected
    if variant is None:  # predict has no --variant: it uses the recorded one
        assert load(path, device="cpu").model.prompt_texts(NAMES) == expected
    # The rule itself: a custom template is kept; a default one follows the variant.
    shown = "playing guitar" if underscores else "playing_guitar"
    if template is not None:
        assert expected[0] == template.format(shown)
    else:
        assert expected[0] == (shown if (variant or recorded) == "zeroshot" else f"a photo of a {shown}.")


def test_set_variant_applies_the_same_rule(tiny_model):
    assert tiny_model.set_variant("zeroshot").prompt_texts(["a_b"]) == ["a_b"]
    assert tiny_model.set_variant("vifi").prompt_texts(["a_b"]) == ["a photo of a a_b."]
    assert tiny_model.set_variant("zeroshot", template="{}!").template == "{}!"
    assert tiny_model.set_variant("text").template == "{}!"  # a custom template stays
