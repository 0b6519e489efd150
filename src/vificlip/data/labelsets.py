"""The paper's annotation files, shipped with the package: label sets by name and the bundled annotation dir.

``bundled/paper_annotations.tar.xz`` holds the authors' ``labels/`` and ``datasets_splits/`` folders unchanged
(muzairkhattak/ViFi-CLIP, MIT licence; provenance in the archive's README.md). It is unpacked once into the user's
cache, keyed by the archive's hash, so every reader downstream sees ordinary files in the authors' layout.
"""

from __future__ import annotations

import os
import tarfile
from functools import cache
from pathlib import Path

from ..atomic import atomic_dir
from ..digest import file_sha256
from ..errors import VificlipError

ARCHIVE = Path(__file__).with_name("bundled") / "paper_annotations.tar.xz"

# name a user may type → label CSV inside the bundle. The full sets, base/novel halves and K600 zero-shot splits.
LABEL_SETS: dict[str, str] = {
    "k400": "labels/kinetics_400_labels.csv",
    "k400-base": "labels/kinetics_400_base_labels.csv",
    "k400-novel": "labels/kinetics_400_novel_labels.csv",
    "k600": "labels/kinetics_600_labels.csv",
    "k600-zs1": "labels/ZS_split1_K600.csv",
    "k600-zs2": "labels/ZS_split2_K600.csv",
    "k600-zs3": "labels/ZS_split3_K600.csv",
    "ucf101": "labels/ucf_101_labels.csv",
    "ucf101-base": "labels/ucf_101_base_labels.csv",
    "ucf101-novel": "labels/ucf_101_novel_labels.csv",
    "hmdb51": "labels/hmdb_51_labels.csv",
    "hmdb51-base": "labels/hmdb_51_base_labels.csv",
    "hmdb51-novel": "labels/hmdb_51_novel_labels.csv",
    "ssv2": "labels/ssv2_labels.csv",
    "ssv2-base": "labels/ssv2_174_base_labels.csv",
    "ssv2-novel": "labels/ssv2_174_novel_labels.csv",
}


def cache_root() -> Path:
    """vificlip's cache folder: ``$VIFICLIP_CACHE``, else ``$XDG_CACHE_HOME/vificlip``, else ``~/.cache/vificlip``."""
    if os.environ.get("VIFICLIP_CACHE"):
        return Path(os.environ["VIFICLIP_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "vificlip"


@cache
def _archive_digest() -> str:
    return file_sha256(ARCHIVE)[:16]


def bundled_annotation_dir() -> Path:
    """The bundle unpacked (once, atomically: a temp folder renamed into place) in the cache; its path."""
    target = cache_root() / "annotations" / _archive_digest()
    if target.is_dir():
        return target
    try:
        with atomic_dir(target) as tmp, tarfile.open(ARCHIVE, "r:xz") as tar:
            tar.extractall(tmp, filter="data")
    except OSError:
        if not target.is_dir():  # another process won the race: theirs is identical
            raise
    return target


def label_set_path(name_or_path: str | os.PathLike) -> Path:
    """A bundled set's name → its CSV in the unpacked bundle; anything else is returned as a path."""
    key = str(name_or_path)
    if key in LABEL_SETS:
        return bundled_annotation_dir() / LABEL_SETS[key]
    path = Path(key).expanduser()
    if not path.exists():
        raise VificlipError(
            f"labels {key!r}: no such file, and not a bundled label set ({', '.join(LABEL_SETS)})"
        )
    return path


def read_label_set(name_or_path: str | os.PathLike) -> list[str]:
    """Class names of a bundled set (by name) or of a label file (CSV ``id,name`` or one name per line)."""
    from .annotations import read_labels

    return read_labels(label_set_path(name_or_path))
