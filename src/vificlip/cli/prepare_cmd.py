"""`vificlip prepare`: transcode a dataset once into clips that are fast to sample (short side 256, short GOP)."""

from __future__ import annotations

import argparse
import sys

from .options import add_truncation_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="transcode videos to short side 256 with frequent keyframes, keeping their relative paths",
        description="Transcode SRC_ROOT into DST_ROOT once. File names and relative paths are kept, so the same "
        "annotation files work with DST_ROOT as data.root. Resumable; unreadable sources are listed in "
        "DST_ROOT/unreadable.txt and DST_ROOT/prepare_report.json.",
    )
    p.add_argument("source_root", metavar="SRC_ROOT", help="dataset root with the original videos")
    p.add_argument(
        "target_root", metavar="DST_ROOT", help="new root to write (created; finished files are skipped)"
    )
    p.add_argument("--list", dest="lists", nargs="+", default=[], metavar="FILE",
                   help="only the videos of these lists, laid out as the lists name them "
                   "(per-class archives are found by file name)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPU cores)")
    p.add_argument("--short-side", type=int, default=256, help="target short side in pixels (never upscales)")
    p.add_argument(
        "--gop", type=int, default=8, help="keyframe interval in frames (16: smaller files, slower)"
    )
    p.add_argument("--crf", type=int, default=20, help="x264 quality (lower = better, larger files)")
    p.add_argument("--preset", default="veryfast", help="x264 speed preset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_truncation_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tools.prepare import PrepareOptions, prepare_dataset

    options = PrepareOptions(short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset,
                             allow_truncated=args.allow_truncated)  # fmt: skip
    report = prepare_dataset(
        args.source_root, args.target_root, args.lists, args.workers, options, progress=not args.no_progress
    )
    print(report.summary())
    if report.failed or report.missing:
        print(f"unreadable or missing videos are listed in {args.target_root}/unreadable.txt")
    if report.truncated:
        print(f"vificlip prepare: warning: {len(report.truncated)} truncated file(s) used with missing frames "
              f"(listed in {args.target_root}/prepare_report.json)", file=sys.stderr)  # fmt: skip
    return 0
