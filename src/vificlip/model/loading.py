"""Any supported CLIP / ViFi-CLIP checkpoint as a :class:`ViFiCLIP`, and our own format written back.

Which files are supported, and how each is read and renamed, is the format table in :mod:`.formats` (see
docs/checkpoints.md); this module turns its output (open_clip-named weights + :class:`CheckpointInfo`) into a
model: the architecture (explicit, recorded or inferred from shapes), the prompts, the variant and template.

Nothing here touches the network. Pickles are only read with ``torch.load(weights_only=True)``; the one exception
is the TorchScript archive, which ``torch.jit.load`` must execute: load those only from trusted sources.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..atomic import atomic_path
from ..errors import VificlipError
from .backbone import ArchitectureError, ClipArch, arch_by_name, build_clip, infer_arch, load_clip_weights
from .convert import CheckpointError, StateDict
from .formats import FORMAT_VERSION, CheckpointInfo, load_clip_state_dict
from .prompts import DeepPrompts, NoPrompts
from .readers import fail
from .variants import DEFAULT_VARIANT
from .vificlip import ViFiCLIP

logger = logging.getLogger(__name__)


class CheckpointMismatchError(CheckpointError, ArchitectureError):
    """The weights do not fit the requested (or recorded) architecture; names the offending keys."""


# ---- building a model -----------------------------------------------------------------------------------------
def _resolve_arch(
    state: StateDict, info: CheckpointInfo, arch: ClipArch | str | None, quick_gelu: bool | None
) -> ClipArch:
    """Explicit arch > the file's recorded arch > inferred from weight shapes (heads from the file or width // 64)."""
    if isinstance(arch, str):
        arch = arch_by_name(arch)
    if arch is None and info.arch is not None:
        arch = info.arch
    elif arch is None:
        if info.quick_gelu is None and quick_gelu is None:
            logger.info("%s: activation not recorded; assuming QuickGELU (OpenAI). Pass quick_gelu=False for "
                        "GELU models (most LAION open_clip weights).", info.path)  # fmt: skip
        try:
            arch = infer_arch(
                state, info.vision_heads, info.text_heads, quick_gelu=info.quick_gelu is not False
            )
        except ArchitectureError as exc:
            raise fail(info.path, str(exc)) from None
    return arch if quick_gelu is None else dataclasses.replace(arch, quick_gelu=quick_gelu)


def _build_prompts(arch: ClipArch, info: CheckpointInfo) -> nn.Module:
    if not info.prompt_config:
        if info.prompt_state:
            raise fail(info.path, "prompt tensors without a prompt configuration")
        return NoPrompts()
    try:
        prompts = DeepPrompts(arch, **info.prompt_config)
    except (VificlipError, TypeError) as exc:
        raise fail(info.path, f"unusable prompt configuration {info.prompt_config}: {exc}") from None
    try:
        prompts.load_state_dict({k[len("prompts.") :]: v for k, v in info.prompt_state.items()})
    except RuntimeError as exc:
        raise CheckpointMismatchError(f"{info.path}: prompt weights do not match {info.prompt_config}: "
                                      f"{' '.join(str(exc).split())}") from None  # fmt: skip
    return prompts


def build_model(
    state: StateDict,
    info: CheckpointInfo,
    variant: str | None = None,
    template: str | None = None,
    arch: ClipArch | str | None = None,
    quick_gelu: bool | None = None,
) -> ViFiCLIP:
    """A :class:`ViFiCLIP` (eval mode, CPU) from :func:`load_clip_state_dict`'s output; arguments as in
    :func:`load_model`."""
    arch = _resolve_arch(state, info, arch, quick_gelu)
    try:
        with torch.device("meta"):  # check the shapes first on a skeleton: free, where a random init is not
            skeleton = build_clip(arch)
        load_clip_weights(skeleton, {k: v.to("meta") for k, v in state.items()}, str(info.path))
        clip = build_clip(arch)
        load_clip_weights(clip, state, str(info.path))
    except ArchitectureError as exc:
        raise CheckpointMismatchError(str(exc)) from None
    model = ViFiCLIP(clip, arch, variant=info.variant or DEFAULT_VARIANT, template=info.template,
                     replace_underscores=bool(info.replace_underscores), prompts=_build_prompts(arch, info))  # fmt: skip
    model.set_variant(variant or model.variant, template)  # the one template rule (variants.template_for)
    logger.debug("loaded %s (%s) as %s", info.path, info.format, arch)
    return model.eval()


def load_model(
    path: str | os.PathLike,
    base: str | os.PathLike | None = None,
    variant: str | None = None,
    template: str | None = None,
    arch: ClipArch | str | None = None,
    quick_gelu: bool | None = None,
    device: str | torch.device = "cpu",
) -> ViFiCLIP:
    """A :class:`ViFiCLIP` in eval mode from any supported checkpoint (format detected from the file).

    Args:
        base: a CLIP checkpoint supplying the token embedding of an authors' ``.pth`` (required for those).
        variant, template: override what the file records (default ``vifi`` and the variant's template).
        arch: a :class:`ClipArch` or name (``ViT-B/16``); by default recorded in or inferred from the weights.
        quick_gelu: override the activation where the file does not record it (open_clip checkpoints).
    """
    state, info = load_clip_state_dict(path, base=base)
    return build_model(state, info, variant, template, arch, quick_gelu).to(device)


def _package_version() -> str:
    try:
        return version("vificlip")
    except PackageNotFoundError:
        return "unknown"


def save_model(model: ViFiCLIP, path: str | os.PathLike) -> Path:
    """Write our format: one safetensors file with the full state dict and JSON metadata, atomically."""
    path = Path(path)
    if path.is_dir():
        raise fail(path, "is a folder; expected a file name such as model.safetensors")
    prompt_config = {} if isinstance(model.prompts, NoPrompts) else model.prompts.config()
    metadata = {
        "format": "vificlip",
        "format_version": str(FORMAT_VERSION),
        "arch": model.arch.to_json(),
        "variant": model.variant,
        "template": model.template,
        "replace_underscores": json.dumps(model.replace_underscores),
        "prompts": json.dumps(prompt_config, sort_keys=True),
        "vificlip_version": _package_version(),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:  # readers never see a half-written file
        save_file(tensors, str(tmp), metadata=metadata)
    return path
