"""What ``vificlip serve`` runs with: the model and folders it was given, and every limit a request is held to.

Defined once here; the CLI's defaults, the service's checks and /api/health all read these fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeConfig:
    """What ``vificlip serve`` was started with, and every limit a request is held to (defined here only)."""

    checkpoint: str = "synthetic-tiny-clip"
    base: str | None = None  # base CLIP weights for the authors' checkpoints (as `predict --base-checkpoint`)
    labels: str | None = None  # default class list: a bundled set name or a label file
    index: Path | None = None
    root: Path | None = None
    device: str = "auto"
    frames: int = 16  # default frames per video
    max_frames: int = 64
    max_upload_bytes: int = 64 << 20
    max_form_bytes: int = 1 << 20  # text fields of a form, or a whole JSON body
    max_classes: int = 1000
    max_class_chars: int = 200
    max_results: int = 100  # top_k and search k
    batch_window_ms: float = 5.0
    max_batch: int = 16
    decode_threads: int = 4  # videos decoded at once, each on one core
    model_workers: int = 1  # model calls (batches) at once
    model_threads: int | None = None  # cores each model call spreads over (torch intra-op threads); None: all
    text_cache_size: int = 32
    preview_frames: int = 8
    preview_height: int = 96
