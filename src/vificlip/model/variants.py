"""Which parameters train in each variant of the paper (SPEC §1.4), as one table.

- ``vifi``: both towers and the logit scale (ViFi-CLIP).
- ``image``: the image tower only (CLIP image-FT).
- ``text``: the text tower only (CLIP text-FT).
- ``zeroshot``: nothing (vanilla CLIP; also never carries prompts, SPEC quirk 21).
- ``prompt``: only the deep vision/language prompts (bridge-and-prompt stage 2).

The token-embedding table never trains in any variant: the reference stores the embedded prompts as a buffer.
"""

from __future__ import annotations

from torch import nn

from ..errors import VificlipError

# variant -> (image tower, text tower, logit scale, prompts)
TRAINABLE: dict[str, tuple[bool, bool, bool, bool]] = {
    "vifi": (True, True, True, False),
    "image": (True, False, False, False),
    "text": (False, True, False, False),
    "zeroshot": (False, False, False, False),
    "prompt": (False, False, False, True),
}

TEXT_TOWER_PREFIXES = ("transformer.", "positional_embedding", "ln_final.", "text_projection")


def check_variant(variant: str) -> str:
    if variant not in TRAINABLE:
        raise VificlipError(f"unknown variant {variant!r}; expected one of {sorted(TRAINABLE)}")
    return variant


def part_of(clip_param_name: str) -> str:
    """'image', 'text', 'scale', 'token_embedding' or 'other' for an open_clip CLIP parameter name."""
    if clip_param_name.startswith("visual."):
        return "image"
    if clip_param_name.startswith(TEXT_TOWER_PREFIXES):
        return "text"
    if clip_param_name == "logit_scale":
        return "scale"
    if clip_param_name.startswith("token_embedding."):
        return "token_embedding"
    return "other"


def apply_variant(clip: nn.Module, prompts: nn.Module, variant: str) -> None:
    """Set ``requires_grad`` on the CLIP backbone and the prompt module according to :data:`TRAINABLE`."""
    image, text, scale, prompt = TRAINABLE[check_variant(variant)]
    if variant == "zeroshot" and any(True for _ in prompts.parameters()):
        raise VificlipError("variant 'zeroshot' is vanilla CLIP and never carries prompts (SPEC quirk 21); "
                            "use variant 'prompt' for a prompt model")  # fmt: skip
    wanted = {"image": image, "text": text, "scale": scale, "token_embedding": False, "other": False}
    for name, param in clip.named_parameters():
        param.requires_grad_(wanted[part_of(name)])
    for param in prompts.parameters():
        param.requires_grad_(prompt)
