"""One annotated video: where it is, its label, and where the annotation came from (for error messages)."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """``path`` is absolute (or relative to the dataset root); ``source`` is ``"file:line"`` of its annotation."""

    path: Path
    label: int
    source: str = ""
