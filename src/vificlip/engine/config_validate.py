"""Checks of a built :class:`.config_schema.RunConfig` that types cannot express: choices, ranges, finiteness.

Each error names the dotted key and the bad value; every choice list is taken from the module that owns it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..data.dataset import CLIP_MODES
from ..data.decode import BACKENDS
from ..data.locate import LAYOUTS
from ..data.transforms import NORMALIZATIONS, NUM_CROPS
from ..model.variants import VARIANTS
from .config_schema import ConfigError, RunConfig

PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # auto: bf16 on CUDA, fp32 on CPU
SCHEDULES = (
    "reference",
    "shifted",
)  # engine/optim.py: the reference's un-shifted cosine, or cosine after warmup
# Every choice field and its allowed values, each list taken from the module that owns it.
CHOICES = {
    "model.variant": VARIANTS,
    "data.layout": LAYOUTS,
    "data.backend": BACKENDS,
    "data.normalization": tuple(NORMALIZATIONS),
    "data.clip_mode": CLIP_MODES,
    "train.precision": PRECISIONS,
    "optim.schedule": SCHEDULES,
    "eval.num_crops": NUM_CROPS,
    "eval.final_num_crops": NUM_CROPS,
}
POSITIVE = ("data.num_frames", "data.input_size", "train.epochs", "train.batch_size", "train.eval_freq", "train.print_freq", "eval.num_clips", "eval.batch_size", "eval.final_num_clips",
            "optim.lr", "optim.eps")  # fmt: skip
NON_NEGATIVE = ("output.keep_every", "data.num_workers", "train.save_every_steps", "optim.weight_decay", "optim.warmup_epochs",
                "train.mixup_alpha", "train.cutmix_alpha")  # fmt: skip


def get_key(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate_choices(cfg: RunConfig) -> None:
    """Every field of :data:`CHOICES` against its owner's list; the error names the key and the allowed values."""
    for key, allowed in CHOICES.items():
        if get_key(cfg, key) not in allowed:
            raise ConfigError(f"{key}: {get_key(cfg, key)!r} is not one of {', '.join(map(str, allowed))}")


def validate(cfg: RunConfig) -> None:
    """Range and choice checks that types cannot express; each error names the dotted key and the bad value."""
    check_finite(cfg)
    validate_choices(cfg)
    for key in POSITIVE:
        if not get_key(cfg, key) > 0:
            raise ConfigError(f"{key}: must be > 0, got {get_key(cfg, key)!r}")
    for key in NON_NEGATIVE:
        if (get_key(cfg, key) or 0) < 0:
            raise ConfigError(f"{key}: must be ≥ 0, got {get_key(cfg, key)!r}")
    ranges = {"data.max_bad_fraction": (0, 1), "train.switch_prob": (0, 1), "train.label_smoothing": (0, 1),
              "optim.lr_min_ratio": (0, 1),
              "data.color_jitter": (0, 1), "data.grayscale": (0, 1)}  # fmt: skip
    for key, (low, high) in ranges.items():
        if not low <= get_key(cfg, key) <= high:
            raise ConfigError(f"{key}: must be in [{low}, {high}], got {get_key(cfg, key)!r}")
    if cfg.eval.wise_alpha is not None and not 0 <= cfg.eval.wise_alpha <= 1:
        raise ConfigError(f"eval.wise_alpha: must be in [0, 1], got {cfg.eval.wise_alpha!r}")
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas: expected two numbers in [0, 1), got {cfg.optim.betas!r}")
    if cfg.train.grad_clip is not None and cfg.train.grad_clip <= 0:
        raise ConfigError(f"train.grad_clip: must be > 0 or null, got {cfg.train.grad_clip!r}")
    if cfg.model.checkpoint is None and cfg.model.arch is None:
        raise ConfigError(
            "model.checkpoint: null needs model.arch (a name such as ViT-B/16) for random weights"
        )
    p = cfg.model.prompts
    if cfg.model.variant == "prompt" and (p.depth_text < 1 or p.n_text < 1):
        raise ConfigError(f"model.prompts: the prompt variant needs n_text ≥ 1 and depth_text ≥ 1, got {p}")
    if any(k < 1 for k in cfg.protocol.shots):
        raise ConfigError(f"protocol.shots: every K must be ≥ 1, got {cfg.protocol.shots}")
    validate_batch(cfg)  # after train.batch_size is known to be ≥ 1


def check_finite(node: Any, prefix: str = "") -> None:
    """Every number in the config is finite: inf and nan slip through range checks and poison the weights."""
    for field in dataclasses.fields(node):
        key, value = prefix + field.name, getattr(node, field.name)
        if dataclasses.is_dataclass(value):
            check_finite(value, key + ".")
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{key}: must be a finite number, got {value!r}")


def validate_batch(cfg: RunConfig) -> None:
    """``train.global_batch`` and ``train.accumulation_steps``: null or ≥ 1 (whether they divide needs the world)."""
    for key in ("train.global_batch", "train.accumulation_steps"):
        value = get_key(cfg, key)
        if value is not None and value < 1:
            raise ConfigError(f"{key}: must be ≥ 1 or null, got {value!r}")
    t = cfg.train
    if t.accumulation_steps is None and t.global_batch is not None and t.global_batch % t.batch_size:
        raise ConfigError(f"train.global_batch: {t.global_batch} is not a multiple of train.batch_size "
                          f"{t.batch_size}, so no number of processes reaches it; change either")  # fmt: skip
