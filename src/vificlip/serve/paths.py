"""Paths from a request, confined to the folder the server was given (``--root``)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .errors import RequestError


def resolve_under_root(root: Path | None, relative: str, part: str = "path") -> Path:
    """``relative`` (as typed by a client) → a real file inside ``root``; refuses ``..``, absolute paths and links
    whose target lies outside ``root``. ``root`` must already be resolved."""
    if root is None:
        raise RequestError(part, "this server has no --root folder; upload the video instead", 403)
    if not relative or not relative.strip():
        raise RequestError(part, "empty path")
    if "\0" in relative:
        raise RequestError(part, "path contains a NUL byte")
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or relative.startswith(("/", "\\")) or (len(relative) > 1 and relative[1] == ":"):
        raise RequestError(
            part, f"{relative!r} is absolute; give a path relative to the server's --root", 403
        )
    if ".." in pure.parts:
        raise RequestError(part, f"{relative!r} contains '..'; only paths inside --root are served", 403)
    resolved = (root / pure).resolve()
    if not resolved.is_relative_to(root):
        raise RequestError(part, f"{relative!r} leads outside --root (a symbolic link?)", 403)
    if not resolved.is_file():
        raise RequestError(part, f"{relative!r}: no such file under --root", 404)
    return resolved


def list_videos(root: Path, suffixes: tuple[str, ...], limit: int) -> list[str]:
    """Video files under ``root`` (relative, sorted; links leading outside left out), at most ``limit``."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in suffixes and path.is_file() and path.resolve().is_relative_to(root):
            found.append(path.relative_to(root).as_posix())
            if len(found) >= limit:
                break
    return found
