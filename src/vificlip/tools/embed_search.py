"""Text → video search over an embedding index (``vificlip search``, the service's /api/search): cosine ranking."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..digest import file_sha256
from ..model.vificlip import ViFiCLIP
from .embed_index import EmbeddingIndex, EmbeddingIndexError
from .predict import resolve_device

log = logging.getLogger(__name__)


def load_search_model(
    index: EmbeddingIndex,
    checkpoint: str | Path | None = None,
    base: str | Path | None = None,
    device: str = "auto",
) -> ViFiCLIP:
    """The model that made ``index`` (checked by sha256), or ``checkpoint`` (a warning if it is another model)."""
    from ..model.loading import load_model

    recorded = index.model
    path = Path(checkpoint) if checkpoint is not None else Path(recorded["checkpoint"])
    base = base if base is not None else recorded.get("base")
    if not path.exists():
        raise FileNotFoundError(f"{path}: the checkpoint recorded in the index is gone; pass --checkpoint")
    digest = file_sha256(path)
    if digest != recorded["sha256"]:
        if checkpoint is None:
            raise EmbeddingIndexError(f"{path} changed since the index was made (sha256 {digest[:12]}… ≠ "
                                      f"{recorded['sha256'][:12]}…); pass the original with --checkpoint")  # fmt: skip
        log.warning(
            "%s is not the checkpoint that made the index (sha256 differs): scores may mean little", path
        )
    model = load_model(path, base=base, template=recorded.get("template"))
    return model.to(resolve_device(device)).eval()


@dataclass(frozen=True)
class SearchHit:
    path: str  # absolute: index root / relative path
    label: str
    score: float  # cosine similarity of the query's text feature and the video embedding


@torch.no_grad()
def search(model: ViFiCLIP, index: EmbeddingIndex, query: str, top_k: int = 10) -> list[SearchHit]:
    """Videos ranked by cos(text(query), video): the query goes through the model's prompt template and text tower."""
    if not query.strip():
        raise EmbeddingIndexError("the search query is empty")
    if len(index) == 0:
        return []
    text = F.normalize(model.encode_text([query]).float(), dim=-1).cpu()  # [1, D]
    if text.shape[-1] != index.embeddings.shape[-1]:
        raise EmbeddingIndexError(f"the model's embeddings have {text.shape[-1]} dimensions, the index's "
                                  f"{index.embeddings.shape[-1]}: the index was made by another model")  # fmt: skip
    return [hit for _, hit in nearest(index, text[0], top_k)]


def nearest(
    index: EmbeddingIndex, query: torch.Tensor, top_k: int = 10, exclude: Sequence[int] = ()
) -> list[tuple[int, SearchHit]]:
    """(row, hit) of the ``top_k`` rows by cosine with ``query`` [D] (text or video); ``exclude``d rows left out."""
    query = F.normalize(query.float(), dim=-1)
    scores = index.embeddings.float() @ query  # [N]
    if exclude:
        scores[list(exclude)] = float("-inf")
    count = min(top_k, len(index) - len(set(exclude)))
    if count <= 0:
        return []
    values, rows = scores.topk(count)
    root = Path(index.root)
    return [(r, SearchHit(str(root / index.paths[r]), index.labels[r], float(v)))
            for v, r in zip(values, rows.tolist())]  # fmt: skip
