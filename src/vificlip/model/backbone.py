"""The one place that builds open_clip CLIP models: architecture description, inference from weights.

ViFi-CLIP adds no layers to CLIP (paper §3), so the backbone is exactly open_clip's ``CLIP`` class (towers,
tokenizer layout, key names). We only describe its shape (:class:`ClipArch`) so that any width, depth, patch
size and resolution can be rebuilt from a checkpoint, not only the named OpenAI models.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from ..errors import VificlipError


class ArchitectureError(VificlipError, ValueError):
    """The weights do not describe (or do not fit) a ViT CLIP model."""


@dataclasses.dataclass(frozen=True)
class ClipArch:
    """Shape of a ViT CLIP model. Heads are explicit because they cannot be read off the weights."""

    embed_dim: int = 512
    image_size: int = 224
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    quick_gelu: bool = True  # OpenAI CLIP was trained with QuickGELU; LAION open_clip models mostly with GELU

    def __post_init__(self) -> None:
        if self.vision_width % self.vision_heads or self.text_width % self.text_heads:
            raise ArchitectureError(f"widths must be divisible by heads: {self}")
        if self.image_size % self.patch_size:
            raise ArchitectureError(
                f"image_size {self.image_size} is not a multiple of patch {self.patch_size}"
            )

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping) -> ClipArch:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ArchitectureError(
                f"unknown architecture fields {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**values)


# The OpenAI models of SPEC §1.1, by the names the authors (and OpenAI's `clip`) use, plus open_clip's spelling.
_VIT_L14 = ClipArch(embed_dim=768, patch_size=14, vision_width=1024, vision_layers=24, vision_heads=16,
                    text_width=768, text_heads=12)  # fmt: skip
NAMED_ARCHS: dict[str, ClipArch] = {
    "ViT-B/32": ClipArch(patch_size=32),
    "ViT-B/16": ClipArch(),
    "ViT-L/14": _VIT_L14,
    "ViT-L/14@336px": dataclasses.replace(_VIT_L14, image_size=336),
}
NAMED_ARCHS.update(
    {name.replace("/", "-").replace("@336px", "-336"): arch for name, arch in list(NAMED_ARCHS.items())}
)


def arch_by_name(name: str) -> ClipArch:
    """A named OpenAI architecture (``ViT-B/16`` or open_clip's ``ViT-B-16``)."""
    try:
        return NAMED_ARCHS[name]
    except KeyError:
        raise ArchitectureError(f"unknown architecture {name!r}; known: {sorted(NAMED_ARCHS)}") from None


def build_clip(arch: ClipArch) -> CLIP:
    """A randomly initialised open_clip CLIP with the given shape (fp32)."""
    vision_cfg = CLIPVisionCfg(
        layers=arch.vision_layers,
        width=arch.vision_width,
        head_width=arch.vision_width // arch.vision_heads,
        patch_size=arch.patch_size,
        image_size=arch.image_size,
    )
    text_cfg = CLIPTextCfg(
        context_length=arch.context_length,
        vocab_size=arch.vocab_size,
        width=arch.text_width,
        heads=arch.text_heads,
        layers=arch.text_layers,
    )
    return CLIP(arch.embed_dim, vision_cfg=vision_cfg, text_cfg=text_cfg, quick_gelu=arch.quick_gelu)


def _count_blocks(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    indices = {int(k[len(prefix) :].split(".")[0]) for k in state_dict if k.startswith(prefix)}
    if indices != set(range(len(indices))):
        raise ArchitectureError(f"blocks under {prefix!r} are not numbered 0..N-1: {sorted(indices)}")
    return len(indices)


def infer_arch(
    state_dict: Mapping[str, torch.Tensor],
    vision_heads: int | None = None,
    text_heads: int | None = None,
    quick_gelu: bool = True,
) -> ClipArch:
    """Read a ViT CLIP shape off open_clip-named weights. Heads default to width // 64 (CLIP's convention)."""
    required = ["visual.conv1.weight", "visual.positional_embedding", "text_projection", "positional_embedding",
                "token_embedding.weight", "ln_final.weight"]  # fmt: skip
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise ArchitectureError(f"not a ViT CLIP state dict: missing {missing}")
    conv = state_dict["visual.conv1.weight"]
    vision_width, patch = conv.shape[0], conv.shape[-1]
    tokens = state_dict["visual.positional_embedding"].shape[0] - 1
    grid = round(tokens**0.5)
    if grid * grid != tokens:
        raise ArchitectureError(f"visual.positional_embedding has {tokens} patch rows, not a square grid")
    text_width = state_dict["ln_final.weight"].shape[0]
    return ClipArch(
        embed_dim=state_dict["text_projection"].shape[1],
        image_size=grid * patch,
        patch_size=patch,
        vision_width=vision_width,
        vision_layers=_count_blocks(state_dict, "visual.transformer.resblocks."),
        vision_heads=vision_heads or max(vision_width // 64, 1),
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        text_width=text_width,
        text_layers=_count_blocks(state_dict, "transformer.resblocks."),
        text_heads=text_heads or max(text_width // 64, 1),
        quick_gelu=quick_gelu,
    )


def load_clip_weights(clip: CLIP, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict load that names missing, unexpected and mis-shaped keys (open_clip naming) in one error."""
    own = clip.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    misshaped = sorted(
        f"{k}: expected {tuple(own[k].shape)}, got {tuple(state_dict[k].shape)}"
        for k in set(own) & set(state_dict)
        if own[k].shape != state_dict[k].shape
    )
    if missing or unexpected or misshaped:
        parts = [f"{source}: weights do not match the architecture"]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise ArchitectureError("; ".join(parts))
    clip.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
