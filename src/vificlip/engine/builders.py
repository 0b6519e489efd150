"""Config → objects: the model (start weights, variant, prompts, init-from) and the annotated datasets.

Shared by training, evaluation and the protocol runners so that each builds things the same way, and so that
every bad input (unknown file, class-count mismatch, foreign architecture) fails here, before any training.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path

import torch

from ..data.annotations import read_labels, read_video_list, validate_records
from ..data.dataset import VideoDataset
from ..data.labelsets import LABEL_SETS, read_label_set
from ..data.locate import resolve_records
from ..data.presets import default_annotation_dir
from ..data.records import VideoRecord
from ..data.splits import check_leakage
from ..data.transforms import build_test_transform, build_train_transform
from ..model.backbone import ArchitectureError, ClipArch, arch_by_name, build_clip
from ..model.loading import load_model
from ..model.vificlip import ViFiCLIP
from .config_schema import ConfigError, DataConfig, ModelConfig
from .resolve import resolve_weights

log = logging.getLogger(__name__)


# ---- model --------------------------------------------------------------------------------------------------
def _arch(model_cfg: ModelConfig) -> ClipArch | None:
    if model_cfg.arch is None:
        return None
    if isinstance(model_cfg.arch, dict):
        return ClipArch.from_dict(model_cfg.arch)
    return arch_by_name(model_cfg.arch)


def load_weights(path: str, model_cfg: ModelConfig) -> ViFiCLIP:
    """Any checkpoint (file, run folder, built-in name) as a ViFiCLIP, with the config's architecture check."""
    base = resolve_weights(model_cfg.base_checkpoint) if model_cfg.base_checkpoint else None
    return load_model(resolve_weights(path), base=base, arch=_arch(model_cfg))


def _has_prompts(model: ViFiCLIP) -> bool:
    return any(True for _ in model.prompts.parameters())


def copy_weights(target: ViFiCLIP, source: ViFiCLIP, what: str) -> None:
    """Weights only (never optimiser state): CLIP always, prompts when both models carry them."""
    if target.arch != source.arch:
        raise ArchitectureError(f"{what}: architecture {source.arch} does not match this run's {target.arch}")
    target.clip.load_state_dict(source.clip.state_dict())
    if _has_prompts(target) and _has_prompts(source):
        target.prompts.load_state_dict(source.prompts.state_dict())


