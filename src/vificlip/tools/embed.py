"""Video embeddings for a folder (``vificlip embed``), written resumably into an index (tools/embed_index.py).

Large folders are embedded resumably: every ``flush_every`` videos go to a new part file ``FILE.parts/part-NNNNNN``
(written to a temp name, then renamed), so an interrupted run loses at most one part; a rerun skips every path
already stored and finally merges the parts into FILE, again atomically.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.decode import VideoDecodeError
from ..data.transforms import build_test_transform
from ..data.video_files import expand_videos
from ..digest import file_sha256
from .embed_index import EmbeddingIndex, EmbeddingIndexError, load_index, parts_dir
from .predict import VideoRecognizer, read_clip

log = logging.getLogger(__name__)

# Fields of the model identity that must match to add embeddings to an existing index.
IDENTITY_KEYS = (
    "sha256",
    "base_sha256",
    "template",
    "num_frames",
    "input_size",
    "num_crops",
    "normalization",
)


def model_identity(
    recognizer: VideoRecognizer, checkpoint: str | Path, base: str | Path | None = None
) -> dict:
    """What made the embeddings: checkpoint path + sha256 and every pipeline setting that changes them."""
    model = recognizer.model
    return {
        "checkpoint": str(Path(checkpoint).resolve()),
        "sha256": file_sha256(checkpoint),
        "base": str(Path(base).resolve()) if base else None,
        "base_sha256": file_sha256(base) if base else None,
        "arch": json.loads(model.arch.to_json()),
        "variant": model.variant,
        "template": model.template,
        "num_frames": recognizer.num_frames,
        "input_size": model.arch.image_size,
        "num_crops": recognizer.num_crops,
        "normalization": recognizer.normalization,
    }


def video_label(relative: str) -> str:
    """The class of a video is its parent folder's name (Kinetics/UCF layout); top-level videos get ''."""
    return Path(relative).parent.name


class _Videos(torch.utils.data.Dataset):
    """Decode + test sampling + transform per path, in DataLoader workers; a decode error is returned, not raised."""

    def __init__(
        self, paths: list[Path], identity: dict, backend: str, allow_truncated: bool = False
    ) -> None:
        self.paths, self.identity, self.backend, self.allow_truncated = (
            paths,
            identity,
            backend,
            allow_truncated,
        )
        self.transform = build_test_transform(
            identity["input_size"], identity["num_crops"], identity["normalization"]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, int, int, str]:
        """(i, views [V,T,3,S,S] or None, frame count, frames missing, error)."""
        try:
            clip = read_clip(self.paths[i], self.identity["num_frames"], self.transform, self.backend,
                             self.allow_truncated)  # fmt: skip
        except VideoDecodeError as exc:
            return i, None, 0, 0, str(exc)
        return i, clip.views, clip.num_frames, clip.missing_frames, ""


@dataclass
class EmbedResult:
    """What one ``embed_folder`` call did."""

    index: EmbeddingIndex
    added: int
    skipped: int  # already in the index
    failed: list[tuple[str, str]]  # (relative path, reason): unreadable videos, retried by the next run
    truncated: list[str] = field(default_factory=list)  # embedded with missing frames (allow_truncated)


def _check_resumable(index: EmbeddingIndex, root: str, identity: dict, out: Path) -> None:
    if index.root != root:
        raise EmbeddingIndexError(f"{out} indexes {index.root}, not {root}; use another --out")
    changed = [k for k in IDENTITY_KEYS if index.model.get(k) != identity.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {index.model.get(k)!r} → {identity.get(k)!r}" for k in changed)
        raise EmbeddingIndexError(
            f"{out} was made with another model or pipeline ({detail}); use another --out"
        )


class _PartWriter:
    """Collects new rows and writes every ``flush_every`` of them as the next part file (atomically)."""

    def __init__(self, index: EmbeddingIndex, out: Path, flush_every: int) -> None:
        self.index, self.out, self.flush_every = index, out, flush_every
        self.pending = EmbeddingIndex(index.root, index.model)
        self.rows: list[torch.Tensor] = []
        self.next_part = len(list(parts_dir(out).glob("part-*.safetensors")))

    def add(self, relative: str, embedding: torch.Tensor, num_frames: int) -> None:
        self.rows.append(embedding)
        self.pending.paths.append(relative)
        self.pending.num_frames.append(num_frames)
        self.pending.labels.append(video_label(relative))
        if len(self.rows) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        self.pending.embeddings = torch.stack(self.rows)  # [n, D]
        self.pending.save(parts_dir(self.out) / f"part-{self.next_part:06d}.safetensors")
        self.index.extend(self.pending)
        self.next_part += 1
        self.pending = EmbeddingIndex(self.index.root, self.index.model)
        self.rows = []

    def merge(self) -> None:
        """Write the whole index to ``out``, then drop the parts (a crash in between only leaves duplicates)."""
        self.flush()
        if len(self.index):
            self.index.save(self.out)
        for part in sorted(parts_dir(self.out).glob("part-*.safetensors")):
            part.unlink()
        if parts_dir(self.out).exists():
            parts_dir(self.out).rmdir()


def embed_folder(
    recognizer: VideoRecognizer,
    folder: str | Path,
    out: str | Path,
    identity: dict,
    backend: str = "auto",
    workers: int = 0,
    flush_every: int = 64,
    progress: bool = True,
) -> EmbedResult:
    """Embed every video under ``folder`` not yet in ``out``; see the module docstring for the file layout.

    ``recognizer`` is a :class:`vificlip.tools.predict.VideoRecognizer`; ``identity`` comes from
    :func:`model_identity` and must match the one an existing index was made with. Videos go one per forward:
    an embedding then never depends on which videos share its batch, so it is bit-identical across runs and
    resumes (T frames per forward already keep a GPU fairly busy at T = 16).
    """
    from tqdm import tqdm

    folder, out = Path(folder).resolve(), Path(out)
    resuming = out.exists() or parts_dir(out).exists()
    index = load_index(out) if resuming else EmbeddingIndex(str(folder), identity)
    _check_resumable(index, str(folder), identity, out)
    done = set(index.paths)
    videos = [p for p in expand_videos(folder) if str(p.relative_to(folder)) not in done]
    loader = torch.utils.data.DataLoader(
        _Videos(videos, identity, backend, recognizer.allow_truncated), batch_size=None, num_workers=workers
    )
    writer = _PartWriter(index, out, flush_every)
    failed: list[tuple[str, str]] = []
    truncated: list[str] = []
    for i, views, total, missing, error in tqdm(
        loader, total=len(videos), desc="embed", unit="video", disable=not progress
    ):
        relative = str(videos[i].relative_to(folder))
        if views is None:
            log.warning("skipping %s", error)
            failed.append((relative, error))
            continue
        if missing:
            truncated.append(relative)
        writer.add(relative, recognizer.encode_video(views).float().cpu(), total)  # embedding [D]
    writer.merge()
    return EmbedResult(index=index, added=len(index) - len(done), skipped=len(done), failed=failed,
                       truncated=truncated)  # fmt: skip
