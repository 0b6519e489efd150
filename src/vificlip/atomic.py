"""Atomic file writes: a temp file in the target folder, then ``os.replace``.

Readers (and a crash at any moment) see either the old file or the complete new one, never half a file. The file
gets the permissions an ordinary ``open`` would (0644 under the usual umask), not ``mkstemp``'s private 0600.
Like ``errors``, this module imports nothing from vificlip, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or creation inside ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    ``durable``: fsync the file before the rename and the folder after it, so the new file survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it is renamed to ``path``, on error it is removed.

    Readers see no folder or the complete one. ``os.rename`` replaces an existing *empty* folder and refuses a full
    one; a caller that means to replace a full folder removes it first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = False) -> Path:
    """Write UTF-8 text (newlines as given) atomically; returns the path."""
    with atomic_path(path, durable) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as file:
            file.write(text)
    return Path(path)
