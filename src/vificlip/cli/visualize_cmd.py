"""`vificlip visualize`: where the model looks in each sampled frame (attention rollout), as a PNG grid and a GIF."""

from __future__ import annotations

import argparse

from ..errors import VificlipError
from .options import (
    add_checkpoint_arguments,
    add_class_arguments,
    add_video_arguments,
    parse_classes,
    report_truncated,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("visualize", help="attention rollout maps of a video's frames (PNG grid + GIF)")
    p.add_argument("video", help="video file or frame folder")
    add_checkpoint_arguments(p)
    add_class_arguments(p)
    p.add_argument("--template", help="prompt template with {} (default: the checkpoint's)")
    add_video_arguments(p, 8, "frames sampled (segment centres), one map each", crops=False)
    p.add_argument("--out", default=".", help="output folder for <video>_attention.png/.gif (default: here)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tools.predict import load
    from ..tools.visualize import visualize_video

    classes = parse_classes(args)
    if args.frames < 1:
        raise VificlipError("--frames must be at least 1")
    recognizer = load(args.checkpoint, base=args.base_checkpoint, num_frames=args.frames, device=args.device,
                      template=args.template, num_crops=1, normalization=args.normalization,
                      backend=args.backend, allow_truncated=args.allow_truncated)  # fmt: skip
    result = visualize_video(recognizer, args.video, classes, args.out)
    report_truncated("visualize", recognizer.truncated)
    print(f"{args.video}: {result.predicted_class} ({result.probability:.1%})")
    print(f"  grid: {result.png}")
    print(f"  gif:  {result.gif}")
    return 0
