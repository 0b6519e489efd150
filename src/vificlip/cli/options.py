"""Argument groups shared by the commands that load a model and read videos (predict, visualize, embed)."""

from __future__ import annotations

import argparse
import sys

from ..data.decode import BACKENDS
from ..data.transforms import NORMALIZATIONS, NUM_CROPS


def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", required=True,
        help="checkpoint file/folder/run folder or name (built-in, hf-hub:ORG/REPO, openai/ViT-B-16, URL#sha256=…)",
    )  # fmt: skip
    p.add_argument("--base-checkpoint", "--base", dest="base_checkpoint",
                   help="base CLIP for the authors' checkpoints (no token embedding): a path or name")  # fmt: skip


def add_class_arguments(p: argparse.ArgumentParser) -> None:
    names = p.add_mutually_exclusive_group(required=True)
    names.add_argument("--classes", help='comma-separated class names, e.g. "dancing,swimming"')
    names.add_argument(
        "--labels",
        help="a bundled label set (k400, ucf101, hmdb51, …) or a label file: CSV `id,name` or one name per line",
    )


def add_video_arguments(
    p: argparse.ArgumentParser, frames: int, frames_help: str, crops: bool = True
) -> None:
    p.add_argument("--frames", type=int, default=frames, help=frames_help)
    if crops:
        p.add_argument(
            "--crops", type=int, choices=NUM_CROPS, default=1, help="1 centre crop or 3 crops (SPEC §2.6)"
        )
    p.add_argument("--normalization", choices=tuple(NORMALIZATIONS), default="authors",
                   help="the authors' ImageNet constants (default, as trained) or CLIP's")  # fmt: skip
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="video decoder (auto: frames for folders, else pyav)",
    )
    add_truncation_argument(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")


def add_truncation_argument(p: argparse.ArgumentParser) -> None:
    """The one truncation policy's switch (predict, embed, visualize, prepare): see data/video_reader.py."""
    p.add_argument(
        "--allow-truncated", action="store_true",
        help="use the frames a truncated file has (fewer than its container declares) instead of refusing it; "
        "each such file is counted in a warning",
    )  # fmt: skip


def report_truncated(command: str, paths: list[str]) -> None:
    """The counted warning for files read with --allow-truncated."""
    if paths:
        print(f"vificlip {command}: warning: {len(paths)} truncated file(s) used with missing frames: "
              f"{', '.join(paths[:5])}{' …' if len(paths) > 5 else ''}", file=sys.stderr)  # fmt: skip


def parse_classes(args: argparse.Namespace) -> list[str]:
    """``--classes a,b`` or ``--labels FILE``, checked (non-empty, no duplicates)."""
    from ..model.text import check_class_names, split_class_names

    if args.classes is not None:
        names = split_class_names(args.classes)
    else:
        from ..data.labelsets import read_label_set

        names = read_label_set(args.labels)
    return list(check_class_names(names))
