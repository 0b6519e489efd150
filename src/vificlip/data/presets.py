"""Dataset presets: which annotation files each benchmark uses, class counts, frames and folder layout.

One YAML per dataset in ``data/presets/`` (K400, K600 zero-shot, HMDB-51, UCF-101, SSv2). File paths are relative
to an *annotation dir* — a copy of the authors' repository, whose ``labels/`` and ``datasets_splits/`` folders
the presets name exactly (SPEC §8) — and videos live under the user's ``data.root``. The engine reads these;
nothing here touches video files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from ..errors import VificlipError
from .locate import LAYOUTS

PRESET_DIR = Path(__file__).with_name("presets")
# Literal alias table (no registry): name the user may type → preset file stem.
ALIASES = {
    "k400": "k400", "kinetics400": "k400", "kinetics-400": "k400",
    "k600": "k600", "kinetics600": "k600", "kinetics-600": "k600",
    "hmdb51": "hmdb51", "hmdb": "hmdb51", "hmdb-51": "hmdb51",
    "ucf101": "ucf101", "ucf": "ucf101", "ucf-101": "ucf101",
    "ssv2": "ssv2", "sthv2": "ssv2", "something-something-v2": "ssv2",
}  # fmt: skip


class PresetError(VificlipError):
    """Unknown preset name or a malformed preset YAML (names the file and key)."""


@dataclasses.dataclass(frozen=True)
class ZeroShotSplit:
    """One zero-shot evaluation split: the classifier's classes and the videos scored against them."""

    labels: str
    eval: str


@dataclasses.dataclass(frozen=True)
class BaseNovelFiles:
    """Base-to-novel files: base/novel label CSVs (local label spaces), 3 training draws, and the two eval lists."""

    base_labels: str
    novel_labels: str
    train: tuple[str, ...]
    base_val: str
    novel_val: str
    num_base: int
    num_novel: int
    base_train: str | None = None


@dataclasses.dataclass(frozen=True)
class DatasetPreset:
    """Everything a protocol needs to know about one dataset, except where the user keeps it."""

    name: str
    title: str
    num_classes: int
    num_frames: int
    layout: str
    video_suffix: str
    labels: str | None = None
    train: str | None = None
    eval: tuple[str, ...] = ()
    few_shot: dict[int, str] = dataclasses.field(default_factory=dict)
    few_shot_eval: tuple[str, ...] = ()
    zero_shot: tuple[ZeroShotSplit, ...] = ()
    base_novel: BaseNovelFiles | None = None
    notes: str = ""

    def path(self, annotation_dir: str | Path, relative: str) -> Path:
        return Path(annotation_dir) / relative

    def files(self) -> list[str]:
        """Every annotation file the preset names (relative), without duplicates, in a stable order."""
        names = [self.labels, self.train, *self.eval, *self.few_shot.values(), *self.few_shot_eval]
        for split in self.zero_shot:
            names += [split.labels, split.eval]
        if self.base_novel is not None:
            b2n = self.base_novel
            names += [
                b2n.base_labels,
                b2n.novel_labels,
                b2n.base_train,
                *b2n.train,
                b2n.base_val,
                b2n.novel_val,
            ]
        return list(dict.fromkeys(n for n in names if n))

    def missing_files(self, annotation_dir: str | Path) -> list[str]:
        """Named files absent from ``annotation_dir`` (K400's train.txt is never shipped by the authors)."""
        return [name for name in self.files() if not self.path(annotation_dir, name).is_file()]


def default_annotation_dir(dataset: str | None) -> Path | None:
    """The paper's annotation files bundled with the package, for a built-in dataset preset (by name); else None.

    A preset of one's own (a YAML path) or no preset at all has no default: its paths are the user's.
    """
    if dataset is None or str(dataset).lower() not in ALIASES:
        return None
    from .labelsets import bundled_annotation_dir

    return bundled_annotation_dir()


def list_dataset_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise PresetError(f"{where}: missing key '{key}'")
    if not isinstance(data[key], kind):
        raise PresetError(f"{where}: key '{key}' is {data[key]!r}, expected {kind.__name__}")
    return data[key]


def _parse_base_novel(data: dict[str, Any], where: str) -> BaseNovelFiles:
    train = tuple(_require(data, "train", list, f"{where}: base_novel"))
    return _build(BaseNovelFiles, {**data, "train": train}, where)


def parse_dataset_preset(data: dict[str, Any], where: str) -> DatasetPreset:
    """Build and validate a preset from YAML data; errors name the file and the key."""
    if not isinstance(data, dict):
        raise PresetError(f"{where}: expected a mapping at the top level")
    known = {f.name for f in dataclasses.fields(DatasetPreset)}
    unknown = set(data) - known
    if unknown:
        raise PresetError(f"{where}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    for key, kind in (
        ("name", str),
        ("title", str),
        ("num_classes", int),
        ("num_frames", int),
        ("layout", str),
    ):
        _require(data, key, kind, where)
    if data["layout"] not in LAYOUTS:
        raise PresetError(f"{where}: layout is {data['layout']!r}, expected one of {', '.join(LAYOUTS)}")
    fields = dict(data)
    fields["eval"] = tuple(data.get("eval", ()))
    fields["few_shot_eval"] = tuple(data.get("few_shot_eval", ()))
    fields["few_shot"] = {int(k): str(v) for k, v in (data.get("few_shot") or {}).items()}
    fields["zero_shot"] = tuple(_build(ZeroShotSplit, split, where) for split in data.get("zero_shot", ()))
    if data.get("base_novel") is not None:
        fields["base_novel"] = _parse_base_novel(data["base_novel"], where)
    fields.setdefault("video_suffix", "")
    return DatasetPreset(**fields)


def _build(kind: type, data: Any, where: str) -> Any:
    """Dataclass from a YAML mapping; a missing or unknown key becomes a PresetError naming the file."""
    if not isinstance(data, dict):
        raise PresetError(f"{where}: expected a mapping for {kind.__name__}, got {data!r}")
    try:
        return kind(**data)
    except TypeError as exc:
        raise PresetError(f"{where}: {kind.__name__}: {exc}") from None


def load_dataset_preset(name: str) -> DatasetPreset:
    """The preset called ``name`` (aliases like ``hmdb`` or ``kinetics400`` accepted), or a YAML file path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        where = str(path)
    else:
        stem = ALIASES.get(name.lower())
        if stem is None:
            raise PresetError(
                f"unknown dataset preset {name!r}; expected one of {', '.join(list_dataset_presets())}"
            )
        path = PRESET_DIR / f"{stem}.yaml"
        where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PresetError(f"{where}: invalid YAML ({exc})") from exc
    return parse_dataset_preset(data, where)
