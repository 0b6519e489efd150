"""Writers for tiny checkpoints in every supported format, all from one open_clip-named state dict.

(A plain module, not tests/model/conftest.py: a second ``conftest`` module would shadow the root one for the
tests that import shared helpers.)

Each writer lays the weights out the way the source library does (names written here independently of
vificlip.model.convert), so loading them back through vificlip checks our key maps end to end.
"""

from __future__ import annotations

import contextlib
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from vificlip.model import ClipArch, build_clip

OPENAI_INTS = {"input_resolution": 32, "context_length": 77, "vocab_size": 49408}


def random_clip_state(arch: ClipArch, seed: int = 0) -> dict[str, torch.Tensor]:
    """open_clip CLIP weights with every tensor perturbed (so LayerNorm/bias mix-ups cannot hide)."""
    torch.manual_seed(seed)
    clip = build_clip(arch)
    with torch.no_grad():
        for param in clip.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return {k: v.clone() for k, v in clip.state_dict().items()}


# ---- OpenAI -------------------------------------------------------------------------------------------------
class _StateHolder(nn.Module):
    """A module whose state_dict has exactly the given dotted names (floats as parameters, ints as buffers)."""

    def __init__(self, flat: dict[str, torch.Tensor]) -> None:
        super().__init__()
        for key, value in flat.items():
            *parents, leaf = key.split(".")
            module: nn.Module = self
            for part in parents:
                if part not in module._modules:
                    module.add_module(part, nn.Module())
                module = module._modules[part]
            if value.is_floating_point():
                module.register_parameter(leaf, nn.Parameter(value.clone()))
            else:
                module.register_buffer(leaf, value.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale.exp()


def write_openai_jit(state: dict[str, torch.Tensor], path: Path) -> Path:
    """A TorchScript archive with OpenAI's key layout, including the three integer entries."""
    flat = {**state, **{k: torch.tensor(v) for k, v in OPENAI_INTS.items()}}
    torch.jit.script(_StateHolder(flat)).save(str(path))
    return path


def write_openai_plain(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save({**state, **{k: torch.tensor(v) for k, v in OPENAI_INTS.items()}}, path)
    return path


# ---- open_clip ----------------------------------------------------------------------------------------------
def write_open_clip(state: dict[str, torch.Tensor], path: Path) -> Path:
    """``.pt``: open_clip's training checkpoint (state_dict wrapper, DDP prefix); ``.bin``: bare; ``.safetensors``."""
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif path.suffix == ".pt":
        wrapped = {f"module.{k}": v for k, v in state.items()}
        torch.save({"epoch": 3, "name": "run", "state_dict": wrapped, "optimizer": {"state": {}}}, path)
    else:
        torch.save(state, path)
    return path


def write_open_clip_hub(
    state: dict[str, torch.Tensor], folder: Path, arch: ClipArch, **text_cfg_extra
) -> Path:
    """open_clip's hub layout: open_clip_config.json (model_cfg as in open_clip/model_configs) + weights."""
    folder.mkdir(parents=True)
    model_cfg = {
        "embed_dim": arch.embed_dim,
        "quick_gelu": arch.quick_gelu,
        "vision_cfg": {"image_size": arch.image_size, "layers": arch.vision_layers, "width": arch.vision_width,
                       "head_width": arch.vision_width // arch.vision_heads, "patch_size": arch.patch_size},
        "text_cfg": {"context_length": arch.context_length, "vocab_size": arch.vocab_size, "width": arch.text_width,
                     "heads": arch.text_heads, "layers": arch.text_layers, **text_cfg_extra.get("text_cfg", {})},
    }  # fmt: skip
    config = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073]}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "open_clip_model.safetensors"))
    return folder


