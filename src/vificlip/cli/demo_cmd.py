"""`vificlip demo` (= `make demo`): every protocol of the paper on the embedded synthetic benchmark, on CPU."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from ..errors import VificlipError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the paper's protocols on the built-in synthetic benchmark")
    p.add_argument("--out", default="demo_output", help="output folder (benchmark, runs, report.md, plots)")
    p.add_argument(
        "--quick", action="store_true", help="short schedules and fewer K values (about 2 minutes)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic benchmark")
    p.add_argument("--train-seed", type=int, default=1024, help="training seed (the paper's SEED)")
    p.add_argument(
        "--checkpoint", default="synthetic-tiny-clip", help="starting CLIP (built-in name or file)"
    )
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tools.demo import DemoPlan, run_demo
    from ..tools.demo_report import console_summary, write_report

    if args.threads is not None:
        if args.threads < 1:
            raise VificlipError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    if not args.verbose:  # the engine logs every evaluation; the demo prints its own summary
        logging.getLogger("vificlip.engine").setLevel(logging.WARNING)
    plan = DemoPlan(
        Path(args.out),
        quick=args.quick,
        benchmark_seed=args.seed,
        train_seed=args.train_seed,
        checkpoint=args.checkpoint,
    )
    demo = run_demo(plan)
    report = write_report(demo)
    print(console_summary(demo))
    print(f"\nreport: {report} ({demo.seconds['total']:.0f} s in total)")
    return 0
