"""Class names → prompt strings → CLIP tokens, and a cache of text features that cannot go stale.

SPEC §1.3: fine-tuned variants use "a photo of a {}." with class names verbatim; vanilla zero-shot CLIP uses the
bare class name. open_clip's SimpleTokenizer (with its bundled BPE vocabulary) does the tokenising.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from open_clip.tokenizer import SimpleTokenizer

from ..errors import VificlipError

DEFAULT_TEMPLATE = "a photo of a {}."
ZEROSHOT_TEMPLATE = "{}"


class ClassListError(VificlipError, ValueError):
    """An unusable class list (empty, duplicated names, over-long prompts)."""


@lru_cache(maxsize=1)
def get_tokenizer() -> SimpleTokenizer:
    """CLIP's BPE tokenizer; built once because loading the merges takes ~0.3 s."""
    return SimpleTokenizer()


def check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    """A non-empty list of distinct, non-blank names, as a tuple (hashable, for cache keys)."""
    names = tuple(class_names)
    if not names:
        raise ClassListError("the class list is empty; give at least one class name")
    blank = [i for i, n in enumerate(names) if not isinstance(n, str) or not n.strip()]
    if blank:
        raise ClassListError(f"class names at positions {blank} are empty")
    seen: dict[str, int] = {}
    dups = []
    for i, n in enumerate(names):
        if n in seen:
            dups.append(f"{n!r} (positions {seen[n]} and {i})")
        seen.setdefault(n, i)
    if dups:
        raise ClassListError("duplicate class names: " + ", ".join(dups))
    return names


def split_class_names(text: str) -> list[str]:
    """ "a, b\nc" → ["a", "b", "c"]: the typed form of a class list (CLI ``--classes``, the web page, HTTP)."""
    return [name.strip() for line in text.splitlines() for name in line.split(",") if name.strip()]


def format_prompts(class_names: Sequence[str], template: str, replace_underscores: bool = False) -> list[str]:
    """One prompt per class; underscores stay unless asked (the reference feeds names verbatim)."""
    if template.count("{}") != 1:
        raise ClassListError(
            f"template {template!r} must have exactly one '{{}}' placeholder for the class name"
        )
    try:
        template.format("")
    except (IndexError, KeyError, ValueError) as exc:  # other braces: "{0}", "{name}", a lone "{"
        raise ClassListError(f"template {template!r} has braces other than one '{{}}' ({exc}); "
                             "write a literal brace as '{{' or '}}'") from None  # fmt: skip
    names = [n.replace("_", " ") if replace_underscores else n for n in class_names]
    return [template.format(n) for n in names]


def tokenize(texts: Sequence[str], context_length: int) -> torch.Tensor:
    """[N, context_length] int64 tokens, SOT … EOT then zeros. Over-long text is an error, never truncated."""
    tok = get_tokenizer()
    sot, eot = tok.encoder["<start_of_text>"], tok.encoder["<end_of_text>"]
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [sot, *tok.encode(text), eot]
        if len(ids) > context_length:
            raise ClassListError(
                f"prompt {text!r} is {len(ids)} tokens long; the text tower takes at most {context_length}"
            )
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def eot_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of EOT per row: it has the largest id in CLIP's vocabulary (the reference's arg-max rule)."""
    return tokens.argmax(dim=-1)


class TextFeatureCache:
    """Holds one (C, D) feature tensor, valid only for the exact key it was computed under.

    The key includes the class names, template, device, dtype and the identity and in-place version counter of
    every text-side tensor, so an optimiser step, a ``load_state_dict`` or a changed class list invalidates it.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: torch.Tensor | None = None

    @staticmethod
    def make_key(prompts: Sequence[str], tensors: Sequence[torch.Tensor], dtype: torch.dtype) -> tuple:
        versions = tuple((t.data_ptr(), t._version, t.device.type, t.device.index) for t in tensors)
        return (tuple(prompts), dtype, versions)

    def get(self, key: tuple) -> torch.Tensor | None:
        return self._value if key == self._key else None

    def put(self, key: tuple, value: torch.Tensor) -> torch.Tensor:
        if value.is_inference():
            # A tensor made under inference_mode cannot enter autograd later; keep a normal copy.
            with torch.inference_mode(False):
                value = value.clone()
        self._key, self._value = key, value.detach()
        return self._value

    def clear(self) -> None:
        self._key, self._value = None, None
