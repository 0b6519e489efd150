"""Checkpoint formats as one table: each row says how to recognise a file, how to rename its weights to open_clip's
names, and what it records besides them (see docs/checkpoints.md).

Adding a format is adding a :class:`Format` row to :data:`TABLE` (and a writer in tests/model/ckpt_writers.py).
:func:`detect_format`, :func:`load_clip_state_dict` (hence ``load_model`` and ``vificlip convert``) and the prompt
artefact's loader all go through the table. Recognising a file reads as little as it can: the zip listing of a
TorchScript archive (never its code), the JSON header of a safetensors file, and only for pickles the pickle itself
(``weights_only=True``, see :mod:`.readers`). Every failure is one :class:`CheckpointError` line naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from .backbone import ClipArch
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
from .readers import (
    fail,
    is_torchscript,
    read_json,
    read_safetensors,
    read_torchscript,
    safetensors_header,
    torch_load,
)

FORMAT_VERSION = 1  # of our own `vificlip` files
PROMPT_FORMAT = "vificlip-prompts"  # the bridge-and-prompt artefact (model/prompt_io.py)
# Hub folders: config file → (format, weight files in order of preference).
FOLDER_LAYOUTS = {
    "config.json": ("hf", ("model.safetensors", "pytorch_model.bin")),
    "open_clip_config.json": ("open_clip", ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                                            "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")),
}  # fmt: skip


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


class Source:
    """One checkpoint on disk (a file, or a hub folder's weights + config), read lazily and at most once."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise fail(self.path, "no such file or folder; expected a CLIP or ViFi-CLIP checkpoint")
        self.layout, self.file, self.config_path = _folder_layout(self.path)
        if self.file.stat().st_size == 0:
            raise fail(self.file, "empty file; expected a CLIP or ViFi-CLIP checkpoint")

    @cached_property
    def container(self) -> str:
        """'torchscript', 'safetensors' or 'pickle', from the first bytes or the zip listing."""
        if zipfile.is_zipfile(self.file) and is_torchscript(self.file):
            return "torchscript"
        return "safetensors" if self.header is not None else "pickle"

    @cached_property
    def header(self) -> dict | None:
        return safetensors_header(self.file)

    @cached_property
    def meta(self) -> dict[str, str]:
        return dict((self.header or {}).get("__metadata__") or {})

    @cached_property
    def payload(self) -> Any:
        """The whole file: a tensor dict (safetensors, TorchScript) or whatever the pickle holds."""
        if self.container == "torchscript":
            return read_torchscript(self.file)
        if self.container == "safetensors":
            return read_safetensors(self.file)[0]
        return torch_load(self.file)

    @cached_property
    def keys(self) -> list[str]:
        """Weight names without a wrapper (``state_dict``, DDP's ``module.``); a safetensors header suffices."""
        if self.container == "safetensors":
            return list(strip_prefix(dict.fromkeys(k for k in self.header if k != "__metadata__")))
        return list(self.state)

    @cached_property
    def state(self) -> StateDict:
        obj = self.payload
        state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
        if not (
            isinstance(state, Mapping) and state and all(isinstance(v, torch.Tensor) for v in state.values())
        ):
            top = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
            raise fail(self.file, f"unknown checkpoint layout (top level: {top}); expected a CLIP state dict, an "
                       "open_clip 'state_dict' wrapper or the authors' 'model' dict")  # fmt: skip
        return strip_prefix(state)

    @cached_property
    def config(self) -> dict:
        """The hub folder's config file ({} for a lone file)."""
        return read_json(self.config_path) if self.config_path is not None else {}


def _folder_layout(path: Path) -> tuple[str | None, Path, Path | None]:
    """(format the folder's config names, weights file, config file); (None, path, None) for a lone file."""
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
    return None, path, None


# ---- the rows' functions ------------------------------------------------------------------------------------------
def _vificlip_state(source: Source) -> StateDict:
    tensors = source.payload
    unknown = sorted(k for k in tensors if not k.startswith(("clip.", "prompts.")))
    if unknown:
        raise CheckpointError(f"unexpected tensors {unknown[:8]}; expected only clip.* and prompts.*")
    return {k.removeprefix("clip."): v for k, v in tensors.items()}


def _vificlip_config(source: Source, state: StateDict) -> dict:
    meta = source.meta
    try:
        written = int(meta.get("format_version", "0"))
        arch = ClipArch.from_dict(json.loads(meta["arch"]))
        fields = dict(arch=arch, quick_gelu=arch.quick_gelu, variant=meta.get("variant"), template=meta.get("template"),
                      replace_underscores=json.loads(meta.get("replace_underscores", "false")),
                      prompt_config=json.loads(meta.get("prompts") or "{}") or None,
                      extra={"vificlip_version": meta.get("vificlip_version")})  # fmt: skip
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"invalid vificlip metadata ({exc!r}); expected format_version, arch, variant, template"
        ) from None
    if written > FORMAT_VERSION:
        raise CheckpointError(
            f"written in format version {written} by a newer vificlip; this one reads {FORMAT_VERSION}"
        )
    return fields


