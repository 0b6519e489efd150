"""Which paths are videos: the one list of video file suffixes, frame folders, and folder expansion (predict, embed,
prepare all find their inputs here)."""

from __future__ import annotations

import re
from pathlib import Path

FRAME_FILE = re.compile(r"^img_(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
#: every file suffix a folder is expanded to (predict, embed, prepare); anything FFmpeg demuxes could be added
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .3gp .3g2 .mkv .webm .avi .wmv .asf .flv .f4v .mpg .mpeg .m2v .vob .ts .mts .m2ts .ogv .ogg "
    ".gif .mxf .nut .y4m .divx .dv".split()
)


def is_frame_folder(path: Path) -> bool:
    """A directory holding ``img_<number>.jpg|png`` files (the ``frames`` backend)."""
    return path.is_dir() and any(FRAME_FILE.match(p.name) for p in path.iterdir())


def expand_videos(folder: Path) -> list[Path]:
    """Every video file (by :data:`VIDEO_SUFFIXES`) and frame folder under ``folder``, sorted; frame folders are
    not searched further."""
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            found.extend([entry] if is_frame_folder(entry) else expand_videos(entry))
        elif entry.suffix.lower() in VIDEO_SUFFIXES and entry.is_file():
            found.append(entry)
    return found
