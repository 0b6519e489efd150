"""`vificlip embed`: one L2-normalised embedding per video of a folder, resumable, optionally drawn as a 2-D map."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VificlipError
from .options import add_checkpoint_arguments, add_video_arguments, report_truncated


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("embed", help="embed every video of a folder into a searchable index")
    p.add_argument("folder", help="folder of videos (searched recursively); class = parent folder name")
    add_checkpoint_arguments(p)
    p.add_argument("--out", required=True, help="index file (.safetensors); an existing one is resumed")
    p.add_argument(
        "--template", help="prompt template with {} recorded for search (default: the checkpoint's)"
    )
    add_video_arguments(p, 16, "frames sampled per video (segment centres)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (0: in the main process)")
    p.add_argument("--flush-every", type=int, default=64, help="videos per part file written while running")
    p.add_argument("--plot", nargs="?", const="", metavar="PNG",
                   help="also draw a 2-D map coloured by class (default file: the index with .png)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.resolve import resolve_optional, resolve_weights
    from ..tools.embed import embed_folder, model_identity
    from ..tools.embed_plot import plot_index
    from ..tools.predict import load

    if args.frames < 1 or args.workers < 0 or args.flush_every < 1:
        raise VificlipError("--frames and --flush-every must be at least 1, --workers at least 0")
    folder = Path(args.folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    checkpoint = resolve_weights(args.checkpoint)
    base = resolve_optional(args.base_checkpoint)
    recognizer = load(checkpoint, base=base, num_frames=args.frames, device=args.device, template=args.template,
                      num_crops=args.crops, normalization=args.normalization, backend=args.backend,
                      allow_truncated=args.allow_truncated)  # fmt: skip
    identity = model_identity(recognizer, checkpoint, base)
    result = embed_folder(recognizer, folder, args.out, identity, backend=args.backend, workers=args.workers,
                          flush_every=args.flush_every)  # fmt: skip
    print(f"{args.out}: {len(result.index)} videos ({result.added} new, {result.skipped} already there, "
          f"{len(result.failed)} unreadable)")  # fmt: skip
    for path, reason in result.failed:
        print(f"  unreadable: {path}: {reason}")
    report_truncated("embed", result.truncated)
    if args.plot is not None:
        png = Path(args.plot) if args.plot else Path(args.out).with_suffix(".png")
        print(f"map: {plot_index(result.index, png)}")
    return 2 if result.failed else 0