def _prompt_artefact(source: Source) -> StateDict:
    raise CheckpointError("is a prompt artefact (learned prompts only); load it with "
                          "vificlip.model.prompt_io.load_prompts, not as a model checkpoint")  # fmt: skip


def _authors_state(source: Source) -> StateDict:
    clip, prompts = convert_authors(source.payload["model"])
    return {**clip, **prompts}


def _authors_config(source: Source, state: StateDict) -> dict:
    config = plain(source.payload.get("config")) or {}
    has_prompts = any(k.startswith("prompts.") for k in state)
    return {**convert_authors_config(config, has_prompts=has_prompts),
            "extra": {"epoch": source.payload.get("epoch"), "max_accuracy": source.payload.get("max_accuracy"),
                      "config": config}}  # fmt: skip


def _hf_config(source: Source, state: StateDict) -> dict:
    if source.config_path is None:  # heads and activation live in config.json
        raise CheckpointError(
            "Hugging Face CLIP weights without config.json beside them; pass the model folder"
        )
    return convert_hf_config(source.config)


def _is_authors(source: Source) -> bool:
    obj = source.payload if source.container == "pickle" else None
    return (
        isinstance(obj, Mapping)
        and isinstance(obj.get("model"), Mapping)
        and is_authors_state_dict(obj["model"])
    )


def _is_openai(source: Source) -> bool:
    return "visual.conv1.weight" in source.keys and any(k in source.keys for k in OPENAI_EXTRA_KEYS[:3])


@dataclasses.dataclass(frozen=True)
class Format:
    """One checkpoint format. ``sniff`` decides from the cheapest evidence; ``convert`` returns open_clip-named
    weights (``prompts.*`` for deep prompts); ``config`` returns :class:`CheckpointInfo` fields the file records."""

    name: str
    looks_like: str  # for docs and errors
    sniff: Callable[[Source], bool]
    convert: Callable[[Source], StateDict]
    config: Callable[[Source, StateDict], dict] = lambda source, state: {}
    needs_base: bool = False  # no token embedding: taken from a base CLIP checkpoint


