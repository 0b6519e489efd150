"""`vificlip search`: rank the videos of an embedding index by their similarity to a text query."""

from __future__ import annotations

import argparse
import json

from ..errors import VificlipError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="find videos in an embedding index by text")
    p.add_argument("query", help='text, e.g. "playing guitar" (fed through the model\'s prompt template)')
    p.add_argument("--index", required=True, help="index file written by `vificlip embed`")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--checkpoint", help="model to encode the query (default: the one recorded in the index)")
    p.add_argument("--base-checkpoint", help="base CLIP weights for the authors' checkpoints")
    p.add_argument("--json", action="store_true", help="one JSON object per hit")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.resolve import resolve_optional
    from ..tools.embed_index import load_index
    from ..tools.embed_search import load_search_model, search

    if args.top_k < 1:
        raise VificlipError("--top-k must be at least 1")
    index = load_index(args.index)
    checkpoint = resolve_optional(args.checkpoint)
    model = load_search_model(index, checkpoint, resolve_optional(args.base_checkpoint), args.device)
    for rank, hit in enumerate(search(model, index, args.query, args.top_k), start=1):
        if args.json:
            print(
                json.dumps({"rank": rank, "path": hit.path, "class": hit.label, "score": round(hit.score, 6)})
            )
        else:
            print(f"{rank:3d}  {hit.score:+.4f}  {hit.path}")
    return 0
