"""Pure state-dict converters: each source's key names → open_clip ``CLIP`` names, as declarative key maps.

Every function here takes and returns plain ``{name: tensor}`` dicts and touches no files (reading them is
:mod:`vificlip.model.loading`'s job), so each map can be tested on its own. Keys a map does not know are reported
by name, never dropped silently. Sources:

- OpenAI (TorchScript archive or plain state dict): open_clip kept OpenAI's names, so only the three integer
  entries the JIT archives carry (``input_resolution``, ``context_length``, ``vocab_size``) go.
- open_clip: ``module.`` (DDP) prefixes go.
- Hugging Face ``CLIPModel``: renamed block by block; q/k/v projections fused into ``in_proj``; the two
  projections transposed (HF stores ``nn.Linear`` weights, open_clip multiplies ``x @ proj``).
- The authors' ViFi-CLIP ``.pth`` (SPEC §3.6): towers renamed, class-dependent text buffers dropped, prompt
  parameters moved to our ``prompts.vision.{i}`` / ``prompts.text.{i}`` names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import VificlipError

StateDict = dict[str, torch.Tensor]


class CheckpointError(VificlipError, ValueError):
    """A checkpoint file that cannot be read or converted; the message names the file and what was expected."""


# Integer entries in OpenAI's archives; open_clip's non-persistent causal mask, if a file carries it.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")

# ---- Hugging Face CLIPModel -------------------------------------------------------------------------------------
# Top-level renames, first match wins. A trailing "." keeps the rest of the key (e.g. ".weight").
HF_RENAMES: tuple[tuple[str, str], ...] = (
    (r"text_model\.embeddings\.token_embedding\.", "token_embedding."),
    (r"text_model\.embeddings\.position_embedding\.weight", "positional_embedding"),
    (r"text_model\.encoder\.layers\.(\d+)\.", r"transformer.resblocks.\1."),
    (r"text_model\.final_layer_norm\.", "ln_final."),
    (r"text_projection\.weight", "text_projection"),
    (r"vision_model\.embeddings\.class_embedding", "visual.class_embedding"),
    (r"vision_model\.embeddings\.patch_embedding\.weight", "visual.conv1.weight"),
    (r"vision_model\.embeddings\.position_embedding\.weight", "visual.positional_embedding"),
    (r"vision_model\.pre_layrnorm\.", "visual.ln_pre."),  # sic: HF's spelling
    (r"vision_model\.encoder\.layers\.(\d+)\.", r"visual.transformer.resblocks.\1."),
    (r"vision_model\.post_layernorm\.", "visual.ln_post."),
    (r"visual_projection\.weight", "visual.proj"),
    (r"logit_scale", "logit_scale"),
)
# Inside a residual block (applied after HF_RENAMES).
HF_BLOCK_RENAMES: tuple[tuple[str, str], ...] = (
    ("self_attn.out_proj.", "attn.out_proj."),
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
)
HF_QKV = re.compile(r"(?P<block>.*\.resblocks\.\d+\.)self_attn\.(?P<part>[qkv])_proj\.(?P<kind>weight|bias)$")
HF_TRANSPOSED = ("text_projection", "visual.proj")
HF_IGNORED = re.compile(r".*position_ids$")  # index buffers older transformers versions saved


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, replacement in rules:
        match = re.match(pattern, key)
        if match and (pattern.endswith(".") or match.end() == len(key)):
            return match.expand(replacement) + key[match.end() :]
    return None


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> StateDict:
    """Drop a wrapper prefix (DDP's ``module.``) when every key has it; otherwise return the keys unchanged."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def convert_openai(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """OpenAI CLIP (JIT archive's ``state_dict()`` or a plain state dict) → open_clip names."""
    return {k: v for k, v in strip_prefix(state_dict).items() if k not in OPENAI_EXTRA_KEYS}


def convert_open_clip(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """open_clip checkpoint → open_clip names: only wrappers go (same names as OpenAI's)."""
    return convert_openai(state_dict)


def is_hf_state_dict(keys: object) -> bool:
    return any(str(k).startswith(("text_model.", "vision_model.")) for k in keys)


def convert_hf(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Hugging Face ``CLIPModel`` weights → open_clip names (heads and activation come from config.json)."""
    out: StateDict = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in strip_prefix(state_dict).items():
        if HF_IGNORED.match(key):
            continue
        new = _rename(key, HF_RENAMES)
        if new is None:
            unknown.append(key)
            continue
        match = HF_QKV.match(new)
        if match:
            qkv.setdefault((match["block"], match["kind"]), {})[match["part"]] = value
            continue
        for old, replacement in HF_BLOCK_RENAMES:
            new = new.replace(old, replacement)
        out[new] = value.t().contiguous() if new in HF_TRANSPOSED else value
    if unknown:
        raise CheckpointError(f"unknown Hugging Face CLIP keys: {_shown(unknown)}")
    for (block, kind), parts in sorted(qkv.items()):
        if sorted(parts) != ["k", "q", "v"]:
            raise CheckpointError(
                f"{block}self_attn: has {sorted(parts)} projections {kind}s, expected q, k and v"
            )
        out[f"{block}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


# transformers' CLIP defaults (save_pretrained leaves default values out of config.json) and activations.
HF_DEFAULT_HEADS = {"text_config": 8, "vision_config": 12}
HF_ACTIVATIONS = {"quick_gelu": True, "gelu": False}


def convert_hf_config(config: Mapping) -> dict:
    """A ``CLIPModel`` config.json → the shape facts the weights cannot tell: heads and QuickGELU vs GELU."""
    heads, acts = {}, set()
    for tower, default in HF_DEFAULT_HEADS.items():
        sub = config.get(tower) or {}
        heads[tower] = int(sub.get("num_attention_heads", default))
        acts.add(sub.get("hidden_act", "quick_gelu"))
    if len(acts) > 1 or not acts <= set(HF_ACTIVATIONS):
        raise CheckpointError(
            f"hidden_act {sorted(acts)}; expected one of {sorted(HF_ACTIVATIONS)} for both towers"
        )
    return {"vision_heads": heads["vision_config"], "text_heads": heads["text_config"],
            "quick_gelu": HF_ACTIVATIONS[acts.pop()]}  # fmt: skip


# ---- open_clip's own config (open_clip_config.json beside hub weights) ------------------------------------------
# Options that keep a plain ViT CLIP, and the defaults of those that would not (anything else is refused).
OPEN_CLIP_SHAPE_KEYS = {"image_size", "layers", "width", "head_width", "patch_size", "heads", "context_length",
                        "vocab_size"}  # fmt: skip
OPEN_CLIP_DEFAULTS = {"pool_type": ("argmax", "tok"), "proj_type": ("linear",), "pad_id": (0,), "eos_id": (2,),
                      "mlp_ratio": (4.0,)}  # fmt: skip


def convert_open_clip_config(config: Mapping) -> dict:
    """``open_clip_config.json`` → heads and activation, refusing options ViFi-CLIP's plain ViT CLIP lacks."""
    model_cfg = config.get("model_cfg", config)
    vision, text = model_cfg.get("vision_cfg") or {}, model_cfg.get("text_cfg") or {}
    unsupported = [
        f"{tower}.{key}={value!r}"
        for tower, cfg in (("vision_cfg", vision), ("text_cfg", text))
        for key, value in cfg.items()
        if value and key not in OPEN_CLIP_SHAPE_KEYS and value not in OPEN_CLIP_DEFAULTS.get(key, ())
    ]
    unsupported += [f"{k}={v!r}" for k, v in model_cfg.items() if v and k not in ("embed_dim", "quick_gelu",
                    "vision_cfg", "text_cfg")]  # fmt: skip
    if unsupported:
        raise CheckpointError(f"open_clip options {unsupported} are not supported; expected a plain ViT CLIP")
    return {
        "vision_heads": int(vision.get("width", 768)) // int(vision.get("head_width", 64)),
        "text_heads": int(text.get("heads", 8)),  # open_clip's CLIPTextCfg default
        "quick_gelu": bool(model_cfg.get("quick_gelu", False)),  # open_clip's CLIP default: GELU
    }


# ---- the authors' ViFi-CLIP checkpoints (SPEC §3.6) -------------------------------------------------------------
AUTHORS_RENAMES: tuple[tuple[str, str], ...] = (
    (r"image_encoder\.", "visual."),
    (r"text_encoder\.", ""),  # transformer.*, positional_embedding, ln_final.*, text_projection
    (r"logit_scale", "logit_scale"),
)
# Embedded class prompts: rebuilt from whatever class names the model is used with (SPEC §3.11).
AUTHORS_DROPPED = (
    "prompt_learner.token_prefix",
    "prompt_learner.token_suffix",
    "prompt_learner.complete_text_embeddings",
)
# Prompt parameters → (our tower, block index); a None index is read from the key's block number.
AUTHORS_PROMPTS: tuple[tuple[re.Pattern, str, int | None], ...] = (
    (re.compile(r"prompt_learner\.ctx$"), "text", 0),
    (re.compile(r"image_encoder\.VPT$"), "vision", 0),
    (re.compile(r"image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$"), "vision", None),
    (re.compile(r"text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$"), "text", None),
)


def is_authors_state_dict(keys: object) -> bool:
    return any(str(k).startswith(("module.image_encoder.", "image_encoder.")) for k in keys)


def convert_authors(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """The ``model`` dict of an authors' ``.pth`` → (open_clip CLIP weights without the token embedding,
    prompt weights named ``prompts.vision.{i}`` / ``prompts.text.{i}``)."""
    clip: StateDict = {}
    prompts: StateDict = {}
    unknown = []
    for key, value in strip_prefix(state_dict).items():
        if key in AUTHORS_DROPPED:
            continue
        prompt_key = _authors_prompt_key(key)
        if prompt_key is not None:
            prompts[prompt_key] = value
            continue
        new = _rename(key, AUTHORS_RENAMES)
        if new is None:
            unknown.append(key)
        else:
            clip[new] = value
    if unknown:
        raise CheckpointError(f"unknown keys in the authors' model dict: {_shown(unknown)}")
    return clip, prompts


def _authors_prompt_key(key: str) -> str | None:
    for pattern, tower, index in AUTHORS_PROMPTS:
        match = pattern.match(key)
        if match:
            return f"prompts.{tower}.{index if index is not None else int(match[1])}"
    return None


AUTHORS_VARIANTS = {"both": "vifi", "image": "image", "text": "text"}  # TRAINER.ViFi_CLIP.USE


def convert_authors_config(config: Any, has_prompts: bool) -> dict:
    """The pickled yacs config (read as nested mappings) → our variant, template and underscore rule.

    Prompt models are the prompting stage ("X X … X {name}.", underscores → spaces); fine-tuned ones read
    CTX_INIT + " " + name + "." with names verbatim (SPEC §1.3).
    """
    trainer = config.get("TRAINER", {}).get("ViFi_CLIP", {}) if isinstance(config, Mapping) else {}
    if has_prompts:
        return {"variant": "prompt", "template": None, "replace_underscores": True}
    ctx_init = trainer.get("CTX_INIT")
    template = f"{ctx_init.replace('_', ' ')} {{}}." if isinstance(ctx_init, str) and ctx_init else None
    return {
        "variant": AUTHORS_VARIANTS.get(trainer.get("USE")),
        "template": template,
        "replace_underscores": None,
    }


def plain(value: Any) -> Any:
    """Nested mappings (e.g. a yacs CfgNode read as OrderedDicts) → plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def infer_prompt_config(prompt_state: Mapping[str, torch.Tensor]) -> dict[str, int] | None:
    """Prompt lengths and depths read off ``prompts.{vision,text}.{i}`` shapes; None when there are no prompts.

    Depth d means one [n, width] tensor for each block 0..d-1 (SPEC §1.5), so indices must be contiguous.
    """
    if not prompt_state:
        return None
    config: dict[str, int] = {}
    for tower in ("vision", "text"):
        prefix = f"prompts.{tower}."
        shapes = {
            int(k[len(prefix) :]): tuple(v.shape) for k, v in prompt_state.items() if k.startswith(prefix)
        }
        if sorted(shapes) != list(range(len(shapes))):
            raise CheckpointError(
                f"{tower} prompts exist for blocks {sorted(shapes)}; expected blocks 0..d-1"
            )
        lengths = {shape[0] for shape in shapes.values()}
        if len(lengths) > 1 or any(len(shape) != 2 for shape in shapes.values()):
            raise CheckpointError(
                f"{tower} prompts have shapes {sorted(set(shapes.values()))}; expected one [n, width]"
            )
        config[f"n_{tower}"] = lengths.pop() if lengths else 0
        config[f"depth_{tower}"] = len(shapes)
    unknown = [k for k in prompt_state if not k.startswith(("prompts.vision.", "prompts.text."))]
    if unknown:
        raise CheckpointError(f"unknown prompt keys: {_shown(unknown)}")
    return config


def _shown(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")