# ---- Hugging Face -------------------------------------------------------------------------------------------
HF_TOWER = {"": "text_model.", "visual.": "vision_model."}
HF_NAMES = [
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
    ("ln_final.", "text_model.final_layer_norm."),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
    ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
    ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
    ("visual.ln_pre.", "vision_model.pre_layrnorm."),
    ("visual.ln_post.", "vision_model.post_layernorm."),
    ("logit_scale", "logit_scale"),
]
HF_BLOCK = [("attn.out_proj.", "self_attn.out_proj."), ("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."),
            ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2.")]  # fmt: skip


def open_clip_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {
        "text_projection.weight": state["text_projection"].t(),
        "visual_projection.weight": state["visual.proj"].t(),
    }
    for key, value in state.items():
        if key in ("text_projection", "visual.proj"):
            continue
        if ".resblocks." in key:
            tower, rest = key.split("transformer.resblocks.")
            index, name = rest.split(".", 1)
            prefix = f"{HF_TOWER[tower]}encoder.layers.{index}."
            if name.startswith("attn.in_proj_"):
                kind = name.rsplit("_", 1)[-1]
                for part, chunk in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{part}_proj.{kind}"] = chunk
                continue
            name = next(new + name[len(old) :] for old, new in HF_BLOCK if name.startswith(old))
            out[prefix + name] = value
            continue
        old, new = next((o, n) for o, n in HF_NAMES if key.startswith(o))
        out[new + key[len(old) :]] = value
    return out


def hf_config(arch: ClipArch, hidden_act: str = "quick_gelu"):
    from transformers import CLIPConfig

    text = dict(vocab_size=arch.vocab_size, hidden_size=arch.text_width, intermediate_size=4 * arch.text_width,
                num_hidden_layers=arch.text_layers, num_attention_heads=arch.text_heads,
                max_position_embeddings=arch.context_length, hidden_act=hidden_act)  # fmt: skip
    vision = dict(hidden_size=arch.vision_width, intermediate_size=4 * arch.vision_width,
                  num_hidden_layers=arch.vision_layers, num_attention_heads=arch.vision_heads,
                  image_size=arch.image_size, patch_size=arch.patch_size, hidden_act=hidden_act)  # fmt: skip
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=arch.embed_dim)


def write_hf(
    state: dict[str, torch.Tensor], folder: Path, arch: ClipArch, weights: str = "safetensors"
) -> Path:
    """A CLIPModel folder via transformers' own save_pretrained (strict load first, so the names are real)."""
    from transformers import CLIPModel

    model = CLIPModel(hf_config(arch, "quick_gelu" if arch.quick_gelu else "gelu"))
    model.load_state_dict(open_clip_to_hf(state), strict=True)
    model.save_pretrained(folder)
    if weights == "bin":
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


# ---- the authors' ViFi-CLIP .pth ----------------------------------------------------------------------------
class CfgNode(dict):
    """Pickles like yacs' CfgNode (a dict subclass with bookkeeping in __dict__), without needing yacs."""

    def __init__(self, init: dict | None = None) -> None:
        super().__init__({k: CfgNode(v) if isinstance(v, dict) else v for k, v in (init or {}).items()})
        self.__dict__["__immutable__"] = False
        self.__dict__["__deprecated_keys__"] = set()
        self.__dict__["__renamed_keys__"] = {}
        self.__dict__["__new_allowed__"] = False

    def __getattr__(self, name: str):
        if name in self:
            return self[name]
        raise AttributeError(name)


CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"


@contextlib.contextmanager
def fake_yacs() -> Iterator[None]:
    """Make ``yacs.config.CfgNode`` importable (for pickling) only inside the block."""
    package, module = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    module.CfgNode, package.config = CfgNode, module
    saved = {name: sys.modules.get(name) for name in ("yacs", "yacs.config")}
    sys.modules.update({"yacs": package, "yacs.config": module})
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


AUTHORS_CONFIG = {
    "MODEL": {"ARCH": "ViT-B/16"},
    "DATA": {"NUM_FRAMES": 8, "INPUT_SIZE": 224},
    "TRAINER": {
        "ViFi_CLIP": {"USE": "both", "CTX_INIT": "a photo of a", "ZS_EVAL": False, "PROMPT_MODEL": False}
    },
}


def authors_model_dict(
    state: dict[str, torch.Tensor], prompts: dict[str, torch.Tensor] | None = None
) -> dict:
    """The reference wrapper's DDP state dict: image_encoder / text_encoder / prompt_learner / logit_scale."""
    out = {}
    for key, value in state.items():
        if key == "token_embedding.weight":
            continue  # not part of the reference model (SPEC §1.3)
        if key.startswith("visual."):
            out["module.image_encoder." + key[len("visual.") :]] = value
        elif key == "logit_scale":
            out["module.logit_scale"] = value
        else:
            out["module.text_encoder." + key] = value
    out["module.prompt_learner.complete_text_embeddings"] = torch.randn(
        5, 77, state["ln_final.weight"].shape[0]
    )
    out.update(prompts or {})
    return out


def write_authors(
    state: dict[str, torch.Tensor], path: Path, prompts: dict | None = None, config=None
) -> Path:
    """ckpt_epoch_N.pth as the reference writes it (SPEC §3.6), config as a pickled CfgNode."""
    with fake_yacs():
        checkpoint = {
            "model": authors_model_dict(state, prompts),
            "optimizer": {
                "state": {0: {"exp_avg": torch.zeros(3)}},
                "param_groups": [{"lr": 2e-6, "params": [0]}],
            },
            "lr_scheduler": {"t_initial": 10, "base_values": [2e-6]},
            "max_accuracy": 71.5,
            "epoch": 10,
            "config": CfgNode(AUTHORS_CONFIG if config is None else config),
        }
        torch.save(checkpoint, path)
    return path
