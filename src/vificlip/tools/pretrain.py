"""Pretrain the built-in ``synthetic-tiny-clip`` contrastively on the synthetic captioned images (CLIP, Radford 2021).

The real CLIP cannot be downloaded here, so the demo starts from a CLIP of our own: a 4-block ViT on 32-px images
and a 3-block text transformer with CLIP's BPE tokenizer (vocabulary 49,408; context 32 instead of 77, which the
captions and prompts never exceed). It learns colours, shapes, sizes, positions and backgrounds from captions —
never actions, which only video fine-tuning can teach it, as the real CLIP learned objects from photos.

Reproducible: weights are initialised from ``seed``, every batch is drawn from the stream (seed, step), and CPU
threads are fixed, so the same command on the same machine writes the same file bit for bit (and matches the
recorded loss trace to float tolerance elsewhere). Weights are stored in fp16 to halve the shipped file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from open_clip.model import CLIP
from safetensors import safe_open

from ..data.synthetic import (
    COLOURS,
    HELD_OUT_OBJECTS,
    POSITIONS,
    SHAPES,
    SIZES,
    captioned_images,
    pretraining_objects,
    render_images,
)
from ..data.transforms import AUTHORS_MEAN, AUTHORS_STD
from ..model import ClipArch, ViFiCLIP, build_clip
from ..model.loading import load_model, save_model
from ..model.text import tokenize

log = logging.getLogger(__name__)

SYNTHETIC_ARCH = ClipArch(
    embed_dim=64, image_size=32, patch_size=8, vision_width=128, vision_layers=4, vision_heads=2,
    context_length=32, text_width=128, text_layers=3, text_heads=2,
)  # fmt: skip
RECORD_SUFFIX = ".yaml"  # next to the weights: the config, the loss trace and the weights' SHA-256


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Everything that decides the shipped weights (the arch is fixed: :data:`SYNTHETIC_ARCH`)."""

    seed: int = 0
    steps: int = 1000
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    threads: int = 1  # fixed: the reduction order of CPU kernels depends on the thread count
    eval_images: int = 2000


def _lr(config: PretrainConfig, step: int) -> float:
    """Linear warmup then cosine to zero (step counts from 0)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * progress))


def _to_input(images: np.ndarray, crop: np.ndarray | None, size: int) -> torch.Tensor:
    """uint8 [N,S,S,3] → normalised float [N,3,size,size]; a crop offset per image (train) or the centre (eval)."""
    n, canvas = images.shape[0], images.shape[1]
    if crop is None:
        crop = np.full((n, 2), (canvas - size) // 2)
    patches = np.stack([img[y : y + size, x : x + size] for img, (y, x) in zip(images, crop)])
    x = torch.from_numpy(patches).permute(0, 3, 1, 2).float()  # [N, 3, size, size]
    mean = torch.tensor(AUTHORS_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(AUTHORS_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def make_batch(config: PretrainConfig, step: int, arch: ClipArch) -> tuple[torch.Tensor, torch.Tensor]:
    """The (images, caption tokens) of ``step``: a pure function of (seed, step), random 32-px crops of 36 px."""
    images, captions, _ = captioned_images(config.batch_size, seed=config.seed * 1_000_003 + step)
    rng = np.random.default_rng([config.seed, step, 7])
    crop = rng.integers(0, images.shape[1] - arch.image_size + 1, size=(len(images), 2))
    return _to_input(images, crop, arch.image_size), tokenize(captions, arch.context_length)


def encode_text(clip: CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``encode_text`` run on the first L positions only, L = last EOT + 1: exact under the causal
    mask, and half the work for captions that use 16 of the 32 positions."""
    length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
    x = clip.token_embedding(tokens) + clip.positional_embedding[:length]  # [N, L, D_t]
    x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
    x = clip.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]  # EOT token → [N, D_t]
    return x @ clip.text_projection  # [N, D]


