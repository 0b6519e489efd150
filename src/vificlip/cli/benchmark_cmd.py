"""`vificlip benchmark [model|data|serve]`: model size, compute and speed (naive vs optimised), decoding speed,
or the web server under concurrent load."""

from __future__ import annotations

import argparse
import json
import tempfile


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "benchmark", help="measure the model (default) or the data pipeline on this machine"
    )
    p.add_argument("what", nargs="?", choices=("model", "data", "serve"), default="model",
                   help="model: parameters, GFLOPs, inference/training speed; data: video decoding speed; "
                        "serve: `vificlip serve` under concurrent clients")  # fmt: skip
    p.add_argument("--arch", default="ViT-B/16", help="named architecture (ViT-B/16, ViT-L/14 …) or 'tiny'")
    p.add_argument("--frames", type=int, default=16, help="frames per video")
    p.add_argument("--batch", type=int, default=32, help="videos per inference call")
    p.add_argument("--train-batch", type=int, default=16, help="clips per training step")
    p.add_argument("--classes", type=int, default=400, help="number of class prompts (synthetic names)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    p.add_argument("--steps", type=int, default=10, help="timed calls per measurement")
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed calls before timing (compilation happens here)"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the optimised path")
    p.add_argument(
        "--grad-checkpointing", action="store_true", help="activation checkpointing in optimised training"
    )
    p.add_argument("--no-train", action="store_true", help="skip the training measurements")
    p.add_argument("--videos", type=int, default=4, help="data: synthetic videos to decode")
    p.add_argument("--seconds", type=float, default=10.0, help="data: length of each synthetic video")
    p.add_argument("--backends", help="data: comma-separated decoders (default: all installed)")
    p.add_argument(
        "--work-dir", help="data: where to write the synthetic videos (default: a temporary folder)"
    )
    p.add_argument("--checkpoint", default="synthetic-tiny-clip", help="serve: the model the server loads")
    p.add_argument("--requests", type=int, default=64, help="serve: requests per measurement")
    p.add_argument("--clients", type=int, default=8, help="serve: concurrent clients (compared with 1)")
    p.add_argument("--rounds", type=int, default=3, help="serve: rounds (resident memory read after each)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.what == "data":
        return run_data(args)
    if args.what == "serve":
        return run_serve(args)
    from ..tools.bench_report import format_benchmark
    from ..tools.benchmark import BenchmarkConfig, run_benchmark

    cfg = BenchmarkConfig(arch=args.arch, num_frames=args.frames, batch=args.batch, train_batch=args.train_batch,
                          num_classes=args.classes, device=args.device, steps=args.steps, warmup=args.warmup,
                          compile=args.compile, grad_checkpointing=args.grad_checkpointing,
                          train=not args.no_train)  # fmt: skip
    result = run_benchmark(cfg)
    print(json.dumps(result, indent=2) if args.json else format_benchmark(result))
    return 0


def run_data(args: argparse.Namespace) -> int:
    from ..tools.bench_data import format_data_benchmark, run_data_benchmark

    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    with tempfile.TemporaryDirectory(prefix="vificlip-bench-") as scratch:
        result = run_data_benchmark(args.work_dir or scratch, num_videos=args.videos, seconds=args.seconds,
                                    num_frames=args.frames, backends=backends)  # fmt: skip
    print(json.dumps(result, indent=2) if args.json else format_data_benchmark(result))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from ..errors import VificlipError
    from ..serve.loadtest import format_serve_benchmark, run_serve_benchmark

    if min(args.requests, args.clients, args.rounds, args.frames) < 1:
        raise VificlipError("--requests, --clients, --rounds and --frames must be at least 1")
    result = run_serve_benchmark(args.checkpoint, requests=args.requests, clients=args.clients, rounds=args.rounds,
                                 frames=args.frames, device=args.device)  # fmt: skip
    print(json.dumps(result, indent=2) if args.json else format_serve_benchmark(result))
    return 2 if result["errors"] else 0
