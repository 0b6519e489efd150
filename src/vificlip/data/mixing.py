"""Batch-level Mixup / CutMix with label smoothing, and the soft-target loss they need (SPEC §2.8).

Mirrors the reference's ``CutmixMixupBlending`` (from X-CLIP): per batch, CutMix with probability ``switch_prob``,
else Mixup; one λ and one permutation per batch; CutMix cuts the *same* box out of every frame of a clip and
recomputes λ from the clipped box area. Runs on whatever device the batch lives on; only the few scalars (λ, box,
permutation) are drawn on the CPU, from a NumPy generator seeded at construction, so a run is reproducible.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot targets with off-value ε/C and on-value 1 − ε + ε/C (float32, on the labels' device)."""
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
    return targets.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of Σ_c −y_c · log_softmax(logits)_c; computed in float32 for AMP safety."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


class MixupCutmix:
    """``videos [B,T,3,H,W], labels [B]`` → mixed videos and soft targets ``[B,C]`` (each row sums to 1).

    With both alphas 0 the videos pass through unchanged and only label smoothing applies. The input tensor is
    not modified in place.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        seed: int | None = None,
    ):
        if num_classes < 1 or mixup_alpha < 0 or cutmix_alpha < 0 or not 0 <= label_smoothing < 1:
            raise ValueError(
                f"bad mixing settings: num_classes={num_classes}, mixup_alpha={mixup_alpha}, "
                f"cutmix_alpha={cutmix_alpha}, label_smoothing={label_smoothing}"
            )
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.rng = np.random.default_rng(seed)
        self.last_box: tuple[int, int, int, int] | None = (
            None  # (y1, y2, x1, x2) of the last CutMix, for tests/logs
        )

    def choose(self) -> str:
        """Which blend this batch gets: "cutmix", "mixup" or "none"."""
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            return "cutmix" if self.rng.random() < self.switch_prob else "mixup"
        if self.cutmix_alpha > 0:
            return "cutmix"
        return "mixup" if self.mixup_alpha > 0 else "none"

    def cut_box(self, height: int, width: int, lam: float) -> tuple[int, int, int, int]:
        """Box of side ratio √(1−λ) (truncated), centre uniform over the image, clipped to it: (y1, y2, x1, x2)."""
        ratio = np.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * ratio), int(width * ratio)
        cy, cx = int(self.rng.integers(height)), int(self.rng.integers(width))
        y1, y2 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
        x1, x2 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
        return int(y1), int(y2), int(x1), int(x2)

    def __call__(self, videos: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        mode = self.choose()
        self.last_box = None
        if mode == "none" or videos.shape[0] < 2:
            return videos, targets
        permutation = torch.from_numpy(self.rng.permutation(videos.shape[0])).to(videos.device)
        if mode == "mixup":
            lam = float(self.rng.beta(self.mixup_alpha, self.mixup_alpha))
            videos = lam * videos + (1.0 - lam) * videos[permutation]
        else:
            lam = float(self.rng.beta(self.cutmix_alpha, self.cutmix_alpha))
            height, width = videos.shape[-2:]
            y1, y2, x1, x2 = self.last_box = self.cut_box(height, width, lam)
            videos = videos.clone()
            videos[..., y1:y2, x1:x2] = videos[permutation, ..., y1:y2, x1:x2]  # same box on every frame
            lam = 1.0 - (y2 - y1) * (x2 - x1) / (height * width)
        targets = lam * targets + (1.0 - lam) * targets[permutation]
        return videos, targets
