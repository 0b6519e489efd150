"""The small bridge-and-prompt artefact: learned prompts plus the identity of the frozen base they were trained on.

Stage 2 trains only the prompts (184,320 numbers for ViT-B/16 b2n), so saving the whole backbone again would
waste ~600 MB per run. The artefact is one ``.safetensors`` file with tensors ``vision.{i}`` / ``text.{i}``
(the :class:`~vificlip.model.prompts.DeepPrompts` state dict) and string metadata:

- ``format`` = ``vificlip-prompts``, ``format_version``;
- ``prompts``: ``DeepPrompts.config()`` as JSON; ``arch``: the backbone shape as JSON;
- ``template``, ``replace_underscores``: the model's text settings (used only when n_text = 0);
- ``base``: JSON with ``checkpoint`` (as given), ``path`` (resolved), ``sha256`` (of the file) and
  ``weights_sha256`` (of the CLIP tensors in memory, independent of the file format);
- anything passed as ``metadata`` (e.g. the preset and the training class names).

Loading re-attaches the prompts to the base (found through the recorded path, or given), after checking that the
base is the one they were trained on. Prompts are class-agnostic, so the result works on any class list (§3.11).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..digest import file_sha256
from ..errors import VificlipError
from .backbone import ClipArch
from .formats import PROMPT_FORMAT
from .loading import load_model
from .prompts import DeepPrompts
from .vificlip import ViFiCLIP
from .zoo import resolve_checkpoint

PROMPT_FORMAT_VERSION = 1


class PromptFileError(VificlipError):
    """A prompt artefact that is unreadable, from a newer version, or applied to the wrong base."""


def weights_sha256(model: ViFiCLIP) -> str:
    """SHA-256 of the CLIP parameters (names, shapes, fp32 values): the base's identity whatever its file format."""
    digest = hashlib.sha256()
    for name, param in sorted(model.clip.named_parameters()):
        digest.update(f"{name}:{tuple(param.shape)}\0".encode())
        digest.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_prompts(
    model: ViFiCLIP,
    path: str | os.PathLike,
    base_checkpoint: str | os.PathLike | None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model``'s prompts and its base's identity to ``path`` (atomic); returns the path.

    Args:
        base_checkpoint: the checkpoint (path or built-in name) the prompt model was built on (the engine's
            ``--init-from``); ``None`` records only the weights' hash, so loading then needs the base given.
        metadata: extra strings to keep (preset, training class names, epoch…).
    """
    prompts = model.prompts
    if not isinstance(prompts, DeepPrompts):
        raise PromptFileError("this model carries no deep prompts; save a full checkpoint instead")
    base = {"checkpoint": None, "path": None, "sha256": None, "weights_sha256": weights_sha256(model)}
    if base_checkpoint is not None:
        resolved = resolve_checkpoint(base_checkpoint).resolve()
        base.update(checkpoint=str(base_checkpoint), path=str(resolved), sha256=file_sha256(resolved))
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(
        format=PROMPT_FORMAT,
        format_version=str(PROMPT_FORMAT_VERSION),
        prompts=json.dumps(prompts.config()),
        arch=model.arch.to_json(),
        template=model.template,
        replace_underscores=json.dumps(model.replace_underscores),
        base=json.dumps(base),
    )
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in prompts.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:  # readers never see a half-written artefact
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_prompt_metadata(path: str | os.PathLike) -> dict[str, str] | None:
    """The metadata of a prompt artefact, or ``None`` when ``path`` is some other file (for format detection)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, OSError):
        return None
    return meta if meta.get("format") == PROMPT_FORMAT else None


def is_prompt_file(path: str | os.PathLike) -> bool:
    return read_prompt_metadata(path) is not None


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], dict, dict]:
    meta = read_prompt_metadata(path)
    if meta is None:
        raise PromptFileError(
            f"{path}: not a vificlip prompt file (expected a .safetensors written by save_prompts)"
        )
    try:
        version = int(meta["format_version"])
        config, base = json.loads(meta["prompts"]), json.loads(meta["base"])
        ClipArch.from_dict(json.loads(meta["arch"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise PromptFileError(f"{path}: invalid prompt metadata ({exc!r})") from None
    if version > PROMPT_FORMAT_VERSION:
        raise PromptFileError(
            f"{path}: format version {version} is newer than this vificlip reads ({PROMPT_FORMAT_VERSION})"
        )
    with safe_open(path, framework="pt", device="cpu") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta, config, base


def _load_base(path: Path, base_info: dict, verify: bool) -> ViFiCLIP:
    """The recorded base checkpoint, checked against the recorded file hash before the (slow) load."""
    if not base_info.get("path"):
        raise PromptFileError(
            f"{path}: no base checkpoint recorded; pass the base model or checkpoint as base"
        )
    base_path = Path(base_info["path"])
    if not base_path.exists():
        raise PromptFileError(f"{path}: its base checkpoint {base_path} no longer exists; pass it as base")
    if verify and base_info.get("sha256") and file_sha256(base_path) != base_info["sha256"]:
        raise PromptFileError(f"{path}: base checkpoint {base_path} changed since the prompts were trained "
                              f"(sha256 {base_info['sha256'][:12]}… expected); pass verify=False to apply anyway")  # fmt: skip
    return load_model(base_path)


def load_prompts(
    path: str | os.PathLike,
    base: ViFiCLIP | str | os.PathLike | None = None,
    verify: bool = True,
) -> ViFiCLIP:
    """A prompt model: the artefact's prompts on its base (variant "prompt"), usable with any class list.

    Args:
        base: the base model (its CLIP is shared, not copied, and becomes frozen), a checkpoint path or built-in
            name, or ``None`` for the checkpoint recorded at save time.
        verify: refuse a base whose weights differ from the recorded ones (prompts are tied to their base).
    """
    path = Path(path)
    tensors, meta, config, base_info = _read(path)
    if base is None:
        model = _load_base(path, base_info, verify)  # checked by file hash there
    else:
        if not isinstance(base, ViFiCLIP):
            base = load_model(resolve_checkpoint(base))
        model = base
        expected = base_info.get("weights_sha256")
        if verify and expected and weights_sha256(model) != expected:
            shown = base_info.get("checkpoint") or "(not recorded)"
            raise PromptFileError(f"{path}: the base weights differ from those the prompts were trained on "
                                  f"(base checkpoint {shown}); pass verify=False to apply them anyway")  # fmt: skip
    arch = ClipArch.from_dict(json.loads(meta["arch"]))
    if arch != model.arch:
        raise PromptFileError(
            f"{path}: prompts were trained on architecture {arch}, the base is {model.arch}"
        )
    # A fresh wrapper without prompts around the base's CLIP, with the text settings the prompts were saved with.
    plain = ViFiCLIP(model.clip, model.arch, variant="prompt", template=meta.get("template", model.template),
                     replace_underscores=json.loads(meta.get("replace_underscores", "false")))  # fmt: skip
    try:
        prompt_model = plain.with_prompts(**config)
        prompt_model.prompts.load_state_dict(tensors)
    except (TypeError, RuntimeError) as exc:
        raise PromptFileError(f"{path}: prompts do not fit the base model ({exc})") from None
    return prompt_model
