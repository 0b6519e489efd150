"""Protocol class sets and training subsets, built the way the authors built theirs (SPEC §2.10).

* Base/novel: stable ascending sort of the classes by (training count, full-list id); the lower ``C // 2`` classes
  are *novel*, the upper ``C − C // 2`` (the most frequent half) are *base*, and both label CSVs list their classes
  in that ascending order. This reproduces the shipped files: HMDB (all counts equal) gives novel = ids 0–24 and
  base = ids 25–50, and the UCF base/novel CSVs are in ascending train count with ties in alphabetical order.
* K-shot: K videos per class drawn without replacement. Every (seed, K, draw) has its own random stream, so
  different K are independent draws, not nested, like the reference; b2n training draws s1/s2/s3 are three
  independent 16-shot draws over the base classes (SPEC quirk 20: the authors' "3 seeds" are these 3 files).
  The authors' RNG is unknown, so our draws are reproducible but not identical to their files.
* Zero-shot subsets: N classes drawn from the names that are absent from an excluded set (K600 minus K400).
* Leakage: training videos that also appear in an evaluation list (few-shot lists come from train split 1 and leak
  into HMDB/UCF test splits 2 and 3, quirk 19) — found by basename and reported with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import VificlipError
from .annotations import write_label_csv, write_video_list
from .records import VideoRecord

log = logging.getLogger(__name__)

LEAK_KEYS = ("name", "path")


class SplitError(VificlipError):
    """A split cannot be built from the given lists (too few videos or classes); names the class and the count."""


class SplitLeakageWarning(UserWarning):
    """Training videos also appear in an evaluation list; the engine may turn this into an error."""


def class_counts(records: Iterable[VideoRecord], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for record in records:
        if not 0 <= record.label < num_classes:
            raise SplitError(
                f"{record.source or record.path}: label {record.label} is outside 0..{num_classes - 1}"
            )
        counts[record.label] += 1
    return counts


@dataclasses.dataclass(frozen=True)
class BaseNovelSplit:
    """Full-list class ids of each half, in the order of the half's label CSV (= its local label)."""

    base: tuple[int, ...]
    novel: tuple[int, ...]

    def names(self, class_names: Sequence[str], half: str) -> list[str]:
        return [class_names[c] for c in self._ids(half)]

    def relabel(self, records: Iterable[VideoRecord], half: str) -> list[VideoRecord]:
        """The records of ``half``'s classes, with labels mapped to that half's local ids."""
        local = {full: index for index, full in enumerate(self._ids(half))}
        return [dataclasses.replace(r, label=local[r.label]) for r in records if r.label in local]

    def _ids(self, half: str) -> tuple[int, ...]:
        if half not in ("base", "novel"):
            raise ValueError(f"half must be 'base' or 'novel', got {half!r}")
        return self.base if half == "base" else self.novel


def split_base_novel(train_records: Iterable[VideoRecord], num_classes: int) -> BaseNovelSplit:
    """Most frequent half = base; ties broken by full-list id (see the module docstring for the exact rule)."""
    if num_classes < 2:
        raise SplitError(f"a base/novel split needs at least 2 classes, got {num_classes}")
    counts = class_counts(train_records, num_classes)
    order = sorted(range(num_classes), key=lambda c: (counts[c], c))
    num_novel = num_classes // 2
    return BaseNovelSplit(base=tuple(order[num_novel:]), novel=tuple(order[:num_novel]))


def _by_class(records: Iterable[VideoRecord]) -> dict[int, list[VideoRecord]]:
    groups: dict[int, list[VideoRecord]] = {}
    for record in records:
        groups.setdefault(record.label, []).append(record)
    return groups


def sample_few_shot(
    records: Sequence[VideoRecord],
    shots: int,
    seed: int,
    draw: int = 0,
    num_classes: int | None = None,
) -> list[VideoRecord]:
    """``shots`` videos per class, class-major in ascending label order, in the order they were drawn.

    The stream is seeded by (seed, shots, draw), so each K and each draw is independent of the others.
    ``num_classes`` makes a class without any training video an error instead of silently absent.
    """
    if shots < 1:
        raise SplitError(f"shots must be ≥ 1, got {shots}")
    groups = _by_class(records)
    if num_classes is not None:
        absent = [c for c in range(num_classes) if c not in groups]
        if absent:
            raise SplitError(f"{len(absent)} classes have no training video (first: class {absent[0]})")
    rng = np.random.default_rng([seed, shots, draw])
    picked: list[VideoRecord] = []
    for label in sorted(groups):
        videos = groups[label]
        if len(videos) < shots:
            raise SplitError(
                f"class {label} has {len(videos)} training videos; {shots}-shot needs at least {shots}"
            )
        picked.extend(videos[int(i)] for i in rng.choice(len(videos), size=shots, replace=False))
    return picked


def few_shot_splits(
    records: Sequence[VideoRecord], shots: Iterable[int], seed: int, num_classes: int | None = None
) -> dict[int, list[VideoRecord]]:
    """One independent K-shot draw per K (the reference's train1_few_shot_{2,4,8,16})."""
    return {k: sample_few_shot(records, k, seed, num_classes=num_classes) for k in shots}


