"""Read any supported CLIP / ViFi-CLIP checkpoint from a local file, and write our own format.

Formats (see docs/checkpoints.md): ``openai-jit`` (OpenAI's TorchScript ``ViT-B-16.pt``), ``openai`` (plain state
dict), ``open_clip`` (``.pt``/``.bin``/``.safetensors``, optionally ``state_dict``/``module.`` wrapped), ``hf``
(a ``CLIPModel`` folder: config.json + weights), ``authors`` (the released ViFi-CLIP ``.pth``, SPEC §3.6, combined
with a base CLIP for the token embedding) and ``vificlip`` (one ``.safetensors`` with JSON metadata).

Nothing here touches the network. Pickles are only read with ``torch.load(weights_only=True)``; the one exception
is the TorchScript archive, which ``torch.jit.load`` must execute: load those only from trusted sources.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import zipfile
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..atomic import atomic_path
from ..errors import VificlipError
from .backbone import ArchitectureError, ClipArch, arch_by_name, build_clip, infer_arch, load_clip_weights
from .convert import (
    OPENAI_EXTRA_KEYS,
    CheckpointError,
    StateDict,
    convert_authors,
    convert_authors_config,
    convert_hf,
    convert_hf_config,
    convert_open_clip,
    convert_open_clip_config,
    convert_openai,
    infer_prompt_config,
    is_authors_state_dict,
    is_hf_state_dict,
    plain,
    strip_prefix,
)
from .prompts import DeepPrompts, NoPrompts
from .readers import (
    fail,
    is_torchscript,
    read_json,
    read_safetensors,
    read_torchscript,
    safetensors_header,
    torch_load,
)
from .variants import DEFAULT_VARIANT
from .vificlip import ViFiCLIP

logger = logging.getLogger(__name__)

FORMATS = ("openai-jit", "openai", "open_clip", "hf", "authors", "vificlip")
FORMAT_VERSION = 1
# Hub folders: config file → (format, weight files in order of preference).
FOLDER_LAYOUTS = {
    "config.json": ("hf", ("model.safetensors", "pytorch_model.bin")),
    "open_clip_config.json": ("open_clip", ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                                            "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")),
}  # fmt: skip


class CheckpointMismatchError(CheckpointError, ArchitectureError):
    """The weights do not fit the requested (or recorded) architecture; names the offending keys."""


@dataclasses.dataclass
class CheckpointInfo:
    """What a checkpoint says besides its CLIP weights. ``None`` fields: the file does not say."""

    path: Path
    format: str
    arch: ClipArch | None = None
    vision_heads: int | None = None
    text_heads: int | None = None
    quick_gelu: bool | None = None
    variant: str | None = None
    template: str | None = None
    replace_underscores: bool | None = None
    prompt_config: dict | None = None
    prompt_state: StateDict = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


# ---- reading ------------------------------------------------------------------------------------------------
def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _format_of_keys(path: Path, keys: list[str]) -> str:
    """'hf', 'openai' or 'open_clip' from (unwrapped) state-dict keys."""
    if is_hf_state_dict(keys):
        return "hf"
    if "visual.conv1.weight" not in keys:
        raise fail(path, f"unknown weights (keys such as {keys[:5]}); expected CLIP weights with "
                   "'visual.conv1.weight' (OpenAI / open_clip) or Hugging Face 'vision_model.*' names")  # fmt: skip
    return "openai" if any(k in keys for k in OPENAI_EXTRA_KEYS[:3]) else "open_clip"


def _classify(path: Path, obj: Any) -> tuple[str, Any]:
    """(format, payload) for a loaded file: the authors' dict, or a CLIP state dict (unwrapped)."""
    if (
        isinstance(obj, Mapping)
        and isinstance(obj.get("model"), Mapping)
        and is_authors_state_dict(obj["model"])
    ):
        return "authors", obj
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not _tensor_dict(state):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise fail(path, f"unknown checkpoint layout (top level: {keys}); expected a CLIP state dict, an "
                   "open_clip 'state_dict' wrapper or the authors' 'model' dict")  # fmt: skip
    state = strip_prefix(state)
    return _format_of_keys(path, list(state)), state


def _load_file(path: Path) -> tuple[str, Any, dict]:
    """(format, payload, metadata) of one file, judged by its own content."""
    if path.stat().st_size == 0:
        raise fail(path, "empty file; expected a CLIP or ViFi-CLIP checkpoint")
    if zipfile.is_zipfile(path) and is_torchscript(path):
        return "openai-jit", read_torchscript(path), {}
    if safetensors_header(path) is None:
        return (*_classify(path, torch_load(path)), {})
    tensors, meta = read_safetensors(path)
    if meta.get("format") == "vificlip":
        return "vificlip", tensors, meta
    if meta.get("format") == "vificlip-prompts":
        raise fail(path, "is a prompt artefact (learned prompts only); load it with "
                   "vificlip.model.prompt_io.load_prompts, not as a model checkpoint")  # fmt: skip
    return (*_classify(path, tensors), {})


def _folder_layout(path: Path) -> tuple[str, Path, Path] | None:
    """(format, weights, config) for a hub folder, or for a hub weight file given with its folder's config."""
    folder = path if path.is_dir() else path.parent
    for config_name, (fmt, weight_names) in FOLDER_LAYOUTS.items():
        if not (folder / config_name).is_file():
            continue
        if path.is_file():
            if path.name in weight_names:
                return fmt, path, folder / config_name
            continue
        weights = next((folder / n for n in weight_names if (folder / n).is_file()), None)
        if weights is None:
            raise fail(folder, f"no weights; expected one of {list(weight_names)} beside {config_name}")
        return fmt, weights, folder / config_name
    if path.is_dir():
        raise fail(path, f"folder without {' or '.join(FOLDER_LAYOUTS)}; expected a Hugging Face CLIPModel or "
                   "open_clip hub folder")  # fmt: skip
    return None


