"""The paper's picture of an embedding index: a 2-D map (t-SNE or PCA), one colour per class (``embed --plot``)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .embed_index import EmbeddingIndex, EmbeddingIndexError


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
