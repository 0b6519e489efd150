"""`vificlip models`, `vificlip download NAME…`, `vificlip export RUN_OR_CHECKPOINT DIR [--push ORG/REPO]`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    m = subparsers.add_parser("models", help="list checkpoint names, bundled label sets and what is cached")
    m.add_argument("--all", action="store_true", help="every runnable open_clip name, not only OpenAI's")
    m.set_defaults(func=run_models)

    d = subparsers.add_parser(
        "download",
        help="fetch checkpoints by name ahead of time (then HF_HUB_OFFLINE=1 works without a network)",
    )
    d.add_argument(
        "names", nargs="+", help="hf-hub:ORG/REPO[@REV][:FILE], TAG/MODEL (openai/ViT-B-16), URL#sha256=…"
    )
    d.set_defaults(func=run_download)

    e = subparsers.add_parser(
        "export", help="write a run or checkpoint as a folder ready for the Hugging Face Hub"
    )
    e.add_argument("source", help="run folder, checkpoint file or folder, or name")
    e.add_argument("dir", help="new folder to write (model.safetensors, config.json, README.md model card)")
    e.add_argument("--base", "--base-checkpoint", dest="base", help="base CLIP for the authors' .pth files")
    e.add_argument(
        "--frames", type=int, help="frames per video recorded in config.json (default: the run's, or 16)"
    )
    e.add_argument("--normalization", choices=("authors", "clip"), help="default: the run's, or authors")
    e.add_argument(
        "--push", metavar="ORG/REPO", help="also upload the folder to this Hub repo (needs HF_TOKEN)"
    )
    e.add_argument("--private", action="store_true", help="create the pushed repo as private")
    e.set_defaults(func=run_export)


def run_models(args: argparse.Namespace) -> int:
    from ..data.labelsets import LABEL_SETS, read_label_set
    from ..model import hub, pretrained
    from ..model.zoo import BUILTIN_CHECKPOINTS, NAME_FORMS

    print(f"Checkpoint names ({NAME_FORMS}):")
    print("\nbuilt-in (inside the package):")
    for name in BUILTIN_CHECKPOINTS:
        print(f"  {name}")
    names = pretrained.runnable_open_clip_names()
    shown = names if args.all else [n for n in names if n.startswith("openai/")]
    print(
        f"\nopen_clip pretrained, runnable ({len(names)}; {'all' if args.all else 'OpenAI, --all for all'}):"
    )
    for name in shown:
        print(f"  {name}")
    print("\nlabel sets (--labels NAME):")
    for name in LABEL_SETS:
        print(f"  {name:14s} {len(read_label_set(name)):4d} classes")
    cached = hub.cached_names() + pretrained.cached_open_clip()
    print("\ncached:" + ("" if cached else " nothing yet"))
    for name, size, path in cached:
        print(f"  {name}  {size / 1e6:.1f} MB  {path}" if size else f"  {name}  {path}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from ..engine.resolve import resolve_weights

    for name in args.names:
        print(f"{name} -> {resolve_weights(name)}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..errors import VificlipError
    from ..tools.export import export, push

    if args.frames is not None and args.frames < 1:
        raise VificlipError("--frames must be at least 1")
    folder = export(args.source, args.dir, base=args.base, frames=args.frames, normalization=args.normalization,
                    repo=args.push)  # fmt: skip
    print(f"{args.source} -> {folder} (model.safetensors, config.json, README.md)")
    if args.push:
        print(f"pushed: {push(folder, args.push, private=args.private)}")
    return 0
