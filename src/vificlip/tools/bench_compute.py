"""How big and how much compute the model is: parameters by part, and multiply-accumulates per view and per prompt.

Compute is given per view in the papers' convention: multiply-accumulates ("GFLOPs" in the ViFi-CLIP README, 281
for ViT-B/16 × 16 frames), vision tower only, attention included. torch's FlopCounterMode does not see fused
attention kernels, so we count on the meta device with the math kernel forced (no forward at full size), and print
the analytic count beside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ..model.backbone import ClipArch
from ..model.variants import part_of
from ..model.vificlip import ViFiCLIP


def count_parameters(model: ViFiCLIP) -> dict[str, int]:
    """Parameters by part; ``total`` includes the token-embedding table (SPEC §1.6: 149.62 M for ViT-B/16)."""
    counts = {"vision": 0, "text": 0, "token_embedding": 0, "other": 0}
    for name, param in model.clip.named_parameters():
        part = {"image": "vision", "text": "text", "token_embedding": "token_embedding"}.get(
            part_of(name), "other"
        )
        counts[part] += param.numel()
    counts["prompts"] = sum(p.numel() for p in model.prompts.parameters())
    counts["total"] = sum(counts.values())
    counts["trainable"] = model.num_trainable_parameters()
    return counts


def analytic_vision_macs(arch: ClipArch, num_frames: int) -> int:
    """Multiply-accumulates of one view: per frame, patch embedding + per block 12·S·W² + 2·S²·W + projection."""
    s, w, g = 1 + arch.grid_size**2, arch.vision_width, arch.grid_size
    patch = g * g * 3 * arch.patch_size**2 * w
    blocks = arch.vision_layers * (12 * s * w * w + 2 * s * s * w)
    return num_frames * (patch + blocks + w * arch.embed_dim)


def analytic_text_macs(arch: ClipArch, length: int) -> int:
    """Multiply-accumulates of one prompt at ``length`` tokens (attention computed densely, mask applied)."""
    w = arch.text_width
    return arch.text_layers * (12 * length * w * w + 2 * length * length * w) + w * arch.embed_dim


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Force the math kernel (explicit matmuls), also inside nn.MultiheadAttention's fast path."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def counted_vision_macs(arch: ClipArch, num_frames: int) -> int:
    """FlopCounterMode's count for one view, halved to MACs; on the meta device, so free at any size."""
    with torch.device("meta"):
        model = ViFiCLIP.from_arch(arch).eval()
    video = torch.empty(1, num_frames, 3, arch.image_size, arch.image_size, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), math_attention(), counter:
        model.encode_video(video)
    return counter.get_total_flops() // 2


def compute_figures(arch: ClipArch, num_frames: int, text_tokens: int) -> dict:
    """GMACs per view of the vision tower (counted and analytic) and per prompt of the text tower."""
    counted, analytic = counted_vision_macs(arch, num_frames), analytic_vision_macs(arch, num_frames)
    return {
        "vision_gmacs_per_view": {"counted": counted / 1e9, "analytic": analytic / 1e9,
                                  "difference_pct": 100 * (counted - analytic) / analytic},
        "text_gmacs_per_prompt": {"tokens": text_tokens, "trimmed": analytic_text_macs(arch, text_tokens) / 1e9,
                                  "full": analytic_text_macs(arch, arch.context_length) / 1e9},
    }  # fmt: skip
