"""`vificlip predict`: top-k classes for your own videos, as text or JSON lines."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..errors import VificlipError
from .options import (
    add_checkpoint_arguments,
    add_class_arguments,
    add_video_arguments,
    parse_classes,
    report_truncated,
)

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="recognise actions in videos with any class names")
    p.add_argument("videos", nargs="+", help="video files, frame folders, or folders of videos")
    add_checkpoint_arguments(p)
    add_class_arguments(p)
    p.add_argument(
        "--template", help='prompt template with {} (default: the checkpoint\'s, e.g. "a photo of a {}.")'
    )
    add_video_arguments(p, 16, "frames sampled per video (segment centres)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON object per video")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.video_reader import VideoDecodeError
    from ..tools.predict import find_videos, load

    classes = parse_classes(args)
    if args.frames < 1 or args.top_k < 1:
        raise VificlipError("--frames and --top-k must be at least 1")
    videos, problems = find_videos(args.videos)
    for problem in problems:  # reported now; the other paths are still processed, and the exit status is 2
        print(f"vificlip predict: error: {problem}", file=sys.stderr)
    if not videos:
        return 2
    recognizer = load(args.checkpoint, base=args.base_checkpoint, num_frames=args.frames, device=args.device,
                      template=args.template, num_crops=args.crops, normalization=args.normalization,
                      backend=args.backend, allow_truncated=args.allow_truncated)  # fmt: skip
    failed = len(problems)
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
    report_truncated("predict", recognizer.truncated)
    if failed:
        if len(videos) + len(problems) > 1:
            print(f"vificlip predict: {failed} of {len(videos) + len(problems)} videos could not be read",
                  file=sys.stderr)  # fmt: skip
        return 2
    return 0