def base_training_draws(
    base_records: Sequence[VideoRecord], shots: int = 16, draws: int = 3, seed: int = 1
) -> list[list[VideoRecord]]:
    """The b2n training subsets fs_base_s1..s{draws}: independent ``shots``-per-class draws (may overlap)."""
    return [sample_few_shot(base_records, shots, seed, draw=d) for d in range(1, draws + 1)]


def normalise_class_name(name: str) -> str:
    """Compare class names across datasets: case, underscores, quotes and repeated spaces do not matter."""
    return re.sub(r"\s+", " ", name.replace("_", " ").strip().strip('"').lower()).strip()


def zero_shot_subsets(
    class_names: Sequence[str],
    exclude: Iterable[str],
    num_classes: int,
    num_splits: int = 3,
    seed: int = 1,
) -> list[list[str]]:
    """``num_splits`` subsets of ``num_classes`` names absent from ``exclude``, each in ``class_names`` order."""
    excluded = {normalise_class_name(n) for n in exclude}
    candidates = [n for n in class_names if normalise_class_name(n) not in excluded]
    if len(candidates) < num_classes:
        raise SplitError(
            f"only {len(candidates)} classes remain after excluding {len(excluded)} names; need {num_classes}"
        )
    subsets = []
    for split in range(1, num_splits + 1):
        rng = np.random.default_rng([seed, num_classes, split])
        chosen = sorted(int(i) for i in rng.choice(len(candidates), size=num_classes, replace=False))
        subsets.append([candidates[i] for i in chosen])
    return subsets


def subset_records(
    records: Iterable[VideoRecord], class_names: Sequence[str], subset: Sequence[str]
) -> list[VideoRecord]:
    """Records of the ``subset`` classes (labels index ``class_names``), relabelled to positions in ``subset``."""
    position = {name: index for index, name in enumerate(subset)}
    known = set(class_names)
    unknown = [n for n in subset if n not in known]
    if unknown:
        raise SplitError(f"subset names not in the label list: {unknown[:3]}")
    local = {full: position[name] for full, name in enumerate(class_names) if name in position}
    return [dataclasses.replace(r, label=local[r.label]) for r in records if r.label in local]


def _leak_key(record: VideoRecord, key: str) -> str:
    path = Path(record.path)
    return path.name if key == "name" else path.as_posix().removeprefix("./")


def find_leaks(
    train_records: Iterable[VideoRecord], eval_records: Iterable[VideoRecord], key: str = "name"
) -> list[tuple[VideoRecord, VideoRecord]]:
    """(train, eval) pairs naming the same video; ``key`` = ``"name"`` (basename) or ``"path"`` (listed path)."""
    if key not in LEAK_KEYS:
        raise VificlipError(f"leak key is {key!r}, expected one of {', '.join(LEAK_KEYS)}")
    train_by_key: dict[str, VideoRecord] = {}
    for record in train_records:
        train_by_key.setdefault(_leak_key(record, key), record)
    return [(train_by_key[k], r) for r in eval_records if (k := _leak_key(r, key)) in train_by_key]


def check_leakage(
    train_records: Iterable[VideoRecord],
    eval_records: Iterable[VideoRecord],
    train_name: str = "training list",
    eval_name: str = "evaluation list",
    key: str = "name",
) -> list[tuple[VideoRecord, VideoRecord]]:
    """Warn (:class:`SplitLeakageWarning`) when training videos appear in an evaluation list; return the pairs."""
    leaks = find_leaks(train_records, eval_records, key)
    if leaks:
        train, evaluated = leaks[0]
        warnings.warn(
            f"{len(leaks)} videos of {eval_name} are also in {train_name} (e.g. {Path(evaluated.path).name} at "
            f"{evaluated.source or '?'} and {train.source or '?'}); scores on this list are inflated — few-shot "
            f"models must be evaluated on HMDB/UCF split 1 only (SPEC §2.10)",
            SplitLeakageWarning,
            stacklevel=2,
        )
    return leaks


def write_base_novel(
    out_dir: str | Path,
    split: BaseNovelSplit,
    class_names: Sequence[str],
    train_records: Sequence[VideoRecord],
    val_records: Sequence[VideoRecord] | None = None,
    shots: int = 16,
    draws: int = 3,
    seed: int = 1,
    prefix: str = "",
) -> list[Path]:
    """Write the b2n files with the authors' names: {prefix}base_labels.csv, {prefix}novel_labels.csv,
    base_train.txt, fs_base_s{i}_train.txt and, given ``val_records``, base_val.txt / novel_val.txt."""
    out = Path(out_dir)
    written = [
        write_label_csv(out / f"{prefix}base_labels.csv", split.names(class_names, "base")),
        write_label_csv(out / f"{prefix}novel_labels.csv", split.names(class_names, "novel")),
    ]
    base_train = split.relabel(train_records, "base")
    written.append(write_video_list(out / "base_train.txt", base_train))
    for index, subset in enumerate(base_training_draws(base_train, shots, draws, seed), start=1):
        written.append(write_video_list(out / f"fs_base_s{index}_train.txt", subset))
    if val_records is not None:
        written.append(write_video_list(out / "base_val.txt", split.relabel(val_records, "base")))
        written.append(write_video_list(out / "novel_val.txt", split.relabel(val_records, "novel")))
    return written
