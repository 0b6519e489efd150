"""Write the synthetic video benchmark to disk in the real datasets' formats (SPEC §2.1, §2.10, §8).

Two video "datasets" from :mod:`vificlip.data.synthetic`:

* ``synthetic_k`` — the Kinetics-400 stand-in: three objects × eight actions on dark backgrounds; the source for
  zero-shot transfer and the "bridge" of bridge-and-prompt.
* ``synthetic_u`` — the HMDB/UCF stand-in: two *other* objects × the same eight actions on light or striped
  backgrounds (a disjoint class set); three test splits, base/novel files (3 draws of 16 shots per base class),
  few-shot lists for K = 2, 4, 8, 16.

Layout under ``out``: ``<name>/<split>/*.mp4`` (each dataset's root), ``annotations/labels/*.csv`` and
``annotations/datasets_splits/...`` (the authors' folder names), ``presets/<name>.yaml`` (dataset presets, paths
relative to ``annotations``) and ``manifest.json``, written last: a folder with a matching manifest is complete and
is reused as it is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from ..atomic import atomic_write_text
from ..errors import VificlipError
from .annotations import write_label_csv, write_video_list
from .records import VideoRecord
from .splits import few_shot_splits, split_base_novel, write_base_novel
from .synthetic import ACTIONS, CANVAS, class_name, render_video
from .writer import write_video

log = logging.getLogger(__name__)

BENCHMARK_VERSION = 2
FEW_SHOT_K = (2, 4, 8, 16)
B2N_SHOTS = 16
NUM_FRAMES_WRITTEN = 16
FPS = 8
# crf 12 keeps the 36-px frames close to what was drawn; one thread and a short GOP keep files reproducible
# and cheap to seek in.
X264_OPTIONS = {"crf": "12", "threads": "1"}


@dataclasses.dataclass(frozen=True)
class VideoWorld:
    """One synthetic dataset: its objects, actions, backgrounds and how many videos each split gets per class."""

    name: str
    title: str
    objects: tuple[tuple[str, str], ...]
    backgrounds: tuple[str, ...]
    train_per_class: tuple[int, int]  # inclusive range, drawn per class: unequal counts decide base vs novel
    eval_per_class: int
    num_eval_splits: int
    listed_b2n_draws: int = 3  # b2n draws the preset lists (all 3 are written); the quick size lists 1
    actions: tuple[str, ...] = ACTIONS

    @property
    def class_names(self) -> list[str]:
        return [class_name(c, s, a) for c, s in self.objects for a in self.actions]


_SYNTHETIC_K = VideoWorld("synthetic_k", "Synthetic-K (Kinetics-400 stand-in)",
                          (("red", "square"), ("green", "triangle"), ("blue", "cross")), ("black", "navy"),
                          train_per_class=(16, 16), eval_per_class=6, num_eval_splits=1)  # fmt: skip
_SYNTHETIC_U = VideoWorld("synthetic_u", "Synthetic-U (HMDB/UCF stand-in)", (("yellow", "star"), ("white", "bar")),
                          ("grey", "striped"), train_per_class=(18, 24), eval_per_class=8, num_eval_splits=3)  # fmt: skip

# The quick size keeps the worlds and shrinks the splits.
SIZES: dict[str, tuple[VideoWorld, VideoWorld]] = {
    "full": (_SYNTHETIC_K, _SYNTHETIC_U),
    "quick": (
        dataclasses.replace(_SYNTHETIC_K, train_per_class=(8, 8), eval_per_class=2),
        dataclasses.replace(_SYNTHETIC_U, train_per_class=(16, 16), eval_per_class=4, listed_b2n_draws=1),
    ),
}


class BenchmarkError(VificlipError):
    """The benchmark folder cannot be used (unknown size, or files were removed after it was written)."""


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """Where the generated benchmark lives: preset YAMLs, annotation dir and each dataset's video root."""

    root: Path
    seed: int
    size: str

    @property
    def annotation_dir(self) -> Path:
        return self.root / "annotations"

    def preset_path(self, name: str) -> Path:
        return self.root / "presets" / f"{name}.yaml"

    def video_root(self, name: str) -> Path:
        return self.root / name


def _write_videos(
    world: VideoWorld, world_index: int, split: str, counts: list[int], root: Path, seed: int, tick: Callable
) -> list[VideoRecord]:
    """Render and encode ``counts[c]`` videos of each class c; each video has its own seeded stream."""
    records = []
    split_index = {"train": 0, "val": 1, "val1": 1, "val2": 2, "val3": 3}[split]
    for label, (colour, shape, action) in enumerate(
        (c, s, a) for c, s in world.objects for a in world.actions
    ):
        slug = class_name(colour, shape, action).replace(" ", "_")
        for i in range(counts[label]):
            rng = np.random.default_rng([seed, world_index, split_index, label, i])
            background = world.backgrounds[int(rng.integers(len(world.backgrounds)))]
            frames = render_video(action, colour, shape, background, rng, NUM_FRAMES_WRITTEN, CANVAS)
            relative = f"{split}/{slug}_{split}_{i:03d}.mp4"  # basenames unique across splits
            write_video(root / relative, frames, fps=FPS, options=X264_OPTIONS, keyframe_interval=4)
            records.append(VideoRecord(Path(relative), label))
            tick()
    return records


def _train_counts(world: VideoWorld, world_index: int, seed: int) -> list[int]:
    low, high = world.train_per_class
    rng = np.random.default_rng([seed, world_index, 99])
    return [int(n) for n in rng.integers(low, high + 1, size=len(world.class_names))]


