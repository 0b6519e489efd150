"""The embedding-index file format: one safetensors file, read and written atomically, plus resumable parts.

An index is ``embeddings`` [N,D] (float32, L2-normalised) plus JSON metadata (relative paths, frame counts,
class = parent folder, and the model's identity: checkpoint sha256 and the test pipeline). ``vificlip embed``
(tools/embed.py) writes it in part files ``FILE.parts/part-NNNNNN`` first; :func:`load_index` reads the index
together with any parts an unfinished run left beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..errors import VificlipError

INDEX_FORMAT = "vificlip-embeddings"
INDEX_VERSION = 1
META_KEY = "vificlip_index"


class EmbeddingIndexError(VificlipError):
    """An embedding index that cannot be read, or does not match the model or folder given."""


@dataclass
class EmbeddingIndex:
    """Embeddings [N,D] with one path (relative to ``root``), frame count and class label per row."""

    root: str
    model: dict
    embeddings: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    paths: list[str] = field(default_factory=list)
    num_frames: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def metadata(self) -> dict[str, str]:
        info = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "root": self.root, "model": self.model,
                "paths": self.paths, "num_frames": self.num_frames, "labels": self.labels}  # fmt: skip
        return {META_KEY: json.dumps(info)}

    def extend(self, other: EmbeddingIndex) -> None:
        """Append rows of ``other`` whose paths are new (a part may repeat rows after an interrupted merge)."""
        seen = set(self.paths)
        keep = [i for i, p in enumerate(other.paths) if p not in seen]
        if not keep:
            return
        rows = other.embeddings[keep]
        self.embeddings = rows.clone() if len(self) == 0 else torch.cat([self.embeddings, rows])
        self.paths += [other.paths[i] for i in keep]
        self.num_frames += [other.num_frames[i] for i in keep]
        self.labels += [other.labels[i] for i in keep]

    def save(self, path: Path) -> None:
        """Write atomically (temp file, then rename), so a reader or a crash never sees half a file."""
        with atomic_path(path) as tmp:
            save_file({"embeddings": self.embeddings.contiguous()}, str(tmp), metadata=self.metadata())

    @classmethod
    def read(cls, path: Path) -> EmbeddingIndex:
        """One index or part file."""
        try:
            with safe_open(str(path), framework="pt") as handle:
                info = json.loads((handle.metadata() or {})[META_KEY])
                embeddings = handle.get_tensor("embeddings")
        except (KeyError, OSError, ValueError, SafetensorError) as exc:  # JSONDecodeError is a ValueError
            detail = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise EmbeddingIndexError(
                f"{path}: not a vificlip embedding index (make one with `vificlip embed`): {detail}"
            ) from None
        if (
            not isinstance(info, dict)
            or info.get("format") != INDEX_FORMAT
            or info.get("version") != INDEX_VERSION
        ):
            found = f"{info.get('format')} v{info.get('version')}" if isinstance(info, dict) else "no format"
            raise EmbeddingIndexError(f"{path}: unsupported index format {found}")
        try:
            return cls(root=info["root"], model=info["model"], embeddings=embeddings, paths=list(info["paths"]),
                       num_frames=list(info["num_frames"]), labels=list(info["labels"]))  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise EmbeddingIndexError(f"{path}: damaged index metadata (missing {exc})") from None


def parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def load_index(path: str | Path) -> EmbeddingIndex:
    """The index at ``path`` plus any parts an unfinished ``embed`` left beside it."""
    path = Path(path)
    parts = sorted(parts_dir(path).glob("part-*.safetensors"))
    if not path.exists() and not parts:
        raise FileNotFoundError(f"{path}: no embedding index here (make one with `vificlip embed`)")
    pieces = ([EmbeddingIndex.read(path)] if path.exists() else []) + [EmbeddingIndex.read(p) for p in parts]
    index = EmbeddingIndex(root=pieces[0].root, model=pieces[0].model)
    for piece in pieces:
        index.extend(piece)
    return index
