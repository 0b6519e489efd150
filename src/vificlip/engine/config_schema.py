"""The run configuration's schema: nested dataclasses mirroring the reference's yacs tree (SPEC §3.1).

Sections ``model``, ``data``, ``train``, ``optim``, ``eval``, ``output`` and ``protocol``; defaults are the
reference's defaults. Reading, coercion and writing live in :mod:`.config`, the checks in :mod:`.config_validate`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import VificlipError
from ..model.variants import DEFAULT_VARIANT


class ConfigError(VificlipError, ValueError):
    """A config file, preset name, override or value that cannot be used; the message names the dotted key."""


@dataclasses.dataclass
class PromptConfig:
    """Bridge-and-prompt token counts and depths (SPEC §1.5); used when ``model.variant`` is ``prompt``."""

    n_vision: int = 0
    n_text: int = 0
    depth_vision: int = 0
    depth_text: int = 1
    init_text: str | None = None  # words for the text context; the reference ignores it when n_text > 4


@dataclasses.dataclass
class ModelConfig:
    arch: str | dict | None = None  # a name (ViT-B/16) or ClipArch fields; read off the checkpoint when null
    checkpoint: str | None = (
        None  # starting weights: a path (any format) or built-in name; null = random init
    )
    base_checkpoint: str | None = None  # base CLIP for checkpoints that lack the token embedding (authors')
    init_from: str | None = None  # weights only, loaded after building (e.g. K400 ViFi-CLIP for prompting)
    variant: str = DEFAULT_VARIANT  # one of model.variants.VARIANTS
    template: str | None = None  # null = the variant's ("a photo of a {}." or "{}")
    replace_underscores: bool | None = None  # null = the checkpoint's (false when it does not say)
    prompts: PromptConfig = dataclasses.field(default_factory=PromptConfig)


@dataclasses.dataclass
class DataConfig:
    dataset: str | None = (
        None  # data preset (k400, k600, hmdb51, ucf101, ssv2) the protocol runners enumerate
    )
    annotation_dir: str | None = None  # folder the list/label paths are relative to (the authors' repo copy)
    root: str | None = None  # folder the video paths in the lists are relative to
    train_list: str | None = None
    val_list: str | None = None
    labels: str | None = None  # label CSV (id,name) or one name per line; row order = class index
    num_classes: int | None = None  # optional check against the label file
    num_frames: int = 8
    input_size: int = 224
    num_workers: int = 4
    layout: str = "auto"  # flat | per-class | auto (resolve by basename)
    backend: str = "auto"  # video decoder: one of data.decode.BACKENDS
    max_bad_fraction: float = 0.01
    normalization: str = "authors"  # authors (ImageNet, SPEC §2.7) | clip
    color_jitter: float = 0.8  # probability (SPEC §2.5)
    grayscale: float = 0.2
    consistent_jitter: bool = (
        False  # clip-consistent colour jitter (quirk 14); the reference jitters per frame
    )
    augment: bool = True  # false trains on the test pipeline (debugging, exactness tests)
    clip_mode: str = "even"  # multi-clip test sampling: even (deterministic) | random (the reference's)


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 8  # per process, per micro-step
    # The effective batch of one optimiser step (the reference's GPUs × batch × accumulation, SPEC §3.4). The
    # engine derives accumulation = global_batch / (batch_size × world size), on any number of devices.
    global_batch: int | None = None
    accumulation_steps: int | None = None  # explicit: overrides global_batch (the consequence is logged)
    seed: int = 1024
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    grad_clip: float | None = None  # max global grad norm; the reference does not clip
    grad_checkpointing: bool = False
    compile: bool = False  # torch.compile the frame encoder
    mixup: bool = True  # mixup/cutmix + label smoothing + soft-target CE (every reference run, SPEC §2.8)
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.1
    eval_freq: int = 1  # validate and keep a checkpoint every N epochs and at the last (reference SAVE_FREQ)
    save_every_steps: int = 0  # also refresh `last` every N optimiser steps (0 = only at epoch ends)
    print_freq: int = 50


@dataclasses.dataclass
class OptimConfig:
    lr: float = 8e-6
    weight_decay: float = 1e-3
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    no_decay_group: bool = False  # exempt 1-D tensors (biases, norms, logit scale) from decay; reference: off
    schedule: str = "reference"  # reference (un-shifted cosine, SPEC §3.2) | shifted (cosine after warmup)
    warmup_epochs: float = 5
    lr_min_ratio: float = 0.01
    fused: bool | None = None  # null = fused AdamW when every parameter is on CUDA


@dataclasses.dataclass
class EvalConfig:
    num_clips: int = 1
    num_crops: int = 1  # 1 centre crop or 3 crops (SPEC §2.6)
    batch_size: int = 2
    final_num_clips: int = 1  # views of one more evaluation of the final model (supervised: 4 × 3)
    final_num_crops: int = 1
    wise_alpha: float | None = None  # also evaluate (1−A)·starting weights + A·fine-tuned (WiSE-FT)


@dataclasses.dataclass
class OutputConfig:
    dir: str | None = None  # null = runs/<name>
    tensorboard: bool = True
    # Weights kept for good besides last/best: null = at every evaluation epoch (the reference's SAVE_FREQ),
    # N = every N epochs and the last, 0 = none.
    keep_every: int | None = None


@dataclasses.dataclass
class ProtocolConfig:
    """What the protocol runners loop over beyond ``data.dataset``'s preset (see engine/protocols.py)."""

    targets: list[str] = dataclasses.field(default_factory=list)  # zero-shot: dataset presets to evaluate
    target_roots: dict[str, str] = dataclasses.field(default_factory=dict)  # zero-shot: video root per target
    shots: list[int] = dataclasses.field(default_factory=list)  # few-shot K values
    novel_val_list: str | None = None  # base-to-novel without a data preset: novel list and its class set
    novel_labels: str | None = None


@dataclasses.dataclass
class RunConfig:
    name: str = "run"
    description: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    protocol: ProtocolConfig = dataclasses.field(default_factory=ProtocolConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output.dir or f"runs/{self.name}").expanduser()
