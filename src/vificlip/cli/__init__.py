"""`vificlip` command line: one module per command group, each with ``register(subparsers)``.

Each command module parses its arguments and calls one function of tools/ or engine/. Bad input surfaces as a
:class:`~vificlip.errors.VificlipError` (or a missing file) and is printed as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..errors import VificlipError
from . import (
    benchmark_cmd,
    config_cmd,
    convert_cmd,
    demo_cmd,
    embed_cmd,
    hub_cmd,
    predict_cmd,
    prepare_cmd,
    pretrain_cmd,
    protocol_cmd,
    search_cmd,
    splits_cmd,
    train_cmd,
    visualize_cmd,
)

# Literal list of command modules (no registry): grep finds every command here.
COMMAND_MODULES = (
    train_cmd,
    protocol_cmd,
    config_cmd,
    predict_cmd,
    convert_cmd,
    visualize_cmd,
    embed_cmd,
    search_cmd,
    benchmark_cmd,
    splits_cmd,
    prepare_cmd,
    pretrain_cmd,
    demo_cmd,
    hub_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vificlip", description="ViFi-CLIP: fine-tuned CLIP models as video recognisers (CVPR 2023)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep Python's exit flush quiet
        return 0
    except (VificlipError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"vificlip {args.command}: error: {exc}", file=sys.stderr)
        return 2


def entry() -> None:
    sys.exit(main())
