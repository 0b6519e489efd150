"""`vificlip splits`: build base/novel, few-shot and zero-shot splits in the authors' file formats; check leakage.

Exit status: 0 on success, 1 when ``check-leak`` (or a builder given ``--eval`` lists) finds leaked videos,
2 on bad input.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

from ..data.annotations import (
    read_labels,
    read_video_list,
    validate_records,
    write_label_csv,
    write_video_list,
)
from ..data.splits import (
    LEAK_KEYS,
    SplitLeakageWarning,
    check_leakage,
    few_shot_splits,
    normalise_class_name,
    split_base_novel,
    subset_records,
    write_base_novel,
    zero_shot_subsets,
)
from ..errors import VificlipError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "splits", help="build protocol splits (base/novel, few-shot, zero-shot); check leaks"
    )
    sub = p.add_subparsers(dest="splits_command", required=True, metavar="SPLIT")

    b2n = sub.add_parser("base-novel", help="most frequent half of the classes = base, the rest = novel")
    b2n.add_argument("--train", required=True, help="full training list (full-list labels)")
    b2n.add_argument("--labels", required=True, help="label CSV or label map of all classes")
    b2n.add_argument("--val", help="evaluation list to split into base_val.txt / novel_val.txt")
    b2n.add_argument("--shots", type=int, default=16, help="videos per base class in each training draw")
    b2n.add_argument("--draws", type=int, default=3, help="number of training draws fs_base_s{i}_train.txt")
    b2n.add_argument("--seed", type=int, default=1)
    b2n.add_argument(
        "--prefix", default="", help="label CSV name prefix, e.g. hmdb_51_ → hmdb_51_base_labels.csv"
    )
    b2n.add_argument("--out", required=True, help="output folder")
    b2n.set_defaults(func=run_base_novel)

    few = sub.add_parser("few-shot", help="K videos per class, an independent draw per K")
    few.add_argument("--train", required=True, help="training list to draw from")
    few.add_argument("--shots", default="2,4,8,16", help="comma-separated K values")
    few.add_argument("--seed", type=int, default=1)
    few.add_argument("--labels", help="label file: checks labels and that every class has videos")
    few.add_argument("--prefix", default="train1_", help="output names {prefix}few_shot_{K}.txt")
    few.add_argument("--eval", nargs="*", default=[], help="evaluation lists to check for leaked videos")
    few.add_argument("--out", required=True, help="output folder")
    few.set_defaults(func=run_few_shot)

    zs = sub.add_parser(
        "zero-shot", help="class subsets absent from another label set (e.g. K600 minus K400)"
    )
    zs.add_argument("--labels", required=True, help="label file of the full class set (e.g. K600)")
    zs.add_argument("--exclude", required=True, help="label file of the classes seen in training (e.g. K400)")
    zs.add_argument("--classes", type=int, default=160, help="classes per split")
    zs.add_argument("--splits", type=int, default=3)
    zs.add_argument("--seed", type=int, default=1)
    zs.add_argument("--videos", help="video list labelled in --labels; written per split with local labels")
    zs.add_argument(
        "--tag", default="", help="name tag, e.g. K600 → ZS_split1_K600.csv, ZS_split1_K600_eval.txt"
    )
    zs.add_argument("--out", required=True, help="output folder")
    zs.set_defaults(func=run_zero_shot)

    leak = sub.add_parser("check-leak", help="report training videos that also appear in evaluation lists")
    leak.add_argument("--train", nargs="+", required=True, help="training list(s)")
    leak.add_argument("--eval", nargs="+", required=True, help="evaluation list(s)")
    leak.add_argument("--key", choices=LEAK_KEYS, default="name", help="match by file name (default) or path")
    leak.set_defaults(func=run_check_leak)


def _leak_report(train_path: str, train_records, eval_paths: list[str], key: str = "name") -> int:
    """Print one line per evaluation list; returns the number of leaked videos."""
    total = 0
    for eval_path in eval_paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SplitLeakageWarning)  # we print our own line instead
            leaks = check_leakage(train_records, read_video_list(eval_path), train_path, eval_path, key)
        total += len(leaks)
        if leaks:
            print(f"LEAK: {len(leaks)} videos of {eval_path} are in {train_path}, e.g. {leaks[0][1].path} "
                  f"({leaks[0][1].source}, {leaks[0][0].source})")  # fmt: skip
        else:
            print(f"ok: no video of {eval_path} is in {train_path}")
    return total


def run_base_novel(args: argparse.Namespace) -> int:
    names = read_labels(args.labels)
    train = read_video_list(args.train)
    validate_records(train, len(names), args.labels)
    val = read_video_list(args.val) if args.val else None
    if val is not None:
        validate_records(val, len(names), args.labels)
    split = split_base_novel(train, len(names))
    written = write_base_novel(
        args.out,
        split,
        names,
        train,
        val,
        shots=args.shots,
        draws=args.draws,
        seed=args.seed,
        prefix=args.prefix,
    )
    print(
        f"base: {len(split.base)} classes, novel: {len(split.novel)} classes; wrote {len(written)} files to {args.out}"
    )
    leaks = _leak_report(args.train, train, [args.val]) if args.val else 0
    return 1 if leaks else 0


def _parse_shots(text: str) -> list[int]:
    try:
        shots = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise VificlipError(
            f"--shots is {text!r}, expected comma-separated integers such as 2,4,8,16"
        ) from None
    if not shots or min(shots) < 1:
        raise VificlipError(f"--shots is {text!r}, expected positive integers")
    return shots


def run_few_shot(args: argparse.Namespace) -> int:
    shots = _parse_shots(args.shots)
    train = read_video_list(args.train)
    num_classes = None
    if args.labels:
        num_classes = len(read_labels(args.labels))
        validate_records(train, num_classes, args.labels)
    out, leaks = Path(args.out), 0
    for k, records in few_shot_splits(train, shots, args.seed, num_classes).items():
        path = write_video_list(out / f"{args.prefix}few_shot_{k}.txt", records)
        print(f"{k}-shot: {len(records)} videos → {path}")
        leaks += _leak_report(str(path), records, args.eval)
    return 1 if leaks else 0


def run_zero_shot(args: argparse.Namespace) -> int:
    names = read_labels(args.labels)
    exclude = read_labels(args.exclude)
    subsets = zero_shot_subsets(names, exclude, args.classes, args.splits, args.seed)
    videos = read_video_list(args.videos) if args.videos else None
    if videos is not None:
        validate_records(videos, len(names), args.labels)
    tag = f"_{args.tag}" if args.tag else ""
    out = Path(args.out)
    for index, subset in enumerate(subsets, start=1):
        write_label_csv(out / f"ZS_split{index}{tag}.csv", subset)
        line = f"split {index}: {len(subset)} classes"
        if videos is not None:
            records = subset_records(videos, names, subset)
            write_video_list(out / f"ZS_split{index}{tag}_eval.txt", records)
            line += f", {len(records)} videos"
        print(line)
    excluded = {normalise_class_name(n) for n in exclude}
    candidates = sum(1 for n in names if normalise_class_name(n) not in excluded)
    print(f"drawn from the {candidates} classes of {args.labels} not in {args.exclude}; wrote to {out}")
    return 0


def run_check_leak(args: argparse.Namespace) -> int:
    total = 0
    for train_path in args.train:
        total += _leak_report(train_path, read_video_list(train_path), args.eval, args.key)
    return 1 if total else 0
