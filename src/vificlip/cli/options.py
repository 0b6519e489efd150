"""Argument groups shared by the commands that load a model and read videos (predict, visualize, embed)."""

from __future__ import annotations

import argparse

from ..data.decode import BACKENDS
from ..data.transforms import NORMALIZATIONS, NUM_CROPS


def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", required=True, help="checkpoint file/folder (any supported format) or built-in name"
    )
    p.add_argument(
        "--base-checkpoint", help="base CLIP weights for the authors' checkpoints (no token embedding)"
    )


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
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")


def parse_classes(args: argparse.Namespace) -> list[str]:
    """``--classes a,b`` or ``--labels FILE``, checked (non-empty, no duplicates)."""
    from ..model.text import check_class_names

    if args.classes is not None:
        names = [name.strip() for name in args.classes.split(",") if name.strip()]
    else:
        from ..data.labelsets import read_label_set

        names = read_label_set(args.labels)
    return list(check_class_names(names))
