"""The one checkpoint resolver: anything a user passes as a checkpoint → the local weights file (or folder) to load.

Every command and config key that takes a checkpoint (``--checkpoint``, ``--base``/``--base-checkpoint``,
``model.checkpoint``, ``model.base_checkpoint``, ``init_from``, ``vificlip.load``, convert, search, export, serve)
goes through :func:`resolve_weights`: names first (built-in, ``hf-hub:``, open_clip ``TAG/MODEL``, URL; see
model/zoo.py), then training run folders and checkpoint folders (→ their ``model.safetensors``; the run-folder
contract lives in engine/checkpoint.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..model.zoo import resolve_checkpoint
from .runs import model_file


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """A file, folder, run folder, built-in or remote name → the local file or hub folder the loader reads."""
    return model_file(resolve_checkpoint(os.path.expanduser(str(name_or_path))))


def resolve_optional(name_or_path: str | os.PathLike | None) -> Path | None:
    """:func:`resolve_weights`, passing ``None`` (no base given) through."""
    return None if name_or_path is None else resolve_weights(name_or_path)
