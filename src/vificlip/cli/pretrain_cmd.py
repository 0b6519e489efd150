"""`vificlip pretrain-synthetic`: rebuild the built-in ``synthetic-tiny-clip`` from its seed (see docs/demo.md)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from ..errors import VificlipError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..tools.pretrain import PretrainConfig

    d = PretrainConfig()
    p = subparsers.add_parser(
        "pretrain-synthetic", help="pretrain the small built-in CLIP on synthetic images"
    )
    p.add_argument("--out", default="synthetic_tiny_clip.safetensors",
                   help="weights file to write (a .yaml record is written beside it)")  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument(
        "--eval-images", type=int, default=d.eval_images, help="held-out images per accuracy figure"
    )
    p.add_argument("--threads", type=int, default=d.threads,
                   help="CPU threads; results are reproducible for a fixed thread count")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..tools.pretrain import PretrainConfig, pretrain_synthetic

    if args.steps < 1 or args.batch_size < 2 or args.threads < 1 or args.eval_images < 1:
        raise VificlipError("--steps, --threads and --eval-images must be ≥ 1 and --batch-size ≥ 2")
    config = dataclasses.replace(PretrainConfig(), seed=args.seed, steps=args.steps, batch_size=args.batch_size,
                                 lr=args.lr, threads=args.threads, eval_images=args.eval_images)  # fmt: skip
    print(f"pretraining synthetic-tiny-clip: {config}")
    with tqdm(total=config.steps, desc="pretrain", dynamic_ncols=True) as bar:

        def progress(step: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

        record = pretrain_synthetic(args.out, config, progress)
    print(
        f"wrote {args.out} (weights sha256 {record['weights_sha256'][:16]}…) in {record['train_sec']:.0f} s"
    )
    print("zero-shot accuracy on held-out images (%): " + ", ".join(
        f"{k} {v:.1f}" for k, v in record["zero_shot_accuracy"].items()))  # fmt: skip
    return 0
