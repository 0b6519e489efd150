"""Video embeddings for a folder and text → video search over them (``vificlip embed`` / ``vificlip search``).

An index is one safetensors file: ``embeddings`` [N,D] (float32, L2-normalised) plus JSON metadata (relative paths,
frame counts, class = parent folder, and the model's identity: checkpoint sha256 and the test pipeline). Large
folders are embedded resumably: every ``flush_every`` videos go to a new part file ``FILE.parts/part-NNNNNN``
(written to a temp name, then renamed), so an interrupted run loses at most one part; a rerun skips every path
already stored and finally merges the parts into FILE, again atomically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..data.decode import VideoDecodeError, expand_videos
from ..data.transforms import build_test_transform
from ..digest import file_sha256
from ..errors import VificlipError
from ..model.vificlip import ViFiCLIP
from .predict import VideoRecognizer, read_clip, resolve_device

log = logging.getLogger(__name__)

INDEX_FORMAT = "vificlip-embeddings"
INDEX_VERSION = 1
META_KEY = "vificlip_index"
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


class EmbeddingIndexError(VificlipError):
    """An embedding index that cannot be read, or does not match the model or folder given."""


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


def project_2d(embeddings: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, str]:
    """[N,D] → ([N,2], method): t-SNE where scikit-learn is installed (and N allows), else PCA."""
    n = embeddings.shape[0]
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        TSNE = None
    if TSNE is not None and n > 4:
        points = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
        return torch.from_numpy(points.fit_transform(embeddings.double().numpy())).float(), "t-SNE"
    x = embeddings.double()
    if n < 2:
        return torch.zeros(n, 2), "PCA"
    torch.manual_seed(seed)
    u, s, _ = torch.pca_lowrank(x, q=min(2, n, x.shape[1]), center=True)
    points = (u * s)[:, :2]  # [N, ≤2] coordinates on the principal axes
    return F.pad(points, (0, 2 - points.shape[1])).float(), "PCA"


def plot_index(index: EmbeddingIndex, path: str | Path, seed: int = 0) -> Path:
    """The paper's picture: embeddings on a 2-D map, one colour per class (parent folder)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    if len(index) == 0:
        raise EmbeddingIndexError("the index is empty: nothing to plot")
    points, method = project_2d(index.embeddings.float(), seed)
    classes = sorted(set(index.labels))
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for c, name in enumerate(classes):
        rows = [i for i, label in enumerate(index.labels) if label == name]
        ax.scatter(
            points[rows, 0], points[rows, 1], s=12, color=cmap(c % cmap.N), label=name or "(top level)"
        )
    if len(classes) <= 20:
        ax.legend(fontsize=7, markerscale=1.5, loc="best")
    ax.set_title(f"{len(index)} videos, {len(classes)} classes ({method})")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
