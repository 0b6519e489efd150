"""Checkpoint names → local paths: built-in checkpoints in the package, remote names (model/hub.py, pretrained.py).

Name forms, tried in this order (docs/checkpoints.md):

- a built-in name (``synthetic-tiny-clip``): a file inside the package, no network;
- ``hf-hub:ORG/REPO[@REVISION][:FILE]`` and ``https://…#sha256=HEX``: fetched once into the Hugging Face cache;
- an existing file or folder;
- open_clip's pretrained ``TAG/MODEL`` (``openai/ViT-B-16``), when no such path exists.

Training run folders (→ their ``last`` checkpoint) are resolved one layer up, in engine/resolve.py.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VificlipError
from . import hub, pretrained

ASSETS = Path(__file__).resolve().parent.parent / "assets"

# name -> file under vificlip/assets; how each was made is documented in the README.
BUILTIN_CHECKPOINTS: dict[str, str] = {
    "synthetic-tiny-clip": "synthetic_tiny_clip.safetensors",
}
NAME_FORMS = "a file or folder, a built-in name, hf-hub:ORG/REPO[@REV][:FILE], TAG/MODEL (e.g. openai/ViT-B-16) or https://…#sha256=HEX"


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A built-in or remote name → its local file or folder (downloaded once); a path must exist."""
    key = str(name_or_path)
    if key in BUILTIN_CHECKPOINTS:
        path = ASSETS / BUILTIN_CHECKPOINTS[key]
        if not path.is_file():
            raise VificlipError(f"built-in checkpoint {key!r} is missing at {path}; rebuild it with "
                                "`vificlip pretrain-synthetic` (see README)")  # fmt: skip
        return path
    if hub.is_remote_name(key):
        return hub.fetch(key)
    path = Path(key).expanduser()
    if path.exists():
        return path
    tag_model = pretrained.open_clip_name(key)
    if tag_model is not None:
        return pretrained.fetch_open_clip(*tag_model)
    raise FileNotFoundError(
        f"checkpoint {key!r} not found; expected {NAME_FORMS} (`vificlip models` lists the names)"
        + pretrained.swapped_hint(key)
    )
