"""One typed run configuration: YAML presets with ``base:`` inheritance, dotted overrides, eager validation.

The schema (nested dataclasses mirroring the reference's yacs tree, SPEC §3.1) is :mod:`.config_schema`; the
checks are :mod:`.config_validate`. Presets in ``engine/presets`` list only what an experiment of SPEC §3.12
changes. Unknown keys and wrong types are errors naming the dotted key; numeric strings such as ``8e-06`` (a
string to PyYAML, a float to yacs) are coerced.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from ..atomic import atomic_write_text
from .config_schema import ConfigError, RunConfig
from .config_validate import validate
from .runs import CONFIG_FILE

log = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parent / "presets"


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
