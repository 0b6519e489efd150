"""The variants of the paper (SPEC §1.4) as one table: which parameters train, the prompt template, the row title.

- ``vifi``: both towers and the logit scale (ViFi-CLIP).
- ``image``: the image tower only (CLIP image-FT).
- ``text``: the text tower only (CLIP text-FT).
- ``zeroshot``: nothing (vanilla CLIP; reads bare class names and never carries prompts, SPEC §1.3, quirk 21).
- ``prompt``: only the deep vision/language prompts (bridge-and-prompt stage 2).

Every list of variant names (CLI choices, config validation, report rows) derives from :data:`VARIANTS`.
The token-embedding table never trains in any variant: the reference stores the embedded prompts as a buffer.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

from ..errors import VificlipError
from .text import DEFAULT_TEMPLATE, ZEROSHOT_TEMPLATE


class Variant(NamedTuple):
    image: bool  # image tower trains
    text: bool  # text tower trains
    scale: bool  # logit scale trains
    prompts: bool  # deep prompts train
    template: str  # the template when nothing else is recorded or asked for
    title: str  # the method's name in the paper's tables


# In the paper's table order.
TRAINABLE: dict[str, Variant] = {
    "zeroshot": Variant(False, False, False, False, ZEROSHOT_TEMPLATE, "Vanilla CLIP"),
    "image": Variant(True, False, False, False, DEFAULT_TEMPLATE, "CLIP image-FT"),
    "text": Variant(False, True, False, False, DEFAULT_TEMPLATE, "CLIP text-FT"),
    "vifi": Variant(True, True, True, False, DEFAULT_TEMPLATE, "ViFi-CLIP"),
    "prompt": Variant(False, False, False, True, DEFAULT_TEMPLATE, "ViFi-CLIP + VL prompting"),
}
VARIANTS: tuple[str, ...] = tuple(TRAINABLE)
DEFAULT_VARIANT = "vifi"
FINE_TUNED = tuple(
    v for v in VARIANTS if v not in ("zeroshot", "prompt")
)  # full fine-tuning of CLIP's towers

TEXT_TOWER_PREFIXES = ("transformer.", "positional_embedding", "ln_final.", "text_projection")


def check_variant(variant: str) -> str:
    if variant not in TRAINABLE:
        raise VificlipError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return variant


def default_template(variant: str) -> str:
    """Vanilla zero-shot CLIP reads the bare class name (SPEC §1.3, maintainers' issue #6); the rest a photo."""
    return TRAINABLE[check_variant(variant)].template


def template_for(
    variant: str, requested: str | None, recorded: str | None, recorded_variant: str | None
) -> str:
    """The one template rule, for every way a model is built or switched to another variant.

    An explicitly requested template wins. A recorded template that is not just its own variant's default (a
    custom one, e.g. the authors' CTX_INIT) is kept. Otherwise the variant's default: a ViFi-CLIP checkpoint
    evaluated as vanilla zero-shot CLIP reads bare class names.
    """
    if requested is not None:
        return requested
    if recorded is not None and recorded != default_template(recorded_variant or DEFAULT_VARIANT):
        return recorded
    return default_template(variant)


def title(variant: str) -> str:
    return TRAINABLE[check_variant(variant)].title


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
    row = TRAINABLE[check_variant(variant)]
    if variant == "zeroshot" and any(True for _ in prompts.parameters()):
        raise VificlipError("variant 'zeroshot' is vanilla CLIP and never carries prompts (SPEC quirk 21); "
                            "use variant 'prompt' for a prompt model")  # fmt: skip
    wanted = {
        "image": row.image,
        "text": row.text,
        "scale": row.scale,
        "token_embedding": False,
        "other": False,
    }
    for name, param in clip.named_parameters():
        param.requires_grad_(wanted[part_of(name)])
    for param in prompts.parameters():
        param.requires_grad_(row.prompts)
