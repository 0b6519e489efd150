"""Find the files a video list names under a dataset root (SPEC §2.2).

The authors' split files name videos as they sit in a *flat* folder (``v_Class_g01_c01.avi``, ``train/<id>.mp4``),
while the official UCF-101 and HMDB-51 archives unpack per class (``Class/v_Class_g01_c01.avi``). Rather than
asking users to flatten (the reference's instructions), a listed path that is absent is resolved by its basename
through an index built with one ``os.walk`` of the root — never a search per item.

Layouts: ``"flat"`` (root/listed path must exist), ``"per-class"`` (always by basename), ``"auto"`` (the listed
path when it exists, else by basename; the index is built on the first miss only).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import VificlipError
from .records import VideoRecord

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "flat", "per-class")
MISSING_POLICIES = ("raise", "skip", "keep")
# Frames inside a frame folder are never listed themselves; indexing millions of them would only waste memory.
FRAME_FILE = re.compile(r"^(img|frame|image)_?\d+\.(jpe?g|png)$", re.IGNORECASE)
_SHOWN_MISSING = 5


class MissingVideosError(VificlipError):
    """Listed videos that are not under the root; names how many, the first few and their file:line."""


@dataclasses.dataclass
class FileIndex:
    """Basename → paths (relative to ``root``) of every file and folder below it, from a single walk."""

    root: Path
    by_name: dict[str, list[Path]]

    @classmethod
    def build(cls, root: str | Path) -> FileIndex:
        root = Path(root)
        if not root.is_dir():
            raise MissingVideosError(f"dataset root {root} is not a directory")
        by_name: dict[str, list[Path]] = {}
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a symlink loop or a folder linked twice
                dirnames.clear()
                continue
            seen.add(real)
            relative_dir = Path(dirpath).relative_to(root)
            for name in dirnames:
                by_name.setdefault(name, []).append(relative_dir / name)
            for name in filenames:
                if not FRAME_FILE.match(name):
                    by_name.setdefault(name, []).append(relative_dir / name)
        log.debug("indexed %d names under %s", len(by_name), root)
        return cls(root, by_name)

    def lookup(self, listed: str | Path, source: str = "") -> Path | None:
        """Absolute path of the file whose basename matches ``listed``; ``None`` when there is none.

        Several matches are disambiguated by the listed folder parts (``train/x.mp4`` prefers ``k400/train/x.mp4``);
        a tie that remains is an error, because guessing would silently train on the wrong video.
        """
        listed = Path(listed)
        candidates = self.by_name.get(listed.name, [])
        if len(candidates) > 1:
            suffix_parts = listed.parts
            candidates = [
                c for c in candidates if c.parts[-len(suffix_parts) :] == suffix_parts
            ] or candidates
        if len(candidates) > 1:
            shown = ", ".join(str(c) for c in candidates[:3])
            raise MissingVideosError(
                f"{source or listed}: {listed} matches {len(candidates)} files under {self.root}: {shown}"
            )
        return self.root / candidates[0] if candidates else None


def _listed_path(record: VideoRecord, root: Path) -> Path:
    """The path as listed (relative), also when the record was read with the root already joined."""
    path = Path(record.path)
    if path.is_absolute():
        try:
            return path.relative_to(root)
        except ValueError:
            return path
    return path


def locate_records(
    records: Iterable[VideoRecord],
    root: str | Path,
    layout: str = "auto",
    index: FileIndex | None = None,
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Split records into (found, with absolute paths) and (missing, as given)."""
    if layout not in LAYOUTS:
        raise VificlipError(f"layout is {layout!r}, expected one of {', '.join(LAYOUTS)}")
    root = Path(root)
    found: list[VideoRecord] = []
    missing: list[VideoRecord] = []
    for record in records:
        listed = _listed_path(record, root)
        direct = root / listed
        if layout != "per-class" and os.path.exists(direct):
            found.append(dataclasses.replace(record, path=direct))
            continue
        if layout == "flat":
            missing.append(record)
            continue
        if index is None:
            index = FileIndex.build(root)
        hit = index.lookup(listed, record.source)
        if hit is None:
            missing.append(record)
        else:
            found.append(dataclasses.replace(record, path=hit))
    return found, missing


def describe_missing(missing: Sequence[VideoRecord], root: str | Path, total: int) -> str:
    shown = "; ".join(f"{r.source or '?'}: {r.path}" for r in missing[:_SHOWN_MISSING])
    more = f" (and {len(missing) - _SHOWN_MISSING} more)" if len(missing) > _SHOWN_MISSING else ""
    return f"{len(missing)} of {total} listed videos not found under {root}: {shown}{more}"


def resolve_records(
    records: Sequence[VideoRecord],
    root: str | Path,
    layout: str = "auto",
    missing: str = "raise",
    index: FileIndex | None = None,
) -> list[VideoRecord]:
    """Records with absolute paths under ``root``.

    ``missing``: ``"raise"`` (default; names the first few with file:line), ``"skip"`` (drop them, log the count)
    or ``"keep"`` (keep the unresolved path, so the dataset's bad-video policy counts it at load time).
    """
    if missing not in MISSING_POLICIES:
        raise VificlipError(f"missing policy is {missing!r}, expected one of {', '.join(MISSING_POLICIES)}")
    found, absent = locate_records(records, root, layout, index)
    if not absent:
        return found
    message = describe_missing(absent, root, len(records))
    if missing == "raise":
        raise MissingVideosError(message)
    log.warning(message)
    if missing == "skip":
        return found
    absent_ids = {id(r) for r in absent}
    located = iter(found)
    root = Path(root)
    return [
        dataclasses.replace(r, path=root / _listed_path(r, root)) if id(r) in absent_ids else next(located)
        for r in records
    ]
