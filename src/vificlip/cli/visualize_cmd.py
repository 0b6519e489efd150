"""`vificlip visualize`: where the model looks in each sampled frame (attention rollout), as a PNG grid and a GIF."""

from __future__ import annotations

import argparse

from ..errors import VificlipError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("visualize", help="attention rollout maps of a video's frames (PNG grid + GIF)")
    p.add_argument("video", help="video file or frame folder")
    p.add_argument(
        "--checkpoint", required=True, help="checkpoint file/folder (any supported format) or built-in name"
    )
    p.add_argument(
        "--base-checkpoint", help="base CLIP weights for the authors' checkpoints (no token embedding)"
    )
    names = p.add_mutually_exclusive_group(required=True)
    names.add_argument("--classes", help='comma-separated class names, e.g. "dancing,swimming"')
    names.add_argument("--labels", help="label file: CSV `id,name` or one name per line")
    p.add_argument("--template", help="prompt template with {} (default: the checkpoint's)")
    p.add_argument("--frames", type=int, default=8, help="frames sampled (segment centres), one map each")
    p.add_argument("--normalization", choices=("authors", "clip"), default="authors")
    p.add_argument("--backend", default="auto", help="decoder: auto, pyav, torchcodec, decord, frames")
    p.add_argument("--out", default=".", help="output folder for <video>_attention.png/.gif (default: here)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model.text import check_class_names
    from ..tools.predict import load
    from ..tools.visualize import visualize_video
    from .predict_cmd import parse_classes

    classes = list(check_class_names(parse_classes(args)))
    if args.frames < 1:
        raise VificlipError("--frames must be at least 1")
    recognizer = load(args.checkpoint, base=args.base_checkpoint, num_frames=args.frames, device=args.device,
                      template=args.template, num_crops=1, normalization=args.normalization,
                      backend=args.backend)  # fmt: skip
    result = visualize_video(recognizer, args.video, classes, args.out)
    print(f"{args.video}: {result.predicted_class} ({result.probability:.1%})")
    print(f"  grid: {result.png}")
    print(f"  gif:  {result.gif}")
    return 0