def _preset(world: VideoWorld, files: dict) -> dict:
    return {"name": world.name, "title": world.title, "num_classes": len(world.class_names), "num_frames": 8,
            "layout": "flat", "video_suffix": ".mp4", **files}  # fmt: skip


def _write_source(world: VideoWorld, bench: Benchmark, tick: Callable) -> dict:
    ann, root = bench.annotation_dir, bench.video_root(world.name)
    labels = f"labels/{world.name}_labels.csv"
    write_label_csv(ann / labels, world.class_names)
    train = _write_videos(world, 0, "train", _train_counts(world, 0, bench.seed), root, bench.seed, tick)
    val = _write_videos(
        world, 0, "val", [world.eval_per_class] * len(world.class_names), root, bench.seed, tick
    )
    splits = f"datasets_splits/{world.name}_splits"
    write_video_list(ann / splits / "train.txt", train)
    write_video_list(ann / splits / "val.txt", val)
    return _preset(world, {"labels": labels, "train": f"{splits}/train.txt", "eval": [f"{splits}/val.txt"]})


def _write_target(world: VideoWorld, bench: Benchmark, tick: Callable) -> dict:
    """Target dataset: train pool ("train split 1"), 3 disjoint test splits, few-shot and base-to-novel files."""
    ann, root, seed = bench.annotation_dir, bench.video_root(world.name), bench.seed
    num_classes = len(world.class_names)
    labels = f"labels/{world.name}_labels.csv"
    write_label_csv(ann / labels, world.class_names)
    splits = f"datasets_splits/{world.name}_splits"
    train = _write_videos(world, 1, "train", _train_counts(world, 1, seed), root, seed, tick)
    write_video_list(ann / splits / "train1.txt", train)
    evals, val1 = [], []
    for k in range(1, world.num_eval_splits + 1):
        records = _write_videos(world, 1, f"val{k}", [world.eval_per_class] * num_classes, root, seed, tick)
        write_video_list(ann / splits / f"val{k}.txt", records)
        evals.append(f"{splits}/val{k}.txt")
        val1 = val1 or records
    few_shot = {}
    for k, records in few_shot_splits(train, FEW_SHOT_K, seed, num_classes=num_classes).items():
        few_shot[k] = f"{splits}/train1_few_shot_{k}.txt"
        write_video_list(ann / few_shot[k], records)
    b2n_dir = f"datasets_splits/base2novel_splits/{world.name}_splits"
    split = split_base_novel(train, num_classes)
    write_base_novel(
        ann / b2n_dir, split, world.class_names, train, val1, shots=B2N_SHOTS, draws=3, seed=seed
    )
    base_novel = {
        "base_labels": f"{b2n_dir}/base_labels.csv", "novel_labels": f"{b2n_dir}/novel_labels.csv",
        "base_train": f"{b2n_dir}/base_train.txt",
        "train": [f"{b2n_dir}/fs_base_s{i}_train.txt" for i in range(1, world.listed_b2n_draws + 1)],
        "base_val": f"{b2n_dir}/base_val.txt", "novel_val": f"{b2n_dir}/novel_val.txt",
        "num_base": len(split.base), "num_novel": len(split.novel),
    }  # fmt: skip
    return _preset(world, {
        "labels": labels, "train": f"{splits}/train1.txt", "eval": evals, "few_shot": few_shot,
        "few_shot_eval": evals[:1], "zero_shot": [{"labels": labels, "eval": e} for e in evals],
        "base_novel": base_novel,
    })  # fmt: skip


def _manifest(seed: int, size: str) -> dict:
    return {"version": BENCHMARK_VERSION, "seed": seed, "size": size}


def _is_complete(bench: Benchmark) -> bool:
    path = bench.root / "manifest.json"
    try:
        return json.loads(path.read_text()) == _manifest(bench.seed, bench.size)
    except (OSError, ValueError):
        return False


def num_videos(size: str) -> int:
    """How many video files the benchmark of ``size`` holds (for progress bars)."""
    source, target = SIZES[size]
    total = source.train_per_class[1] * len(source.class_names) + source.eval_per_class * len(
        source.class_names
    )
    total += target.train_per_class[1] * len(target.class_names)
    return total + target.eval_per_class * target.num_eval_splits * len(target.class_names)


def ensure_benchmark(
    out: str | Path, seed: int = 0, size: str = "full", progress: Callable[[], None] | None = None
) -> Benchmark:
    """The benchmark under ``out``, generated unless a complete one with the same seed and size is there.

    ``progress`` is called once per video written (an upper bound is :func:`num_videos`).
    """
    if size not in SIZES:
        raise BenchmarkError(f"unknown benchmark size {size!r}; expected one of {', '.join(SIZES)}")
    bench = Benchmark(Path(out), seed, size)
    if _is_complete(bench):
        log.info("using the synthetic benchmark at %s (seed %d, %s)", bench.root, seed, size)
        return bench
    log.info("writing the synthetic benchmark to %s (seed %d, %s)", bench.root, seed, size)
    (bench.root / "manifest.json").unlink(missing_ok=True)
    tick = progress or (lambda: None)
    source, target = SIZES[size]
    for world, writer in ((source, _write_source), (target, _write_target)):
        preset = writer(world, bench, tick)
        path = bench.preset_path(world.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(preset, sort_keys=False), encoding="utf-8")
    atomic_write_text(bench.root / "manifest.json", json.dumps(_manifest(seed, size)))
    return bench