def _read(path: Path) -> tuple[str, Any, dict]:
    """(format, payload, metadata or config) without converting anything."""
    if not path.exists():
        raise fail(path, "no such file or folder; expected a CLIP or ViFi-CLIP checkpoint")
    layout = _folder_layout(path)
    if layout is not None:
        fmt, weights, config_path = layout
        found, state, meta = _load_file(weights)
        if found == "vificlip":  # self-describing; the config beside it is someone else's
            return found, state, meta
        if found != fmt and {found, fmt} != {"openai", "open_clip"}:
            raise fail(weights, f"holds {found} weights, but {config_path.name} beside it says {fmt}")
        return fmt, state, read_json(config_path)
    fmt, payload, meta = _load_file(path)
    if fmt == "hf":  # heads and activation live in config.json
        raise fail(path, "Hugging Face CLIP weights without config.json beside them; pass the model folder")
    return fmt, payload, meta


def _vificlip_info(
    path: Path, tensors: StateDict, meta: Mapping[str, str]
) -> tuple[StateDict, CheckpointInfo]:
    try:
        written = int(meta.get("format_version", "0"))
        arch = ClipArch.from_dict(json.loads(meta["arch"]))
        info = CheckpointInfo(
            path, "vificlip", arch=arch, quick_gelu=arch.quick_gelu, variant=meta.get("variant"),
            template=meta.get("template"), replace_underscores=json.loads(meta.get("replace_underscores", "false")),
            prompt_config=json.loads(meta.get("prompts") or "{}") or None,
            extra={"vificlip_version": meta.get("vificlip_version")},
        )  # fmt: skip
    except (KeyError, ValueError, TypeError) as exc:
        raise fail(
            path, f"invalid vificlip metadata ({exc!r}); expected format_version, arch, variant, template"
        ) from None
    if written > FORMAT_VERSION:
        raise fail(
            path, f"written in format version {written} by a newer vificlip; this one reads {FORMAT_VERSION}"
        )
    clip = {k[len("clip.") :]: v for k, v in tensors.items() if k.startswith("clip.")}
    info.prompt_state = {k: v for k, v in tensors.items() if k.startswith("prompts.")}
    unknown = sorted(set(tensors) - {f"clip.{k}" for k in clip} - set(info.prompt_state))
    if unknown:
        raise fail(path, f"unexpected tensors {unknown[:8]}; expected only clip.* and prompts.*")
    return clip, info


def _authors_info(
    path: Path, obj: Mapping, base: str | os.PathLike | None
) -> tuple[StateDict, CheckpointInfo]:
    if base is None:
        raise fail(path, "an authors' ViFi-CLIP checkpoint has no token embedding; name the CLIP it was trained "
                   "from as base (--base ViT-B-16.pt or any supported CLIP checkpoint)")  # fmt: skip
    try:
        clip, prompts = convert_authors(obj["model"])
        prompt_config = infer_prompt_config(prompts)
    except CheckpointError as exc:
        raise fail(path, str(exc)) from None
    base_state, base_info = load_clip_state_dict(base)
    if "token_embedding.weight" not in base_state:
        raise fail(Path(base), "base checkpoint has no token_embedding.weight")
    clip["token_embedding.weight"] = base_state["token_embedding.weight"]
    config = plain(obj.get("config")) or {}
    info = CheckpointInfo(
        path, "authors", quick_gelu=base_info.quick_gelu, prompt_config=prompt_config, prompt_state=prompts,
        extra={"epoch": obj.get("epoch"), "max_accuracy": obj.get("max_accuracy"), "config": config},
        **convert_authors_config(config, has_prompts=bool(prompts)),
    )  # fmt: skip
    return clip, info


def load_clip_state_dict(
    path: str | os.PathLike, base: str | os.PathLike | None = None
) -> tuple[StateDict, CheckpointInfo]:
    """Open_clip-named CLIP weights (no prompts, no wrapper) and what the file says about them.

    ``base`` supplies the token embedding for the authors' checkpoints, which do not store it.
    """
    path = Path(path)
    fmt, payload, meta = _read(path)
    if fmt == "vificlip":
        return _vificlip_info(path, payload, meta)
    if fmt == "authors":
        return _authors_info(path, payload, base)
    try:
        if fmt == "hf":
            return convert_hf(payload), CheckpointInfo(path, "hf", **convert_hf_config(meta))
        if fmt == "open_clip":
            hints = convert_open_clip_config(meta) if meta else {}
            return convert_open_clip(payload), CheckpointInfo(path, fmt, **hints)
    except CheckpointError as exc:
        raise fail(path, str(exc)) from None
    return convert_openai(payload), CheckpointInfo(path, fmt, quick_gelu=True)  # OpenAI CLIP used QuickGELU


def detect_format(path: str | os.PathLike) -> str:
    """One of :data:`FORMATS`, from the file's layout and names. Runs no TorchScript; reads only the
    header of a safetensors file."""
    path = Path(path)
    if path.is_file() and path.stat().st_size and _folder_layout(path) is None:
        if zipfile.is_zipfile(path) and is_torchscript(path):
            return "openai-jit"
        header = safetensors_header(path)
        if header is not None:
            kind = (header.get("__metadata__") or {}).get("format")
            if kind == "vificlip":
                return "vificlip"
            if (
                kind is None
                and (fmt := _format_of_keys(path, [k for k in header if k != "__metadata__"])) != "hf"
            ):
                return fmt
    return _read(path)[0]


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
