"""`vificlip serve`: the web page and JSON API (recognise, attention maps, search) on 127.0.0.1 by default."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import VificlipError
from .options import add_checkpoint_arguments

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..serve.config import ServeConfig

    d = ServeConfig()
    p = subparsers.add_parser("serve", help="a web page and a JSON API for recognition and search")
    add_checkpoint_arguments(p)
    p.add_argument(
        "--labels", help="default class list: a bundled label set (k400, ucf101 …) or a label file"
    )
    p.add_argument("--index", help="an embedding index made by `vificlip embed`: turns on search")
    p.add_argument(
        "--root", help="folder whose videos requests may name by relative path (nothing outside it)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    p.add_argument(
        "--frames", type=int, default=d.frames, help="frames sampled per video unless a request says"
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=d.max_upload_bytes / (1 << 20), help="largest upload"
    )
    p.add_argument(
        "--max-classes", type=int, default=d.max_classes, help="longest class list a request may send"
    )
    p.add_argument("--batch-window-ms", type=float, default=d.batch_window_ms,
                   help="how long a batch waits for requests already on their way")  # fmt: skip
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="most requests in one model call")
    p.add_argument("--decode-threads", type=int, default=d.decode_threads, help="videos decoded at once")
    p.add_argument("--model-workers", type=int, default=d.model_workers, help="model calls (batches) at once")
    p.add_argument("--model-threads", type=int, default=d.model_threads,
                   help="CPU threads each model call spreads over (default: every core)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..serve.config import ServeConfig
    from ..serve.server import serve

    counts = ("frames", "max_classes", "max_batch", "decode_threads", "model_workers", "model_threads",
              "max_upload_mb")  # fmt: skip
    for name in counts:  # --model-threads may be left unset (None: every core)
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise VificlipError(f"--{name.replace('_', '-')} {value}: expected a positive number")
    if not 0 < args.port < 65536:
        raise VificlipError(f"--port {args.port}: expected 1 to 65535")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "binding %s: the server is reachable from other machines; it has no authentication", args.host
        )
    config = ServeConfig(checkpoint=args.checkpoint, base=args.base_checkpoint, labels=args.labels,
                         index=Path(args.index) if args.index else None, root=Path(args.root) if args.root else None,
                         device=args.device, frames=args.frames, max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
                         max_classes=args.max_classes, batch_window_ms=args.batch_window_ms, max_batch=args.max_batch,
                         decode_threads=args.decode_threads, model_workers=args.model_workers,
                         model_threads=args.model_threads)  # fmt: skip
    print(f"vificlip serve: loading {args.checkpoint} …", flush=True)
    serve(config, host=args.host, port=args.port)
    return 0