# First match wins: self-describing files first, then by container, then by weight names.
TABLE: tuple[Format, ...] = (
    Format(PROMPT_FORMAT, "safetensors, metadata format=vificlip-prompts",
           lambda s: s.container == "safetensors" and s.meta.get("format") == PROMPT_FORMAT, _prompt_artefact),
    Format("vificlip", "safetensors, metadata format=vificlip",
           lambda s: s.container == "safetensors" and s.meta.get("format") == "vificlip", _vificlip_state,
           _vificlip_config),
    Format("openai-jit", "TorchScript zip archive (OpenAI's ViT-B-16.pt)", lambda s: s.container == "torchscript",
           lambda s: convert_openai(s.payload), lambda s, _: {"quick_gelu": True}),
    Format("authors", "pickle with a 'model' dict of image_encoder.* / text_encoder.* keys", _is_authors,
           _authors_state, _authors_config, needs_base=True),
    Format("hf", "Hugging Face CLIPModel weights (text_model.* / vision_model.*) + config.json",
           lambda s: is_hf_state_dict(s.keys), lambda s: convert_hf(s.state), _hf_config),
    Format("openai", "CLIP state dict with OpenAI's integer entries", _is_openai,
           lambda s: convert_openai(s.state), lambda s, _: {"quick_gelu": True}),  # OpenAI CLIP used QuickGELU
    Format("open_clip", "CLIP state dict (visual.conv1.weight …), optionally wrapped",
           lambda s: "visual.conv1.weight" in s.keys, lambda s: convert_open_clip(s.state),
           lambda s, _: convert_open_clip_config(s.config) if s.config else {}),
)  # fmt: skip
FORMATS = tuple(f.name for f in TABLE if f.name != PROMPT_FORMAT)
BY_NAME = {f.name: f for f in TABLE}


def _named(path: Path, exc: CheckpointError) -> CheckpointError:
    """The one place a format's error gets the file name (readers already name it)."""
    return exc if str(exc).startswith(str(path)) else fail(path, str(exc))


def _match(source: Source) -> Format:
    row = next((f for f in TABLE if f.sniff(source)), None)
    if row is None:
        raise fail(source.file, f"unknown weights (keys such as {source.keys[:5]}); expected CLIP weights with "
                   "'visual.conv1.weight' (OpenAI / open_clip) or Hugging Face 'vision_model.*' names")  # fmt: skip
    if source.layout is None or row.name in (source.layout, "vificlip"):  # ours are self-describing
        return row
    if {row.name, source.layout} == {"openai", "open_clip"}:
        return BY_NAME[source.layout]
    raise fail(
        source.file, f"holds {row.name} weights, but {source.config_path.name} beside it says {source.layout}"
    )


def detect_format(path: str | os.PathLike) -> str:
    """The :data:`TABLE` row a checkpoint matches. Runs no TorchScript; reads only the header of a safetensors file."""
    return _match(Source(path)).name


def load_clip_state_dict(
    path: str | os.PathLike, base: str | os.PathLike | None = None
) -> tuple[StateDict, CheckpointInfo]:
    """Open_clip-named CLIP weights (no prompts, no wrapper) and what the file says about them.

    ``base`` supplies the token embedding for formats that lack it (the authors' checkpoints).
    """
    source = Source(path)
    row = _match(source)
    try:
        state = row.convert(source)
        fields = row.config(source, state)
        info = CheckpointInfo(source.path, row.name, **fields)
        info.prompt_state = {k: state.pop(k) for k in [k for k in state if k.startswith("prompts.")]}
        if info.prompt_state and "prompt_config" not in fields:  # read off the shapes
            info.prompt_config = infer_prompt_config(info.prompt_state)
    except CheckpointError as exc:
        raise _named(source.file, exc) from None
    if row.needs_base:
        _add_token_embedding(state, info, base)
    return state, info


def _add_token_embedding(state: StateDict, info: CheckpointInfo, base: str | os.PathLike | None) -> None:
    if base is None:
        raise fail(info.path, "an authors' ViFi-CLIP checkpoint has no token embedding; name the CLIP it was trained "
                   "from as base (--base ViT-B-16.pt or any supported CLIP checkpoint)")  # fmt: skip
    base_state, base_info = load_clip_state_dict(base)
    if "token_embedding.weight" not in base_state:
        raise fail(Path(base), "base checkpoint has no token_embedding.weight")
    state["token_embedding.weight"] = base_state["token_embedding.weight"]
    info.quick_gelu = base_info.quick_gelu
