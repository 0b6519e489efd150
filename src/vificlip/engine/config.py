"""One typed run configuration: YAML presets with ``base:`` inheritance, dotted overrides, eager validation.

Mirrors the reference's yacs tree (SPEC §3.1) as nested dataclasses: ``model``, ``data``, ``train``, ``optim``,
``eval``, ``output`` and ``protocol``. Defaults are the reference's defaults; presets in ``engine/presets`` list
only what an experiment of SPEC §3.12 changes. Unknown keys and wrong types are errors naming the dotted key;
numeric strings such as ``8e-06`` (a string to PyYAML, a float to yacs) are coerced.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from ..atomic import atomic_write_text
from ..data.dataset import CLIP_MODES
from ..data.decode import BACKENDS
from ..data.locate import LAYOUTS
from ..data.transforms import NORMALIZATIONS, NUM_CROPS
from ..errors import VificlipError
from ..model.variants import DEFAULT_VARIANT, VARIANTS
from .runs import CONFIG_FILE

log = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parent / "presets"


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


# ---- reading ------------------------------------------------------------------------------------------------
def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _preset_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    text = str(name_or_path)
    candidates = [Path(text).expanduser()]
    if relative_to is not None:
        candidates.insert(0, relative_to / text)
    if not text.endswith((".yaml", ".yml")):
        candidates.append(PRESET_DIR / f"{text}.yaml")
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"unknown preset or config file {text!r}; presets: {', '.join(list_presets())}")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:  # a binary file given as a config
        raise ConfigError(f"{path}: not a YAML text file (byte {exc.start} is not UTF-8)") from None
    except yaml.YAMLError as exc:  # one line: where, and what
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_raw(name_or_path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The merged mapping of a preset/file and its ``base:`` chain (bases first, the file's own keys win)."""
    path = _preset_path(name_or_path, _seen[-1].parent if _seen else None).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular 'base:' chain {' -> '.join(map(str, _seen + (path,)))}")
    data = _read_yaml(path)
    bases = data.pop("base", None)
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases or []:
        merged = _merge(merged, load_raw(base, _seen + (path,)))
    return _merge(merged, data)


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.lr=2e-6'`` → ``('train.lr', 2e-06)``; the value is read as YAML (null, true, [1, 2] …)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE (e.g. train.lr=2e-6)")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def apply_overrides(data: dict, overrides: typing.Iterable[str] | dict[str, Any]) -> dict:
    pairs = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    out = _merge({}, data)
    for key, value in pairs:
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def load_config(name_or_path: str | Path, overrides: typing.Iterable[str] | dict[str, Any] = ()) -> RunConfig:
    """Preset name or YAML path (+ ``base:`` chain) + dotted overrides → a validated :class:`RunConfig`."""
    return config_from_dict(apply_overrides(load_raw(name_or_path), overrides))


def config_from_dict(data: dict) -> RunConfig:
    cfg = _build(RunConfig, data, "")
    validate(cfg)
    return cfg


# ---- typing and coercion ------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (mapping), got {value!r}")
        return _build(tp, value, key + ".")
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        key_type, value_type = args if args else (Any, Any)
        return {_coerce(k, key_type, key): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    return _coerce_scalar(value, tp, key)


def _coerce_scalar(value: Any, tp: type, key: str) -> Any:
    bad = ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if isinstance(value, bool) or value is None:
        raise bad
    if tp is int:
        number = _number(value, bad)
        if float(number) != int(number):
            raise bad
        return int(number)
    if tp is float:
        return float(_number(value, bad))
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise bad


def _number(value: Any, bad: ConfigError) -> int | float:
    """Numbers, and numeric strings like '8e-06' that PyYAML leaves as strings (SPEC §3.1)."""
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                raise bad from None
    raise bad


def _build(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)};"
            f" {prefix.rstrip('.') or 'the top level'} accepts {', '.join(sorted(names))}"
        )
    values = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    return cls(**values)


# ---- validation ---------------------------------------------------------------------------------------------
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


# ---- writing ------------------------------------------------------------------------------------------------
def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, width=110)


def save_config(cfg: RunConfig, run_dir: Path) -> Path:
    return atomic_write_text(Path(run_dir) / CONFIG_FILE, to_yaml(cfg))


def read_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {CONFIG_FILE}; not a run directory")
    return config_from_dict(_read_yaml(path))


# Keys that may change between an interrupted run and its resumption without changing what it computes.
RESUME_FREE_KEYS = ("output.", "data.num_workers", "data.root", "train.print_freq", "eval.batch_size",
                    "model.checkpoint", "model.base_checkpoint", "model.init_from", "description")  # fmt: skip


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """Dotted keys whose values differ, ignoring :data:`RESUME_FREE_KEYS`."""
    a, b = flatten(to_dict(old)), flatten(to_dict(new))
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(RESUME_FREE_KEYS)]  # fmt: skip
