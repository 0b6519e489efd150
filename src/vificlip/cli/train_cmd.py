"""`vificlip train` and `vificlip eval`: one run from a preset or YAML config, with dotted overrides.

`train` exits 0 when done, 2 on bad input or an unwritable folder, 143 after SIGTERM and 130 after Ctrl-C (a
resumable checkpoint was saved: continue with --resume auto).
"""

from __future__ import annotations

import argparse
import logging

from ..data.transforms import NUM_CROPS
from ..errors import VificlipError

log = logging.getLogger(__name__)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="preset name (see `vificlip config list`) or YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=2e-6 (repeatable)")  # fmt: skip
    p.add_argument("--output", help="run folder (default runs/<name>); same as --set output.dir=DIR")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 … (torchrun picks LOCAL_RANK)")


def load_run_config(args: argparse.Namespace):
    from ..engine.config import load_config

    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output.dir={args.output}")
    return load_config(args.config, overrides)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train one run (single process, or one rank under torchrun)")
    add_config_arguments(p)
    p.add_argument("--resume", metavar="auto|PATH",
                   help="continue an interrupted run exactly (weights, optimiser, scheduler, RNG, position); "
                        "auto = this run folder's newest complete checkpoint if any")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run folder that holds checkpoints (removes them, metrics and evals)")  # fmt: skip
    p.add_argument("--init-from", metavar="PATH",
                   help="start a NEW run from these weights only (e.g. a K400 ViFi-CLIP for prompting)")  # fmt: skip
    p.set_defaults(func=run_train)

    e = subparsers.add_parser("eval", help="evaluate a checkpoint on the config's validation list")
    add_config_arguments(e)
    e.add_argument("--checkpoint", required=True, help="checkpoint file, run folder or built-in name")
    e.add_argument("--views", metavar="CLIPSxCROPS", help="e.g. 4x3 (default: the config's eval views)")
    e.add_argument("--wise-alpha", type=float, metavar="A",
                   help="also evaluate (1-A)·model.checkpoint + A·checkpoint (WiSE-FT), reported beside it")  # fmt: skip
    e.set_defaults(func=run_eval)


def parse_views(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    clips, sep, crops = text.lower().partition("x")
    if not sep or not clips.isdigit() or not crops.isdigit() or int(clips) < 1 or int(crops) not in NUM_CROPS:
        raise VificlipError(f"--views {text!r}: expected CLIPSxCROPS with CROPS one of "
                            f"{' or '.join(map(str, NUM_CROPS))}, e.g. 1x1 or 4x3")  # fmt: skip
    return int(clips), int(crops)


def run_train(args: argparse.Namespace) -> int:
    from ..engine.train import train

    if args.resume and args.init_from:
        raise VificlipError("--resume continues a run and --init-from starts a new one; give only one")
    result = train(load_run_config(args), resume=args.resume, init_from=args.init_from, device=args.device,
                   overwrite=args.overwrite)  # fmt: skip
    if result.final is not None:
        print(f"{result.run_dir}: {result.final.summary()}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..engine.evaluate import run_eval as evaluate

    results = evaluate(load_run_config(args), args.checkpoint, parse_views(args.views), args.wise_alpha,
                       device=args.device)  # fmt: skip
    for name, result in results.items():
        print(f"{name}: {result.summary()}")
    return 0
