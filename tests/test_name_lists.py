"""Every CLI choice list derives from the one definition its owning module holds (variants, protocols, datasets)."""

from __future__ import annotations

import argparse

import pytest

from vificlip.cli import build_parser
from vificlip.cli.protocol_cmd import choose_preset
from vificlip.data.decode import BACKENDS
from vificlip.data.presets import ALIASES
from vificlip.engine.config import list_presets, load_config
from vificlip.engine.report import PROTOCOLS, TITLES
from vificlip.errors import VificlipError
from vificlip.model.variants import TRAINABLE


def _choices(command: str) -> dict[str, tuple]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {a.dest: tuple(a.choices) for a in sub._actions if a.choices is not None}


def test_cli_choices_come_from_the_owners():
    assert _choices("convert")["variant"] == tuple(TRAINABLE)
    run = _choices("run")
    assert run["protocol"] == tuple(TITLES) == PROTOCOLS
    assert set(run["variant"]) == set(TRAINABLE) - {"prompt"}  # prompt models come from --prompt presets
    assert _choices("predict")["backend"] == BACKENDS


def _args(protocol: str, dataset: str | None = None, variant: str = "vifi", prompt: bool = False):
    return argparse.Namespace(protocol=protocol, dataset=dataset, variant=variant, prompt=prompt, preset=None)


@pytest.mark.parametrize("protocol", ["base2novel", "fewshot"])
@pytest.mark.parametrize("prompt", [False, True])
def test_every_dataset_alias_reaches_a_preset_that_runs_that_dataset(protocol, prompt):
    reached = set()
    for alias, stem in ALIASES.items():
        try:
            name = choose_preset(_args(protocol, alias, prompt=prompt))
        except VificlipError as exc:
            assert "no preset for dataset" in str(exc) and "hmdb51" in str(exc)
            continue
        cfg = load_config(name)
        assert ALIASES[cfg.data.dataset] == stem and name in list_presets()
        assert (cfg.model.variant == "prompt") == prompt
        reached.add(stem)
    assert reached >= {"hmdb51", "ucf101", "ssv2"}
    assert ("k400" in reached) == (protocol == "base2novel" and not prompt)


def test_zeroshot_and_supervised_presets_exist_for_every_trainable_variant():
    for variant in set(TRAINABLE) - {"prompt", "zeroshot"}:
        for protocol in ("zeroshot", "supervised"):
            assert load_config(choose_preset(_args(protocol, variant=variant))).model.variant == variant
    assert load_config(choose_preset(_args("zeroshot", variant="zeroshot"))).model.variant == "zeroshot"
