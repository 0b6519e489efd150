"""`vificlip config list|show`: the shipped presets and the full effective config of any of them."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="list presets or print a preset's full effective config")
    sub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="print the resolved config (base chain + overrides) as YAML")
    show.add_argument("preset", help="preset name or YAML file")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    show.set_defaults(func=run_show)
    listing = sub.add_parser("list", help="the presets shipped with vificlip")
    listing.set_defaults(func=run_list)


def run_show(args: argparse.Namespace) -> int:
    from ..engine.config import load_config, to_yaml

    print(to_yaml(load_config(args.preset, args.overrides)), end="")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ..engine.config import PRESET_DIR, list_presets

    for name in list_presets():
        first = (PRESET_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
        print(f"{name:24s} {first}")
    return 0
