"""ViFi-CLIP: CLIP applied frame by frame, averaged over time, matched to class-name prompts (paper §3, SPEC §1.2).

    video [B,T,3,H,W] ─ image tower per frame ─ mean over T ─┐
                                                               ├─ exp(logit_scale) · cos ─ logits [B,C]
    class names ─ "a photo of a {}." ─ text tower ────────────┘

We run open_clip's blocks ourselves (never editing open_clip) for two reasons: the text context is trimmed to the
longest prompt of the class set (exact, because of the causal mask), and bridge-and-prompt tokens must enter
before chosen blocks (:mod:`vificlip.model.prompts`). Attention is open_clip's ``nn.MultiheadAttention`` with
``need_weights=False``, which dispatches to PyTorch's fused scaled-dot-product attention on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from torch import nn
from torch.utils.checkpoint import checkpoint

from .backbone import ClipArch, build_clip
from .prompts import DeepPrompts, NoPrompts, PromptConfigError
from .text import TextFeatureCache, check_class_names, eot_positions, tokenize
from .variants import DEFAULT_VARIANT, apply_variant, check_variant, default_template, part_of, template_for


class ViFiCLIP(nn.Module):
    """A CLIP model used as a video classifier over any list of class names.

    Args:
        clip: an open_clip ``CLIP`` (ViT towers). Its parameter names are kept, so ``clip.state_dict()`` is an
            ordinary open_clip checkpoint.
        arch: the shape of ``clip`` (stored in our checkpoints).
        variant: ``vifi`` | ``image`` | ``text`` | ``zeroshot`` | ``prompt`` — which parameters train.
        template: prompt template with one ``{}``; defaults to the variant's (SPEC §1.3).
        replace_underscores: feed "playing_guitar" as "playing guitar" (the reference feeds names verbatim).
        prompts: bridge-and-prompt module; :class:`NoPrompts` when absent.
    """

    def __init__(
        self,
        clip: CLIP,
        arch: ClipArch,
        variant: str = DEFAULT_VARIANT,
        template: str | None = None,
        replace_underscores: bool = False,
        prompts: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.clip = clip
        self.arch = arch
        self.prompts = prompts if prompts is not None else NoPrompts()
        self.variant = check_variant(variant)
        self.template = template if template is not None else default_template(variant)
        self.replace_underscores = replace_underscores
        self.grad_checkpointing = False
        self._text_cache = TextFeatureCache()
        self._token_cache: tuple[tuple[str, ...], torch.Tensor] | None = None
        apply_variant(self.clip, self.prompts, self.variant)

    @classmethod
    def from_arch(cls, arch: ClipArch, **kwargs) -> ViFiCLIP:
        """Randomly initialised weights (tests, pretraining from scratch)."""
        return cls(build_clip(arch), arch, **kwargs)

    def set_variant(self, variant: str, template: str | None = None) -> ViFiCLIP:
        """Switch which parameters train and the template with them (:func:`~.variants.template_for`, the one
        rule every loader and builder applies): e.g. a ViFi-CLIP checkpoint evaluated as vanilla zero-shot CLIP
        reads bare class names, unless it records a custom template or ``template`` is given. Returns ``self``."""
        apply_variant(self.clip, self.prompts, variant)  # validates first: a refused variant changes nothing
        self.template = template_for(variant, template, self.template, self.variant)
        self.variant = variant
        self._text_cache.clear()
        self._token_cache = None
        return self

    def with_prompts(
        self,
        n_vision: int,
        n_text: int,
        depth_vision: int,
        depth_text: int,
        init_text: str | None = None,
        variant: str = "prompt",
    ) -> ViFiCLIP:
        """Bridge and prompt: a prompt model on this model's CLIP (shared, not copied) with fresh deep prompts.

        Only the prompts train under the default variant "prompt" (logit scale frozen, SPEC §1.4). Vanilla
        zero-shot CLIP never carries prompts (SPEC quirk 21), so ``variant="zeroshot"`` is refused.
        Arguments as in :class:`~vificlip.model.prompts.DeepPrompts`.
        """
        if variant == "zeroshot":
            raise PromptConfigError(
                "variant 'zeroshot' is vanilla CLIP and never carries prompts (SPEC quirk 21); "
                "evaluate a prompt model with variant 'prompt', or vanilla CLIP without prompts"
            )
        if not isinstance(self.prompts, NoPrompts):
            raise PromptConfigError(
                "the base model already carries prompts; start from a model without prompts"
            )
        prompts = DeepPrompts(self.arch, n_vision, n_text, depth_vision, depth_text, init_text)
        reference = self.clip.positional_embedding
        prompts.to(device=reference.device, dtype=reference.dtype)
        if init_text is not None:
            prompts.init_from_words(self.clip.token_embedding)
        return type(self)(self.clip, self.arch, variant=variant, template=self.template,
                          replace_underscores=self.replace_underscores, prompts=prompts)  # fmt: skip

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute block activations in backward: less memory for B·T frames and C×L text tokens."""
        self.grad_checkpointing = enabled

    # ---- image side -------------------------------------------------------------------------------------
    def _run_block(self, block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(block, x, None, None, attn_mask, use_reentrant=False)
        return block(x, attn_mask=attn_mask)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] normalised frames → [N,D] image features (not normalised)."""
        v = self.clip.visual
        x = v.conv1(frames)  # [N, W, g, g]
        x = x.flatten(2).transpose(1, 2)  # [N, g·g, W]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # [N, 1, W]
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)  # [N, 1+g·g, W]
        x = self.prompts.vision_input(x)  # [N, 1+g·g(+n_v), W]
        x = v.ln_pre(x)
        for index, block in enumerate(v.transformer.resblocks):
            x = self.prompts.vision_block(index, x)
            x = self._run_block(block, x, None)
        x = v.ln_post(x[:, 0])  # class token → [N, W]
        return x @ v.proj  # [N, D]

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """[B,T,3,H,W] → [B,D]: all B·T frames through the image tower as one batch, then the mean over T."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"expected a video batch [B, T, 3, H, W], got shape {tuple(video.shape)}")
        b, t = video.shape[:2]
        frames = self.encode_frames(video.flatten(0, 1))  # [B·T, D]
        return frames.view(b, t, -1).mean(dim=1)  # [B, D]

    # ---- text side --------------------------------------------------------------------------------------
    def _text_tensors(self) -> Iterator[torch.Tensor]:
        for name, param in self.clip.named_parameters():
            if part_of(name) in ("text", "token_embedding"):
                yield param
        yield from self.prompts.parameters()

    def _text_trainable(self) -> bool:
        return any(p.requires_grad for p in self._text_tensors())

    def _tokens(self, prompts: tuple[str, ...]) -> torch.Tensor:
        if self._token_cache is None or self._token_cache[0] != prompts:
            self._token_cache = (prompts, tokenize(prompts, self.arch.context_length))
        return self._token_cache[1]

    def _text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """[C,77] tokens → [C,D]; runs only the first L positions, L = last EOT + 1 (exact under the causal mask)."""
        c = self.clip
        eot = eot_positions(tokens)  # [C]
        length = int(eot.max()) + 1
        tokens = tokens[:, :length].to(c.positional_embedding.device)
        x = c.token_embedding(tokens)  # [C, L, D_t]
        x = self.prompts.text_input(x)
        x = x + c.positional_embedding[:length].to(x.dtype)
        mask = c.attn_mask[:length, :length]
        for index, block in enumerate(c.transformer.resblocks):
            x = self.prompts.text_block(index, x)
            x = self._run_block(block, x, mask)
        x = c.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot.to(x.device)]  # EOT token → [C, D_t]
        return x @ c.text_projection  # [C, D]

    def prompt_texts(self, class_names: Sequence[str]) -> list[str]:
        """The exact strings fed to the tokenizer for these classes."""
        names = check_class_names(class_names)
        return self.prompts.prompt_texts(names, self.template, self.replace_underscores)

    def encode_text(self, class_names: Sequence[str]) -> torch.Tensor:
        """[C,D] text features (not normalised). Cached while the text side is frozen or gradients are off."""
        prompts = tuple(self.prompt_texts(class_names))
        tokens = self._tokens(prompts)
        trainable = self._text_trainable()
        if trainable and (self.training or torch.is_grad_enabled()):
            return self._text_features(tokens)
        device_type = tokens.device.type if tokens.is_cuda else self.clip.positional_embedding.device.type
        autocast = torch.is_autocast_enabled(device_type)
        dtype = torch.get_autocast_dtype(device_type) if autocast else self.clip.positional_embedding.dtype
        key = self._text_cache.make_key(prompts, list(self._text_tensors()), dtype)
        cached = self._text_cache.get(key)
        if cached is not None:
            return cached
        with torch.no_grad():
            return self._text_cache.put(key, self._text_features(tokens))

    # ---- matching ---------------------------------------------------------------------------------------
    def logits(self, video_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """exp(logit_scale) · cos(video, text): [B,D] × [C,D] → [B,C]. The scale is not clamped (SPEC §1.2)."""
        video_features = F.normalize(video_features, dim=-1)
        text_features = F.normalize(text_features, dim=-1).to(video_features.dtype)
        return self.clip.logit_scale.exp() * video_features @ text_features.t()

    def forward(self, video: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
        return self.logits(self.encode_video(video), self.encode_text(class_names))

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
