"""Scores and the paper's aggregation (SPEC §4): per-view softmax summed, top-k, mean-class accuracy, HM, mean ± std.

Everything here is a pure function of numbers, so the protocol arithmetic is tested against hand-computed values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch


def view_scores(logits: torch.Tensor) -> torch.Tensor:
    """[B,V,C] logits → [B,C]: softmax over classes per view, summed over views (SPEC §4.1)."""
    return logits.float().softmax(dim=-1).sum(dim=1)


def top_k(scores: torch.Tensor, k: int = 5) -> torch.Tensor:
    """[B,C] → [B,min(k,C)] class indices, best first (``topk`` order on ties, as the reference)."""
    return scores.topk(min(k, scores.shape[-1]), dim=-1).indices


@dataclasses.dataclass
class EvalResult:
    """Metrics of one evaluation; unreadable videos count as wrong (their prediction is −1)."""

    top1: float
    top5: float
    mean_class: float
    num_videos: int
    num_scored: int
    num_unreadable: int
    confusion: list[list[int]]  # [true][predicted], unreadable videos left out

    def summary(self) -> str:
        return (f"top-1 {self.top1:.2f}  top-5 {self.top5:.2f}  mean-class {self.mean_class:.2f}  "
                f"({self.num_scored} of {self.num_videos} videos scored, {self.num_unreadable} unreadable)")  # fmt: skip

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("confusion")
        return out


def compute_metrics(
    labels: Sequence[int], predictions: Sequence[Sequence[int]], num_classes: int
) -> EvalResult:
    """``predictions[i]`` = top-k classes of video i, best first; an empty list marks an unreadable video."""
    n = len(labels)
    if n == 0:
        raise ValueError("no videos to score")
    confusion = [[0] * num_classes for _ in range(num_classes)]
    hit1 = hit5 = unreadable = 0
    per_class_total = [0] * num_classes
    per_class_hit = [0] * num_classes
    for label, top in zip(labels, predictions, strict=True):
        per_class_total[label] += 1
        if not top:
            unreadable += 1
            continue
        confusion[label][top[0]] += 1
        hit1 += top[0] == label
        hit5 += label in top[:5]
        per_class_hit[label] += top[0] == label
    present = [c for c in range(num_classes) if per_class_total[c]]
    mean_class = sum(per_class_hit[c] / per_class_total[c] for c in present) / len(present)
    return EvalResult(100.0 * hit1 / n, 100.0 * hit5 / n, 100.0 * mean_class, n, n - unreadable, unreadable,
                      confusion)  # fmt: skip


def harmonic_mean(base: float, novel: float) -> float:
    """HM = 2·B·N/(B+N) (0 when both are 0); the paper takes it of the 3-draw *averaged* B and N."""
    return 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (ddof 0) over splits; one value gives std 0.

    The paper does not say which std it reports; ddof 0 is NumPy's default (the sample std, ddof 1, is
    √(3/2) ≈ 1.22× larger for three splits).
    """
    if not values:
        raise ValueError("no values")
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
