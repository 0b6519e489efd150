"""Built-in checkpoints shipped inside the package, loadable by name (no network, ever)."""

from __future__ import annotations

from pathlib import Path

from ..errors import VificlipError

ASSETS = Path(__file__).resolve().parent.parent / "assets"

# name -> file under vificlip/assets; how each was made is documented in the README.
BUILTIN_CHECKPOINTS: dict[str, str] = {
    "synthetic-tiny-clip": "synthetic_tiny_clip.safetensors",
}


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A built-in name → its file; anything else is taken as a path and must exist."""
    key = str(name_or_path)
    if key in BUILTIN_CHECKPOINTS:
        path = ASSETS / BUILTIN_CHECKPOINTS[key]
        if not path.is_file():
            raise VificlipError(f"built-in checkpoint {key!r} is missing at {path}; rebuild it with "
                                "`vificlip pretrain-synthetic` (see README)")  # fmt: skip
        return path
    path = Path(key).expanduser()
    if not path.exists():
        known = ", ".join(sorted(BUILTIN_CHECKPOINTS))
        raise FileNotFoundError(
            f"checkpoint {key!r} not found (not a file, folder, or built-in name: {known})"
        )
    return path
