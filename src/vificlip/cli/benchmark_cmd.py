"""`vificlip benchmark [model|data]`: model size, compute and speed (naive vs optimised), or decoding speed."""

from __future__ import annotations

import argparse
import json
import tempfile


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "benchmark", help="measure the model (default) or the data pipeline on this machine"
    )
    p.add_argument("what", nargs="?", choices=("model", "data"), default="model",
                   help="model: parameters, GFLOPs, inference/training speed; data: video decoding speed")  # fmt: skip
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
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.what == "data":
        return run_data(args)
    from ..tools.benchmark import BenchmarkConfig, format_benchmark, run_benchmark

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
