"""`vificlip predict`: top-k classes for your own videos, as text or JSON lines."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..errors import VificlipError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="recognise actions in videos with any class names")
    p.add_argument("videos", nargs="+", help="video files, frame folders, or folders of videos")
    p.add_argument(
        "--checkpoint", required=True, help="checkpoint file/folder (any supported format) or built-in name"
    )
    p.add_argument(
        "--base-checkpoint", help="base CLIP weights for the authors' checkpoints (no token embedding)"
    )
    names = p.add_mutually_exclusive_group(required=True)
    names.add_argument("--classes", help='comma-separated class names, e.g. "dancing,swimming"')
    names.add_argument("--labels", help="label file: CSV `id,name` or one name per line")
    p.add_argument(
        "--template", help='prompt template with {} (default: the checkpoint\'s, e.g. "a photo of a {}.")'
    )
    p.add_argument("--frames", type=int, default=16, help="frames sampled per video (segment centres)")
    p.add_argument(
        "--crops", type=int, choices=(1, 3), default=1, help="1 centre crop or 3 crops (SPEC §2.6)"
    )
    p.add_argument("--normalization", choices=("authors", "clip"), default="authors",
                   help="the authors' ImageNet constants (default, as trained) or CLIP's")  # fmt: skip
    p.add_argument("--backend", default="auto", help="decoder: auto, pyav, torchcodec, decord, frames")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON object per video")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    p.set_defaults(func=run)


def parse_classes(args: argparse.Namespace) -> list[str]:
    if args.classes is not None:
        return [name.strip() for name in args.classes.split(",") if name.strip()]
    from ..data.annotations import read_labels

    return read_labels(args.labels)


def run(args: argparse.Namespace) -> int:
    from ..data.decode import VideoDecodeError
    from ..model.text import check_class_names
    from ..tools.predict import find_videos, load

    classes = list(check_class_names(parse_classes(args)))
    if args.frames < 1 or args.top_k < 1:
        raise VificlipError("--frames and --top-k must be at least 1")
    videos = find_videos(args.videos)
    recognizer = load(args.checkpoint, base=args.base_checkpoint, num_frames=args.frames, device=args.device,
                      template=args.template, num_crops=args.crops, normalization=args.normalization,
                      backend=args.backend)  # fmt: skip
    failed = 0
    for video in videos:
        try:
            prediction = recognizer.predict(video, classes, top_k=args.top_k)
        except VideoDecodeError as exc:
            failed += 1
            print(f"vificlip predict: error: {exc}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(prediction.to_dict()))
        else:
            print(prediction.video)
            for name, prob in zip(prediction.classes, prediction.probabilities):
                print(f"  {prob:7.2%}  {name}")
    if failed:
        print(f"vificlip predict: {failed} of {len(videos)} videos could not be read", file=sys.stderr)
        return 2
    return 0
