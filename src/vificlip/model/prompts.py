"""Prompt hooks: where bridge-and-prompt tokens enter the two towers (SPEC §1.5).

:class:`NoPrompts` is the always-present default (a model without prompts never carries untrained ones, SPEC
quirk 21); deep vision-language prompts implement the same five hooks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .text import format_prompts


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
