"""open_clip's pretrained names, ``TAG/MODEL`` (``openai/ViT-B-16``): through open_clip's own registry and download.

Only plain ViT CLIP towers run in vificlip; :func:`tower_problem` says why another is refused, and
:func:`runnable_open_clip_names` lists the ones that work. The weights land in the Hugging Face cache (open_clip
downloads through huggingface_hub); a small folder beside them records open_clip's model config with the tag's
activation, so the loader builds the network open_clip would.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..atomic import atomic_dir
from .convert import CheckpointError, convert_open_clip_config
from .formats import FOLDER_LAYOUTS
from .hub import (
    WAY_OUT,
    HubError,
    cached_file,
    first_line,
    hf_constants,
    is_remote_name,
    offline_message,
    repo_files,
)


def open_clip_name(name: str) -> tuple[str, str] | None:
    """``openai/ViT-B-16`` → (tag, model) when open_clip's registry knows the model name, else None."""
    if name.count("/") != 1 or is_remote_name(name):
        return None
    import open_clip

    tag, model = name.split("/")
    return (tag, model) if model in open_clip.list_models() else None


def swapped_hint(name: str) -> str:
    """``ViT-B-16/openai`` → a hint to write ``openai/ViT-B-16`` (open_clip names are TAG/MODEL); else ''."""
    if name.count("/") != 1 or is_remote_name(name):
        return ""
    import open_clip

    model, tag = name.split("/")
    return (
        f"; open_clip names are TAG/MODEL: did you mean {tag}/{model}?"
        if model in open_clip.list_models()
        else ""
    )


def tower_problem(model: str) -> str | None:
    """Why vificlip cannot run open_clip model ``model`` (None: a plain ViT CLIP it can run)."""
    import open_clip

    cfg = open_clip.get_model_config(model)
    if cfg is None:
        return "no model config in open_clip"
    vision = cfg.get("vision_cfg") or {}
    if vision.get("timm_model_name") or (cfg.get("text_cfg") or {}).get("hf_model_name"):
        return "a timm or Hugging Face tower (vificlip runs open_clip's plain ViT and text transformer)"
    if not isinstance(vision.get("layers"), int) or not vision.get("patch_size"):
        return "a ResNet image tower (vificlip runs ViT towers)"
    try:
        convert_open_clip_config({"model_cfg": cfg})
    except CheckpointError as exc:
        return str(exc)
    return None


def runnable_open_clip_names() -> list[str]:
    """Every ``TAG/MODEL`` of open_clip's pretrained registry that vificlip can run."""
    import open_clip

    ok: dict[str, bool] = {}
    names = []
    for model, tag in open_clip.list_pretrained():
        if model not in ok:
            ok[model] = tower_problem(model) is None
        if ok[model]:
            names.append(f"{tag}/{model}")
    return names


def open_clip_folder() -> Path:
    """Where an open_clip pretrained name becomes a folder (its config from open_clip's registry + a link to the
    weights in the Hub cache): ``$HF_HOME/vificlip/open_clip/<MODEL>--<TAG>/``."""
    return Path(hf_constants().HF_HOME) / "vificlip" / "open_clip"


def fetch_open_clip(tag: str, model: str) -> Path:
    """Weights through open_clip's own registry and download (into the HF cache), as an open_clip hub folder.

    The folder beside the weights records open_clip's model config with the pretrained tag's activation
    (QuickGELU for OpenAI's weights), so the loader builds the same network open_clip would.
    """
    import open_clip

    name = f"{tag}/{model}"
    problem = tower_problem(model)
    if problem is not None:
        runnable = runnable_open_clip_names()
        raise HubError(f"{name}: open_clip model {model} has {problem}; runnable names ({len(runnable)}): "
                       f"{', '.join(runnable[:8])}, … (`vificlip models` lists all)")  # fmt: skip
    pretrained = open_clip.get_pretrained_cfg(model, tag)
    if not pretrained:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise HubError(f"{name}: open_clip has no pretrained tag {tag!r} for {model}; its tags: "
                       f"{', '.join(f'{t}/{model}' for t in tags) or 'none'}")  # fmt: skip
    folder = open_clip_folder() / f"{model}--{tag}"
    if folder.is_dir() and all(p.exists() for p in folder.iterdir()):
        return folder
    hub_repo = os.path.split(pretrained.get("hf_hub") or "")[0]
    if hub_repo and not _open_clip_cached(hub_repo) and repo_files(hub_repo, "main") is None:
        raise HubError(offline_message(name))  # fail fast: no network and nothing cached
    try:  # every entry of open_clip 3.3 has an hf_hub source, which it prefers: the download lands in the Hub cache
        weights = Path(open_clip.download_pretrained(pretrained))
    except Exception as exc:  # open_clip wraps huggingface_hub's errors in FileNotFoundError / RuntimeError
        cause = exc.__cause__ or exc
        text = first_line(exc)
        if hf_constants().is_offline_mode() or "offline" in text.lower() or "connect" in text.lower():
            raise HubError(offline_message(name)) from None
        raise HubError(f"{name}: open_clip could not download its weights ({type(cause).__name__}: "
                       f"{text}); {WAY_OUT.format(name=name)}") from None  # fmt: skip
    model_cfg = dict(open_clip.get_model_config(model))
    model_cfg["quick_gelu"] = bool(pretrained.get("quick_gelu", model_cfg.get("quick_gelu", False)))
    config_name, (_fmt, weight_names) = "open_clip_config.json", FOLDER_LAYOUTS["open_clip_config.json"]
    # the link's name only selects the folder layout; the loader judges the bytes themselves
    suffix = ".safetensors" if weights.suffix == ".safetensors" else ".bin"
    link_name = next(w for w in weight_names if w.endswith(suffix))
    with atomic_dir(folder) as tmp:
        (tmp / config_name).write_text(json.dumps({"model_cfg": model_cfg, "source": name}, indent=1))
        (tmp / link_name).symlink_to(weights.resolve())
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier build: replaced whole
    return folder


def _open_clip_cached(repo: str) -> bool:
    """Whether any open_clip weight file of ``repo`` is in the Hub cache (then no probe is needed)."""
    return any(cached_file(repo, f, "main") for f in FOLDER_LAYOUTS["open_clip_config.json"][1])


def cached_open_clip() -> list[tuple[str, int, str]]:
    """(name, 0, folder) of every open_clip name already fetched (its weights are counted in the Hub cache)."""
    if not open_clip_folder().is_dir():
        return []
    return [(f"{f.name.split('--', 1)[1]}/{f.name.split('--', 1)[0]}", 0, str(f))
            for f in sorted(open_clip_folder().iterdir()) if "--" in f.name and not f.name.startswith(".")]  # fmt: skip
