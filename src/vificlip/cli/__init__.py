"""`vificlip` command line: one module per command group, each with ``register(subparsers)``.

Each command module parses its arguments and calls one function of tools/ or engine/. Bad input surfaces as a
:class:`~vificlip.errors.VificlipError` (or an OS error: missing file, full disk, read-only folder) and is printed
as one line with exit status 2; a training run stopped by SIGTERM/SIGINT exits 143/130, a second Ctrl-C 130.
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
    serve_cmd,
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
    serve_cmd,
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
    if hasattr(
        sys.stdout, "reconfigure"
    ):  # file names that are not UTF-8 are printed as their bytes, like ls
        sys.stdout.reconfigure(errors="surrogateescape")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep Python's exit flush quiet
        return 0
    except KeyboardInterrupt:  # a second Ctrl-C during training, or one anywhere else
        print(f"vificlip {args.command}: aborted", file=sys.stderr)
        return 130
    except (VificlipError, OSError) as exc:  # OSError: a missing file, a full disk, a read-only folder …
        code = getattr(exc, "exit_code", None)  # a run stopped by SIGTERM/SIGINT: 143/130 (engine/train.py)
        print(f"vificlip {args.command}: {'' if code else 'error: '}{exc}", file=sys.stderr)
        return code or 2


def entry() -> None:
    sys.exit(main())