def build_model(model_cfg: ModelConfig, init_from: str | None = None) -> ViFiCLIP:
    """Start weights (or random ones for ``arch``), prompts, the variant and template, then ``init_from``.

    The template follows the model's one rule (``ViFiCLIP.set_variant``), as in ``load_model``: ``eval --set
    model.variant=zeroshot`` reads the same prompt strings as ``load_model(path, variant="zeroshot")``.
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)  # random init (tests, prompts) is the same in every process and every resume
        if model_cfg.checkpoint is None:
            model = ViFiCLIP(build_clip(_arch(model_cfg)), _arch(model_cfg))
        else:
            model = load_weights(model_cfg.checkpoint, model_cfg)
        if model_cfg.replace_underscores is not None:
            model.replace_underscores = model_cfg.replace_underscores
        if model_cfg.variant == "prompt" and not _has_prompts(model):
            p = model_cfg.prompts  # fresh deep prompts on a prompt-free model (bridge-and-prompt, SPEC §1.5)
            model = model.with_prompts(p.n_vision, p.n_text, p.depth_vision, p.depth_text, p.init_text)
        model.set_variant(model_cfg.variant, model_cfg.template)
    source = init_from or model_cfg.init_from
    if source:
        copy_weights(
            model, load_weights(source, dataclasses.replace(model_cfg, arch=None)), f"init-from {source}"
        )
        log.info("initialised weights from %s (weights only; training state starts fresh)", source)
    return model


# ---- data ---------------------------------------------------------------------------------------------------
def annotation_path(data_cfg: DataConfig, relative: str | None, key: str) -> Path:
    if not relative:
        raise ConfigError(f"{key}: not set; give an annotation file (--set {key}=PATH)")
    path = Path(os.path.expanduser(relative))
    # data.annotation_dir wins; a built-in dataset preset defaults to the paper's files shipped in the package
    bundled = None if data_cfg.annotation_dir else default_annotation_dir(data_cfg.dataset)
    folder = data_cfg.annotation_dir or bundled
    if folder and not path.is_absolute():
        path = Path(os.path.expanduser(folder)) / path
    if not path.is_file():
        where = (f" (not among the paper's annotation files bundled for {data_cfg.dataset}: the authors do not "
                 "ship it; give your own with --set data.annotation_dir=DIR or an absolute path)") if bundled else ""  # fmt: skip
        raise ConfigError(f"{key}: annotation file {path} does not exist{where}")
    return path


def class_names(data_cfg: DataConfig, labels: str | None = None, key: str = "data.labels") -> list[str]:
    wanted = labels or data_cfg.labels
    # a bundled label set by name (k400, hmdb51-base, …) works wherever a label file does
    names = (
        read_label_set(wanted)
        if wanted in LABEL_SETS
        else read_labels(annotation_path(data_cfg, wanted, key))
    )
    if data_cfg.num_classes is not None and labels is None and data_cfg.num_classes != len(names):
        raise ConfigError(
            f"data.num_classes is {data_cfg.num_classes} but {data_cfg.labels} lists {len(names)}"
        )
    return names


def records(data_cfg: DataConfig, video_list: str | None, num_classes: int, key: str) -> list[VideoRecord]:
    """Parsed, located under ``data.root`` and label-checked against the class count (quirk 16)."""
    path = annotation_path(data_cfg, video_list, key)
    listed = read_video_list(path)
    validate_records(listed, num_classes, source=f"the label file ({num_classes} classes)")
    root = os.path.expanduser(data_cfg.root) if data_cfg.root else str(path.parent)
    return resolve_records(listed, root, layout=data_cfg.layout)


def train_dataset(data_cfg: DataConfig, items: list[VideoRecord], seed: int) -> VideoDataset:
    if data_cfg.augment:
        transform = build_train_transform(data_cfg.input_size, jitter_p=data_cfg.color_jitter,
                                          gray_p=data_cfg.grayscale, consistent_jitter=data_cfg.consistent_jitter,
                                          normalization=data_cfg.normalization)  # fmt: skip
    else:
        transform = build_test_transform(data_cfg.input_size, 1, data_cfg.normalization)
    # Per-item seeding: augmentations depend on (seed, epoch, index) only, so resume is exact.
    return VideoDataset(items, data_cfg.num_frames, mode="train", transform=_squeeze(transform, data_cfg),
                        backend=data_cfg.backend, max_bad_fraction=data_cfg.max_bad_fraction, seed=seed,
                        seed_per_item=True)  # fmt: skip


def _squeeze(transform, data_cfg: DataConfig):
    """The test transform returns [crops,T,3,S,S]; training without augmentation wants [T,3,S,S]."""
    if data_cfg.augment:
        return transform

    def one_crop(frames: torch.Tensor) -> torch.Tensor:
        return transform(frames)[0]

    return one_crop


def eval_dataset(data_cfg: DataConfig, items: list[VideoRecord], num_clips: int, num_crops: int,
                 seed: int) -> VideoDataset:  # fmt: skip
    transform = build_test_transform(data_cfg.input_size, num_crops, data_cfg.normalization)
    return VideoDataset(items, data_cfg.num_frames, mode="test", transform=transform, num_clips=num_clips,
                        clip_mode=data_cfg.clip_mode, backend=data_cfg.backend, seed=seed)  # fmt: skip


def warn_leakage(train_items: list[VideoRecord], eval_items: list[VideoRecord], eval_name: str) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        leaks = check_leakage(train_items, eval_items, eval_name=eval_name)
    for warning in caught:
        log.warning("%s", warning.message)
    return len(leaks)