def clip_loss(clip: CLIP, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over the batch (CLIP's objective)."""
    image = F.normalize(clip.encode_image(images), dim=-1)
    text = F.normalize(encode_text(clip, tokens), dim=-1)
    logits = clip.logit_scale.exp() * image @ text.t()  # [N, N]
    target = torch.arange(len(logits))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def _param_groups(clip: CLIP, weight_decay: float) -> list[dict]:
    """No decay on gains, biases, the logit scale and the embedding tables (the usual CLIP recipe)."""
    decay, no_decay = [], []
    for name, param in clip.named_parameters():
        skip = param.ndim < 2 or "embedding" in name or name == "logit_scale"
        (no_decay if skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_clip(
    config: PretrainConfig,
    arch: ClipArch = SYNTHETIC_ARCH,
    steps: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[CLIP, list[float]]:
    """Train from scratch for ``steps`` (default ``config.steps``; fewer for a reproduction check).

    The LR schedule always follows ``config.steps``, so the first N steps of a short run equal those of the full one.
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    clip = build_clip(arch)
    clip.train()
    optimizer = torch.optim.AdamW(
        _param_groups(clip, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6
    )
    losses = []
    for step in range(config.steps if steps is None else steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr(config, step)
        images, tokens = make_batch(config, step, arch)
        loss = clip_loss(clip, images, tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(100))  # CLIP's clamp: temperature ≥ 0.01
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    return clip, losses


# ---- evaluation on held-out images ---------------------------------------------------------------------------
@torch.no_grad()
def _accuracy(
    clip: CLIP, images: np.ndarray, options: list[list[str]], answers: list[int], arch: ClipArch
) -> float:
    """Top-1 of choosing the right caption among each image's ``options`` (shared when all options are equal)."""
    features = F.normalize(clip.encode_image(_to_input(images, None, arch.image_size)), dim=-1)
    correct = 0
    cache: dict[tuple[str, ...], torch.Tensor] = {}
    for feature, choices, answer in zip(features, options, answers):
        key = tuple(choices)
        if key not in cache:
            cache[key] = F.normalize(encode_text(clip, tokenize(choices, arch.context_length)), dim=-1)
        correct += int((cache[key] @ feature).argmax()) == answer
    return 100.0 * correct / len(answers)


def evaluate_zero_shot(
    clip: CLIP, seed: int, num_images: int = 2000, arch: ClipArch = SYNTHETIC_ARCH
) -> dict:
    """Zero-shot accuracy (%) on fresh images of a seed the training never uses.

    ``object_seen`` / ``object_held_out``: which of all 72 "a {colour} {shape}" captions, for pairs seen in
    pretraining vs the 8 pairs never shown; ``position``: which of the 5 positions; ``size``: small vs large.
    """
    clip.eval()
    rng = np.random.default_rng([seed, 0xE7A1])
    names = [f"a {c} {s}" for c in COLOURS for s in SHAPES]
    results = {}
    for key, objects in (("object_seen", pretraining_objects()), ("object_held_out", list(HELD_OUT_OBJECTS))):
        images, _, facts = captioned_images(num_images, seed=seed + 10_000 + len(key), objects=objects)
        answers = [names.index(f"a {f.colour} {f.shape}") for f in facts]
        results[key] = _accuracy(clip, images, [names] * len(facts), answers, arch)
    _, _, facts = captioned_images(num_images, seed=seed + 20_000)
    images = render_images(facts, rng)
    where = {p: ("in the centre" if p == "centre" else f"at the {p}") for p in POSITIONS}
    options = [[f"a {f.colour} {f.shape} {where[p]}" for p in POSITIONS] for f in facts]
    results["position"] = _accuracy(
        clip, images, options, [list(POSITIONS).index(f.position) for f in facts], arch
    )
    options = [[f"a {s} {f.colour} {f.shape}" for s in SIZES] for f in facts]
    results["size"] = _accuracy(clip, images, options, [list(SIZES).index(f.size) for f in facts], arch)
    return {k: round(v, 2) for k, v in results.items()}


def weights_digest(path: str | Path) -> str:
    """SHA-256 over every tensor (sorted names, dtype, shape, bytes). Not the file's hash: safetensors writes its
    JSON header from a hash map, so the header's key order — and the file's bytes — vary from run to run."""
    digest = hashlib.sha256()
    with safe_open(str(path), framework="pt") as file:
        for name in sorted(file.keys()):
            tensor = file.get_tensor(name)
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_pretrained(clip: CLIP, path: str | Path, arch: ClipArch = SYNTHETIC_ARCH) -> Path:
    """Our checkpoint format (:func:`~vificlip.model.loading.save_model`), tensors in fp16."""
    model = ViFiCLIP(clip, arch)  # the default variant
    model.half()  # loaders cast back to fp32; halving the file keeps the package small
    try:
        return save_model(model, path)
    finally:
        model.float()


def pretrain_synthetic(
    out: str | Path,
    config: PretrainConfig = PretrainConfig(),
    progress: Callable[[int, float], None] | None = None,
) -> dict:
    """Train, evaluate, save the weights to ``out`` and a record (config, losses, accuracy, SHA-256) beside them."""
    started = time.perf_counter()
    clip, losses = train_clip(config, on_step=progress)
    train_sec = time.perf_counter() - started
    path = save_pretrained(clip, out)
    # Score what ships: the fp16-rounded weights as every user loads them.
    shipped = load_model(path).clip
    accuracy = evaluate_zero_shot(shipped, seed=config.seed + 777, num_images=config.eval_images)
    record = {
        "config": dataclasses.asdict(config),
        "arch": dataclasses.asdict(SYNTHETIC_ARCH),
        "zero_shot_accuracy": accuracy,
        "loss_first_steps": [round(v, 6) for v in losses[:20]],
        "loss_last_100_mean": round(float(np.mean(losses[-100:])), 4),
        "train_sec": round(train_sec, 1),
        "torch": str(torch.__version__),
        "weights_sha256": weights_digest(path),
    }
    Path(path).with_suffix(RECORD_SUFFIX).write_text(
        yaml.safe_dump(record, sort_keys=False), encoding="utf-8"
    )
    log.info("saved %s (%.1f MB) after %.0f s; zero-shot accuracy %s", path, path.stat().st_size / 1e6,
             train_sec, accuracy)  # fmt: skip
    return record
