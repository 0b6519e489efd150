"""Prompt hooks: where bridge-and-prompt tokens enter the two towers (SPEC §1.5).

:class:`NoPrompts` is the always-present default (a model without prompts never carries untrained ones, SPEC
quirk 21). :class:`DeepPrompts` is the paper's stage 2: independent deep vision and language prompts (VPT-deep /
IVLP style) that *replace*, never add to, the prompt tokens before each prompted block. Both implement the same
five hooks, which :class:`~vificlip.model.vificlip.ViFiCLIP` calls while it runs open_clip's blocks itself, and
say which token rows they rewrite before each vision block (attention rollout needs it). This module never builds
a model: ``ViFiCLIP.with_prompts`` attaches prompts (imports point one way, vificlip → prompts).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import VificlipError
from .backbone import ClipArch
from .text import format_prompts, get_tokenizer

PROMPT_INIT_STD = 0.02  # N(0, 0.02) for every prompt set (SPEC §1.5)
PLACEHOLDER = "X"  # one BPE token; its embedding is overwritten by the learned context
PROMPT_TEMPLATE = "{}."  # the text after the placeholders: "X X … X {class name}."


class PromptConfigError(VificlipError, ValueError):
    """Prompt sizes or depths that cannot work; the message names the field."""


class NoPrompts(nn.Module):
    """Identity hooks. Shapes: vision tokens [N, S, W]; text embeddings [C, L, D]."""

    def prompt_texts(self, class_names: Sequence[str], template: str, replace_underscores: bool) -> list[str]:
        """The strings to tokenise, one per class."""
        return format_prompts(class_names, template, replace_underscores)

    def vision_input(self, x: torch.Tensor) -> torch.Tensor:
        """After the positional embedding, before ``ln_pre``."""
        return x

    def vision_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Right before vision block ``index``."""
        return x

    def text_input(self, x: torch.Tensor) -> torch.Tensor:
        """Token embeddings before the positional embedding is added."""
        return x

    def text_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Right before text block ``index``."""
        return x

    def vision_rows_replaced(self, index: int, num_tokens: int) -> range:
        """Token positions (of ``num_tokens``) that :meth:`vision_block` overwrites before block ``index``."""
        return range(0)


def _check_tower(tower: str, num: int, depth: int, layers: int) -> None:
    """Eager validation naming the field (the reference asserts, or silently ignores)."""
    n_field, d_field = f"n_{tower}", f"depth_{tower}"
    for field, value in ((n_field, num), (d_field, depth)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise PromptConfigError(f"{field} must be a non-negative integer, got {value!r}")
    if num > 0 and depth == 0:
        raise PromptConfigError(
            f"{d_field} must be >= 1 when {n_field}={num}; set {n_field}=0 for no {tower} prompts"
        )
    if num == 0 and depth > 0:
        raise PromptConfigError(
            f"{d_field}={depth} needs {n_field} >= 1 prompt tokens; set {d_field}=0 for none"
        )
    if depth > layers:
        raise PromptConfigError(f"{d_field}={depth} exceeds the {layers} {tower} blocks of this backbone")


def _prompt_sets(depth: int, num: int, width: int) -> nn.ParameterList:
    return nn.ParameterList(nn.Parameter(torch.randn(num, width) * PROMPT_INIT_STD) for _ in range(depth))


class DeepPrompts(nn.Module):
    """Independent deep vision-language prompts (SPEC §1.5); state-dict keys ``vision.{i}`` and ``text.{i}``.

    Depth d means d prompt sets: set 0 enters at the input, set i replaces the prompt tokens right before block i
    (1 ≤ i < d); blocks ≥ d keep propagating whatever the prompt positions hold.

    Args:
        arch: the backbone's shape (widths and depths).
        n_vision: visual prompt tokens, appended at the end of the sequence (no positional code).
        n_text: language context vectors at positions 1..n_text (after SOT).
        depth_vision: visual prompt sets; 0 = no visual prompts.
        depth_text: language prompt sets; >= 1 whenever n_text > 0.
        init_text: words whose token embeddings initialise the layer-0 language context (must tokenise to
            exactly ``n_text`` tokens); ``None`` = N(0, 0.02), as in every shipped config. Applied by
            :meth:`init_from_words` (the embedding table lives in CLIP), which
            :meth:`~vificlip.model.vificlip.ViFiCLIP.with_prompts` calls.
    """

    def __init__(
        self,
        arch: ClipArch,
        n_vision: int,
        n_text: int,
        depth_vision: int,
        depth_text: int,
        init_text: str | None = None,
    ) -> None:
        super().__init__()
        _check_tower("vision", n_vision, depth_vision, arch.vision_layers)
        _check_tower("text", n_text, depth_text, arch.text_layers)
        if depth_vision == 0 and depth_text == 0:
            raise PromptConfigError(
                "DeepPrompts with depth_vision=0 and depth_text=0 has no prompts; use NoPrompts"
            )
        if init_text is not None:
            if n_text == 0:
                raise PromptConfigError("init_text needs language prompts (n_text >= 1)")
            count = len(get_tokenizer().encode(init_text))
            if count != n_text:
                raise PromptConfigError(
                    f"init_text {init_text!r} is {count} tokens, but n_text={n_text}; they must match"
                )
        self.arch = arch
        self.n_vision, self.n_text = n_vision, n_text
        self.depth_vision, self.depth_text = depth_vision, depth_text
        self.init_text = init_text
        self.vision = _prompt_sets(depth_vision, n_vision, arch.vision_width)
        self.text = _prompt_sets(depth_text, n_text, arch.text_width)

    def config(self) -> dict:
        """The constructor arguments besides ``arch`` (JSON-serialisable; stored in checkpoint metadata)."""
        return {
            "n_vision": self.n_vision,
            "n_text": self.n_text,
            "depth_vision": self.depth_vision,
            "depth_text": self.depth_text,
            "init_text": self.init_text,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())

    @torch.no_grad()
    def init_from_words(self, token_embedding: nn.Embedding) -> None:
        """Copy the token embeddings of ``init_text`` into the layer-0 language context (deep sets stay random)."""
        if self.init_text is None:
            raise PromptConfigError("init_from_words needs init_text; this DeepPrompts was built without it")
        ids = torch.tensor(get_tokenizer().encode(self.init_text), device=token_embedding.weight.device)
        self.text[0].copy_(token_embedding(ids).to(self.text[0]))

    # ---- hooks ------------------------------------------------------------------------------------------
    def prompt_texts(self, class_names: Sequence[str], template: str, replace_underscores: bool) -> list[str]:
        """n_text "X" placeholders + " " + class name (underscores → spaces) + "." (SPEC §1.3, prompting row).

        The learned context takes the place of a hand-written template, so ``template`` and
        ``replace_underscores`` apply only when there are no language prompts.
        """
        if self.n_text == 0:
            return format_prompts(class_names, template, replace_underscores)
        placeholders = " ".join([PLACEHOLDER] * self.n_text)
        return [f"{placeholders} {text}" for text in format_prompts(class_names, PROMPT_TEMPLATE, True)]

    def vision_input(self, x: torch.Tensor) -> torch.Tensor:
        """Append set 0 after the class and patch tokens: [N, S, W] → [N, S + n_vision, W]."""
        if self.depth_vision == 0:
            return x
        prompts = self.vision[0].to(x.dtype).expand(x.shape[0], -1, -1)  # [N, n_v, W]
        return torch.cat([x, prompts], dim=1)

    def vision_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Before block ``index`` in 1..depth_vision−1: the last n_vision tokens are replaced by its own set."""
        if not 1 <= index < self.depth_vision:
            return x
        prompts = self.vision[index].to(x.dtype).expand(x.shape[0], -1, -1)  # [N, n_v, W]
        return torch.cat([x[:, : -self.n_vision], prompts], dim=1)

    def vision_rows_replaced(self, index: int, num_tokens: int) -> range:
        """The last n_vision positions before blocks 1..depth_vision−1 (set 0 is appended, not replaced)."""
        if not 1 <= index < self.depth_vision:
            return range(0)
        return range(num_tokens - self.n_vision, num_tokens)

    def text_input(self, x: torch.Tensor) -> torch.Tensor:
        """Token embeddings [C, L, D]: set 0 overwrites the placeholders at positions 1..n_text."""
        return self._overwrite_text(0, x)

    def text_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Before block ``index`` in 1..depth_text−1: positions 1..n_text are overwritten by its own set."""
        if index == 0:
            return x  # set 0 entered through text_input
        return self._overwrite_text(index, x)

    def _overwrite_text(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if index >= self.depth_text:
            return x
        ctx = self.text[index].to(x.dtype).expand(x.shape[0], -1, -1)  # [C, n_t, D]
        return torch.cat([x[:, :1], ctx, x[:, 1 + self.n_text :]], dim=1)  # SOT | ctx | class, ".", EOT, pad
